"""Training (the optional ``train`` extra: ``pip install torch==2.13.0``): an MLP or a small GRU on
a dataset's windows, chronological splits, walk-forward evaluation, export under the contract.

Windows end at bar ``t`` and hold rows ``t - window + 1 .. t`` of one symbol; a window is used only
when every value is known, no bar in it is flagged (gap, outlier) and its label's horizon reaches
no flagged bar. All symbols' windows are ordered by time and split by time, never shuffled across
it: train (first ``train_share``), validation (next ``val_share``, for early stopping and the
thresholds), test (the rest). ``horizon_bars`` of windows are dropped before each boundary so no
training label looks into the next part. Walk-forward: the data is cut into ``walk_forward + 1``
chronological chunks; fold k trains on chunks ``0..k`` and tests on chunk ``k + 1``.

Training at scale is the workstation's job, with the same command and the ROCm build of torch
(``pip install torch==2.13.0 --index-url <the ROCm wheel index>``; torch exposes an AMD GPU as
``cuda``, but these networks are small enough that the CPU build is as quick): copy the
appliance's ``data/market/*.db`` (or ``backups/*.db.zst``), run ``appliance dataset --replay ...``
and ``appliance train --data ... --out model.onnx``, then ``appliance model add model.onnx`` on
the appliance (it is validated there again, on the board's own onnxruntime).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.engine.model_contract import SCHEMA_VERSION, Layout, ModelContract, RollingZScore
from app.errors import ConfigError
from app.models import export
from app.models.dataset import DatasetSpec, Labelled
from app.models.metrics import summary
from app.models.normalize import normalize_parts

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TrainConfig:
    """Architecture, windows and optimiser settings."""

    arch: str = "mlp"  # "mlp" or "gru"
    window: int = 16
    label: str = "horizon"  # "horizon" (label_h) or "triple" (tb_label)
    hidden: int = 32
    epochs: int = 30
    batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5
    seed: int = 1
    train_share: float = 0.7
    val_share: float = 0.15
    walk_forward: int = 3
    threshold_quantile: float = 0.1
    clip: float = 5.0
    int8: bool = False
    rolling: int = 0  # > 0: a rolling z-score over this many bars (the contract declares it)


@dataclass(frozen=True)
class Windows:
    x: F64  # (n, window, features), raw
    y: F64  # (n,)
    ts_ms: I64  # the window's last bar close
    symbol: npt.NDArray[np.str_]
    at: I64  # (n, 2): the series' index in ``parts`` and the window's last row in it


class DatasetTooSmall(ConfigError):
    """The dataset cannot give a train/validation/test split: the message says what is missing."""


def _usable_text(parts: list[Labelled], label: str) -> str:
    """Per symbol: bars, labelled bars and flagged bars, for an error message."""
    texts = []
    for p in parts:
        y = p.label_h if label == "horizon" else p.tb_label
        texts.append(
            f"{p.symbol} (segment {p.segment}): {len(p.ts_ms)} bars, "
            f"{int(np.isfinite(y).sum())} labelled ({label}), {int(p.bad.sum())} flagged"
        )
    return "; ".join(texts) or "no series"


def windows(parts: list[Labelled], window: int, horizon: int, label: str) -> Windows:
    """Every usable labelled window of every symbol, in time order."""
    xs, ys, ts, syms, ats = [], [], [], [], []
    for k, p in enumerate(parts):
        n = len(p.ts_ms)
        if n < window + horizon:
            continue
        y_all = p.label_h if label == "horizon" else p.tb_label
        bad = np.concatenate([[0], np.cumsum(p.bad.astype(np.int64))])
        ends = np.arange(window - 1, n)
        horizon_end = np.minimum(ends + horizon, n - 1)
        clean = (bad[ends + 1] - bad[ends + 1 - window] == 0) & (
            bad[horizon_end + 1] - bad[ends + 1] == 0
        )
        wins = np.lib.stride_tricks.sliding_window_view(p.x, window, axis=0)  # (n-W+1, F, W)
        x = wins.transpose(0, 2, 1)
        keep = clean & np.isfinite(y_all[ends]) & np.isfinite(x).all(axis=(1, 2))
        xs.append(np.ascontiguousarray(x[keep]))
        ys.append(y_all[ends][keep])
        ts.append(p.ts_ms[ends][keep])
        syms.append(np.full(int(keep.sum()), p.symbol))
        ats.append(np.stack([np.full(int(keep.sum()), k), ends[keep]], axis=1))
    if not xs:
        longest = max((len(p.ts_ms) for p in parts), default=0)
        raise DatasetTooSmall(
            f"no symbol has enough bars for one window and its horizon: the longest series has "
            f"{longest} bars, a window needs {window} and the horizon {horizon} more; record or "
            f"download more, or lower --window / the dataset's --horizon-bars"
        )
    t = np.concatenate(ts)
    order = np.argsort(t, kind="stable")
    return Windows(
        np.concatenate(xs)[order],
        np.concatenate(ys)[order],
        t[order],
        np.concatenate(syms)[order],
        np.concatenate(ats)[order],
    )


def constant_features(x: F64, names: tuple[str, ...]) -> list[str]:
    """The features whose every value in windows ``x`` (n, window, features) is the same."""
    rows = x.reshape(-1, x.shape[2])
    if not len(rows):
        return list(names)
    same = (rows == rows[0]).all(axis=0)
    return [n for n, s in zip(names, same.tolist(), strict=True) if s]


def chrono_split(n: int, train_share: float, val_share: float, purge: int) -> tuple[I64, I64, I64]:
    """Index ranges (train, validation, test) by time, with ``purge`` windows dropped before
    each boundary."""
    a = int(n * train_share)
    b = int(n * (train_share + val_share))
    idx = np.arange(n)
    return idx[: max(0, a - purge)], idx[a : max(a, b - purge)], idx[b:]


def _net(cfg: TrainConfig, n_features: int) -> Any:
    import torch

    if cfg.arch == "mlp":
        return torch.nn.Sequential(
            torch.nn.Flatten(),
            torch.nn.Linear(cfg.window * n_features, cfg.hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(cfg.hidden, cfg.hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(cfg.hidden, 1),
        )
    if cfg.arch == "gru":

        class GRUNet(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.gru = torch.nn.GRU(n_features, cfg.hidden, batch_first=True)
                self.head = torch.nn.Linear(cfg.hidden, 1)

            def forward(self, x: Any) -> Any:
                out, _ = self.gru(x)
                return self.head(out[:, -1, :])

        return GRUNet()
    raise ValueError(f"unknown architecture {cfg.arch!r}: mlp or gru")


@dataclass
class Fitted:
    net: Any
    mean: F64
    scale: F64
    epochs: int
    val_loss: float

    def predict(self, x: F64, clip: float) -> F64:
        import torch

        z = np.clip((x.astype(np.float32) - self.mean) / self.scale, -clip, clip)
        with torch.no_grad():
            logits = self.net(torch.tensor(z, dtype=torch.float32)).reshape(-1)
        return np.asarray(torch.sigmoid(logits).numpy(), dtype=np.float64)


def fit(cfg: TrainConfig, train: Windows, val: Windows) -> Fitted:
    """Adam on binary cross-entropy, early stopping on the validation loss (batches are drawn
    from the training part only; their order within it does not leak time)."""
    import torch

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    rows = train.x.reshape(-1, train.x.shape[2])
    mean = rows.mean(axis=0).astype(np.float32)
    std = rows.std(axis=0)
    scale = np.where(std > 1e-12, std, 1.0).astype(np.float32)
    net = _net(cfg, train.x.shape[2])
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def prep(x: F64) -> Any:
        z = np.clip((x.astype(np.float32) - mean) / scale, -cfg.clip, cfg.clip)
        return torch.tensor(z, dtype=torch.float32)

    xt, yt = prep(train.x), torch.tensor(train.y, dtype=torch.float32)
    xv, yv = prep(val.x), torch.tensor(val.y, dtype=torch.float32)
    best, best_state, stale, epochs = math.inf, None, 0, 0
    for epoch in range(cfg.epochs):
        net.train()
        for chunk in np.array_split(rng.permutation(len(yt)), max(1, len(yt) // cfg.batch)):
            opt.zero_grad()
            loss = loss_fn(net(xt[chunk]).reshape(-1), yt[chunk])
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float(loss_fn(net(xv).reshape(-1), yv)) if len(yv) else 0.0
        epochs = epoch + 1
        if v < best - 1e-6:
            best, stale = v, 0
            best_state = {k: t.clone() for k, t in net.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return Fitted(net, mean.astype(np.float64), scale.astype(np.float64), epochs, best)


def walk_forward(cfg: TrainConfig, w: Windows, purge: int) -> list[dict[str, float]]:
    """AUC and Brier per fold (expanding training window, next chunk as test)."""
    folds = []
    bounds = np.linspace(0, len(w.y), cfg.walk_forward + 2).astype(int)
    for k in range(1, cfg.walk_forward + 1):
        tr = np.arange(0, max(0, bounds[k] - purge))
        te = np.arange(bounds[k], bounds[k + 1])
        n_val = max(1, len(tr) // 5)
        fitted = fit(cfg, _take(w, tr[:-n_val]), _take(w, tr[-n_val:]))
        p = fitted.predict(w.x[te], cfg.clip)
        fig = summary(p, w.y[te], 1.0, 0.0)
        folds.append({"fold": k, "auc": fig["auc"], "brier": fig["brier"], "n": fig["n"]})
    return folds


def _take(w: Windows, idx: I64) -> Windows:
    return Windows(w.x[idx], w.y[idx], w.ts_ms[idx], w.symbol[idx], w.at[idx])


def _picks(p: F64, seed: int) -> list[int]:
    order = np.argsort(p, kind="stable")
    drawn = int(np.random.default_rng(seed).integers(len(p)))
    return [int(order[0]), int(order[len(order) // 2]), int(order[-1]), drawn]


@dataclass(frozen=True)
class TrainResult:
    model: bytes
    figures: dict[str, Any]
    test_range_ms: tuple[int, int]


def split_checked(
    cfg: TrainConfig, spec: DatasetSpec, parts: list[Labelled], w: Windows
) -> tuple[Windows, Windows, Windows, list[str]]:
    """Train, validation and test windows, and the features constant over training; raises
    :class:`DatasetTooSmall` saying why when they cannot train a model (too few windows, one
    class only, every feature constant)."""
    tr_i, va_i, te_i = chrono_split(len(w.y), cfg.train_share, cfg.val_share, spec.horizon_bars)
    if min(len(tr_i), len(va_i), len(te_i)) < 10:
        raise DatasetTooSmall(
            f"too few usable windows ({len(w.y)}: {len(tr_i)} train, {len(va_i)} validation, "
            f"{len(te_i)} test after purging {spec.horizon_bars} at each cut) for a split of at "
            f"least 10 each: {_usable_text(parts, cfg.label)}; record or download more, widen the "
            f"barriers' horizon or lower their thresholds"
        )
    tr, va, te = _take(w, tr_i), _take(w, va_i), _take(w, te_i)
    for split, part in (("train", tr), ("validation", va)):
        classes = np.unique(part.y)
        if len(classes) < 2:
            raise DatasetTooSmall(
                f"the {split} split holds one class only (every label is {classes[0]:g} with "
                f"--label {cfg.label}): there is nothing to learn; use more data or other "
                f"label parameters"
            )
    constant = constant_features(tr.x, spec.features)
    if len(constant) == len(spec.features):
        raise DatasetTooSmall(
            f"every feature is constant over the training split ({', '.join(constant)}): "
            "there is nothing to learn from; use more data or other --features"
        )
    return tr, va, te, constant


def train(
    cfg: TrainConfig, spec: DatasetSpec, parts: list[Labelled], meta: dict[str, Any]
) -> TrainResult:
    """Fit, evaluate, export, and embed the contract; the model file's bytes and the figures.

    With ``cfg.rolling`` the rows are first replaced by their rolling z-scores
    (:mod:`app.models.normalize`, the engine's code) and the contract declares it; golden cases
    then carry the ``rolling - 1`` raw rows of history before each window."""
    norm = RollingZScore(cfg.rolling, cfg.clip) if cfg.rolling else None
    raw_parts = parts
    if norm is not None:
        parts = normalize_parts(parts, norm)
    w = windows(parts, cfg.window, spec.horizon_bars, cfg.label)
    tr, va, te, constant = split_checked(cfg, spec, parts, w)
    fitted = fit(cfg, tr, va)
    p_val = fitted.predict(va.x, cfg.clip)
    long_t = round(float(np.quantile(p_val, 1.0 - cfg.threshold_quantile)), 4)
    short_t = round(float(np.quantile(p_val, cfg.threshold_quantile)), 4)
    if not short_t < long_t:
        short_t, long_t = 0.5 - 1e-4, 0.5 + 1e-4
    figures: dict[str, Any] = {
        split: summary(fitted.predict(part.x, cfg.clip), part.y, long_t, short_t)
        for split, part in (("train", tr), ("validation", va), ("test", te))
    }
    figures["epochs"] = fitted.epochs
    if constant:  # kept (a constant input costs nothing), but worth knowing
        figures["constant_features"] = constant
    if cfg.walk_forward:
        figures["walk_forward"] = walk_forward(cfg, w, spec.horizon_bars)
    fp32 = export.export_torch(fitted.net, fitted.mean, fitted.scale, cfg.window, cfg.clip)
    p_test_torch = fitted.predict(te.x, cfg.clip)
    p_test_ort = export.run_ort(fp32, te.x)
    figures["torch_vs_onnxruntime_max_diff"] = float(np.max(np.abs(p_test_torch - p_test_ort)))
    picks = _picks(p_test_ort, cfg.seed)
    raw = None
    if norm is not None:  # each picked window with the raw history its z-scores came from
        rows = cfg.window + norm.window - 1
        raw = [raw_parts[k].x[end - rows + 1 : end + 1] for k, end in te.at[picks].tolist()]
    first, last = int(w.ts_ms[0]), int(w.ts_ms[-1])

    def contract(tolerance: float, model: bytes, suffix: str) -> ModelContract:
        return ModelContract(
            schema_version=SCHEMA_VERSION,
            model_version=f"{cfg.arch}-{cfg.label}-w{cfg.window}-seed{cfg.seed}{suffix}",
            features=spec.features,
            window=cfg.window,
            bar_interval_s=spec.bar_interval_s,
            layout=Layout.WINDOW,
            input_name=export.INPUT_NAME,
            output_name=export.OUTPUT_NAME,
            scaler=norm,
            output="prob_up",
            long_threshold=long_t,
            short_threshold=short_t,
            horizon_bars=spec.horizon_bars,
            label=_label_text(cfg.label, spec),
            training_range=json.dumps(
                {
                    "sources": meta.get("sources", []),
                    "symbols": sorted(set(w.symbol.tolist())),
                    "first_ms": first,
                    "last_ms": last,
                    "windows": len(w.y),
                    "split": f"train {cfg.train_share:.0%}, validation {cfg.val_share:.0%}, "
                    "test the rest, by time",
                }
            ),
            golden=export.golden(model, te.x, picks, tolerance, raw),
            description=f"{cfg.arch.upper()} ({cfg.hidden} hidden) trained by appliance train; "
            f"config {json.dumps(asdict(cfg))}",
            metrics=json.dumps(figures),
        )

    final = export.embed(fp32, contract(export.FP32_TOLERANCE, fp32, ""))
    if cfg.int8:
        q = export.quantize_int8(fp32)
        if q is None:
            figures["int8"] = "skipped: the onnx package is not installed"
        else:
            q_final = export.embed(q, contract(export.INT8_TOLERANCE, q, "-int8"))
            par = export.parity(
                fp32, q, te.x[:2000], export.latency_us(final), export.latency_us(q_final)
            )
            figures["int8"] = par.as_dict()
            if par.kept == "int8":
                final = export.embed(q, contract(export.INT8_TOLERANCE, q, "-int8"))
            else:
                final = export.embed(fp32, contract(export.FP32_TOLERANCE, fp32, ""))
    return TrainResult(final, figures, (int(te.ts_ms[0]), int(te.ts_ms[-1])))


def _label_text(label: str, spec: DatasetSpec) -> str:
    if label == "horizon":
        return (
            f"1 when ln(close[t+{spec.horizon_bars}] / close[t]) > +{spec.threshold_bps:g} bps, "
            f"0 when < -{spec.threshold_bps:g} bps, smaller moves left out"
        )
    return (
        f"triple barrier: 1 when the close reaches +{spec.take_profit_bps:g} bps before "
        f"-{spec.stop_loss_bps:g} bps within {spec.horizon_bars} bars, 0 the other way round, "
        "time-outs left out"
    )

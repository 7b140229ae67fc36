"""Make ``models/default.onnx``: the default model, trained on simulator data. Deterministic.

Usage (from the repository root)::

    .venv/bin/python models/make_default.py --seed 1              # writes models/default.onnx
    .venv/bin/python models/make_default.py --seed 1 --out /tmp/m.onnx --segment-minutes 10

What it does, each step with the engine's own code so training sees what the engine will see:

1. Runs the simulator's market model (:class:`app.sim.market.SymbolMarket`) in-process, no server,
   for each symbol over four segments that start at 00:00, 06:00, 12:00 and 18:00 UTC (so the
   time-of-day features see the whole day), each from its own seed derived from ``--seed``.
2. Decodes every frame with the engine's decoder and feeds a :class:`FeatureSet`; when a 1 s bar
   closes, the row of feature values is read (before any later event is applied), as the engine
   does at a bar close.
3. Labels each 16-bar window: 1 when the log-return of the close ``HORIZON_BARS`` bars later is
   above ``+FEE_BPS``, 0 when below ``-FEE_BPS``; smaller moves are left out (they would not pay
   the fees either way).
4. Fits an L2-regularised logistic regression with numpy (Newton's method) on the first 70 % of
   each segment and reports AUC, accuracy and Brier score on the last 30 % (chronological split).
5. Builds the ONNX graph (opset 17, IR 8, so onnxruntime 1.17+ loads it): Gemm and Sigmoid on a
   flat input, with the standard scaler and the clip to ±5 declared for the engine to apply as
   rows enter the window (onnxruntime's cost is per node), embeds the contract
   (``app.engine.model_contract``) with golden vectors, loads the result with the engine's own
   :func:`load_model` as a self-test, and writes it. Same seed and arguments, same bytes.

The simulator's price is a random walk: there is nothing to predict, and the figures say so. The
model demonstrates the pipeline, not an edge.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository's ``app`` importable
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from app.engine.decode import decode_event  # noqa: E402
from app.engine.inference import load_model  # noqa: E402
from app.engine.model_contract import (  # noqa: E402
    SCHEMA_VERSION,
    Golden,
    GoldenCase,
    Layout,
    ModelContract,
    Scaler,
    to_metadata,
)
from app.engine.sampling import BarSampler, as_floats  # noqa: E402
from app.sim.frames import Frame  # noqa: E402
from app.sim.market import SymbolMarket  # noqa: E402
from app.sim.symbols import spec_for  # noqa: E402

F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]

FEATURES: tuple[str, ...] = (
    "logret_1",
    "logret_5",
    "rsi_14",
    "bb_20_2.pctb",
    "bb_20_2.width",
    "obi_5",
    "spread_bps",
    "funding_rate",
    "tod_sin",
    "tod_cos",
)
WINDOW = 16
BAR_INTERVAL_S = 1
HORIZON_BARS = 120
FEE_BPS = 5.0
SYMBOLS = ("btcusdt", "ethusdt")
SEGMENT_STARTS_H = (0, 6, 12, 18)
DAY0_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: the simulated day's date (a label only)
STEP_MS = 100  # the simulator's default step
FUNDING_INTERVAL_MS = 8 * 3600 * 1000
TRAIN_SHARE = 0.7
L2 = 1000.0
CLIP = 5.0
THRESHOLD_QUANTILE = 0.1  # long above the 90th, short below the 10th percentile of training outputs
GOLDEN_TOLERANCE = 1e-4
INPUT_NAME = "window"
OUTPUT_NAME = "prob_up"
OPSET = 17
IR_VERSION = 8


class _Sink:
    """Collects the frames of the streams the engine subscribes (depth5 stands for depth20)."""

    def __init__(self, streams: set[str]) -> None:
        self.streams = streams
        self.frames: list[Frame] = []

    def wants(self, stream: str) -> bool:
        return stream in self.streams

    def publish(self, frame: Frame) -> None:
        self.frames.append(frame)


@dataclass(frozen=True)
class Segment:
    """One simulated stretch: a feature row and the close of each 1 s bar."""

    symbol: str
    start_ms: int
    rows: F64  # (bars, features), NaN while a feature warms up
    closes: F64  # (bars,)


def simulate(symbol: str, seed: int, start_ms: int, minutes: int) -> Segment:
    """Run the simulator's market for ``minutes`` and read a feature row at every bar close."""
    market = SymbolMarket(spec_for(symbol), seed, start_ms, STEP_MS, FUNDING_INTERVAL_MS)
    low = symbol.lower()
    sink = _Sink(
        {f"{low}@aggTrade", f"{low}@bookTicker", f"{low}@depth5@100ms", f"{low}@markPrice@1s"}
    )
    sampler = BarSampler(FEATURES, BAR_INTERVAL_S)
    rows: list[list[float]] = []
    closes: list[float] = []
    t = start_ms
    for _ in range(minutes * 60_000 // STEP_MS):
        market.step(t, sink)
        t += STEP_MS
        for frame in sink.frames:
            for bar, values in sampler.on_event(decode_event(frame.raw)):
                rows.append(as_floats(values))
                closes.append(bar.close)
        sink.frames.clear()
    return Segment(symbol, start_ms, np.asarray(rows, dtype=np.float64), np.asarray(closes))


@dataclass(frozen=True)
class Samples:
    x: F64  # (n, window, features), raw
    y: F64  # (n,), 1.0 up / 0.0 down


def windows(seg: Segment) -> tuple[Samples, Samples]:
    """Labelled windows of a segment, split chronologically into (train, test)."""
    n = len(seg.closes)
    ends = np.arange(WINDOW - 1, n - HORIZON_BARS)
    if len(ends) == 0:
        raise SystemExit(f"segment of {n} bars is too short for window + horizon")
    wins = np.lib.stride_tricks.sliding_window_view(seg.rows, WINDOW, axis=0)  # (n-W+1, F, W)
    x = np.ascontiguousarray(wins[ends - WINDOW + 1].transpose(0, 2, 1))
    ret_bps = np.log(seg.closes[ends + HORIZON_BARS] / seg.closes[ends]) * 1e4
    keep = np.isfinite(x).all(axis=(1, 2)) & (np.abs(ret_bps) > FEE_BPS)
    # The split is by time on the window's end; test windows' labels look past the split only
    # into the test part, and a gap of HORIZON_BARS keeps train labels out of the test range.
    cut = int(len(ends) * TRAIN_SHARE)
    train = keep & (np.arange(len(ends)) < cut - HORIZON_BARS)
    test = keep & (np.arange(len(ends)) >= cut)
    y = (ret_bps > 0).astype(np.float64)
    return Samples(x[train], y[train]), Samples(x[test], y[test])


def _concat(parts: Sequence[Samples]) -> Samples:
    return Samples(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


def _sigmoid(z: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-z))
    return out


@dataclass(frozen=True)
class Fit:
    """The model in float32, exactly as the graph holds it."""

    mean: npt.NDArray[np.float32]  # (features,)
    inv_scale: npt.NDArray[np.float32]  # (features,)
    weights: npt.NDArray[np.float32]  # (window * features, 1)
    bias: npt.NDArray[np.float32]  # (1,)

    def scaler(self) -> Scaler:
        """The declared scaler: the engine standardises and clips each row as it enters the window,
        so the graph is Gemm → Sigmoid. Two element-wise nodes for the clip (Max, Min) cost more
        than the rest of the graph when onnxruntime's code is cold, as it is once per bar."""
        return Scaler(
            mean=tuple(float(m) for m in self.mean),
            scale=tuple(float(1.0 / np.float64(k)) for k in self.inv_scale),
            clip=CLIP,
        )

    def predict(self, x: F64) -> F64:
        """The model's computation in float64 on float32 inputs: the golden reference."""
        x32 = x.astype(np.float32).astype(np.float64)
        z = np.clip((x32 - self.mean.astype(np.float64)) * self.inv_scale.astype(np.float64),
                    -CLIP, CLIP)  # fmt: skip
        logit = z.reshape(len(x), -1) @ self.weights.astype(np.float64)[:, 0]
        return _sigmoid(logit + float(self.bias[0]))


def train(data: Samples) -> Fit:
    """L2 logistic regression by Newton's method on standardised, clipped windows."""
    flat_rows = data.x.reshape(-1, data.x.shape[2])
    mean = flat_rows.mean(axis=0)
    std = flat_rows.std(axis=0)
    scale = np.where(std > 1e-12, std, 1.0)
    mean32 = mean.astype(np.float32)
    inv32 = (1.0 / scale).astype(np.float32)
    z = np.clip((data.x - mean32) * inv32.astype(np.float64), -CLIP, CLIP).reshape(len(data.x), -1)
    a = np.hstack([z, np.ones((len(z), 1))])
    w = np.zeros(a.shape[1])
    ridge = np.full(a.shape[1], L2)
    ridge[-1] = 0.0  # the bias is not penalised
    for _ in range(50):
        p = _sigmoid(a @ w)
        grad = a.T @ (p - data.y) + ridge * w
        hess = (a * (p * (1.0 - p))[:, None]).T @ a + np.diag(ridge)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return Fit(
        mean32,
        inv32,
        w[:-1].astype(np.float32).reshape(-1, 1),
        np.asarray([w[-1]], dtype=np.float32),
    )


def auc(p: F64, y: F64) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half)."""
    pos, neg = p[y == 1.0], p[y == 0.0]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    order = np.argsort(np.concatenate([pos, neg]), kind="stable")
    allp = np.concatenate([pos, neg])[order]
    ranks = np.empty(len(allp))
    i = 0
    while i < len(allp):  # average ranks over ties
        j = i
        while j + 1 < len(allp) and allp[j + 1] == allp[i]:
            j += 1
        ranks[i : j + 1] = (i + j) / 2 + 1
        i = j + 1
    pos_ranks = ranks[np.argsort(order, kind="stable")][: len(pos)]
    return float((pos_ranks.sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def metrics(p: F64, y: F64) -> dict[str, float]:
    return {
        "auc": round(auc(p, y), 4),
        "accuracy": round(float(np.mean((p >= 0.5) == (y == 1.0))), 4),
        "brier": round(float(np.mean((p - y) ** 2)), 4),
        "base_rate_up": round(float(np.mean(y)), 4),
        "n": len(y),
    }


def build_graph(fit: Fit, metadata: dict[str, str]) -> onnx.ModelProto:
    """window [1, W·F], scaled and clipped by the engine (:meth:`Fit.scaler`) → x·w + b →
    sigmoid [1, 1]: 2 nodes."""
    n_in = WINDOW * len(FEATURES)
    inits = [
        numpy_helper.from_array(fit.weights.astype(np.float32), "weights"),
        numpy_helper.from_array(fit.bias.astype(np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Gemm", [INPUT_NAME, "weights", "bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], [OUTPUT_NAME]),
    ]
    graph = helper.make_graph(
        nodes,
        "default_logreg",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 1])],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="appliance models/make_default.py",
        ir_version=IR_VERSION,
    )
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def pick_golden(fit: Fit, test: Samples, seed: int) -> Golden:
    """Four test windows: the lowest, median and highest output, and one drawn with the seed."""
    p = fit.predict(test.x)
    order = np.argsort(p, kind="stable")
    drawn = int(np.random.default_rng(seed).integers(len(p)))
    picks = [int(order[0]), int(order[len(order) // 2]), int(order[-1]), drawn]
    cases = []
    for i in picks:
        x32 = test.x[i].astype(np.float32).astype(np.float64)  # what predict feeds the graph
        out = float(fit.predict(x32[None])[0])
        cases.append(GoldenCase(tuple(tuple(float(v) for v in row) for row in x32), out))
    return Golden(GOLDEN_TOLERANCE, tuple(cases))


def make(seed: int, segment_minutes: int, out: Path) -> bytes:
    """Generate, train, build, self-test and write the model; returns its bytes."""
    trains: list[Samples] = []
    tests: list[Samples] = []
    bars = 0
    for symbol in SYMBOLS:
        for k, hour in enumerate(SEGMENT_STARTS_H):
            start = DAY0_MS + hour * 3_600_000
            seg = simulate(symbol, seed * 1000 + k, start, segment_minutes)
            bars += len(seg.closes)
            tr, te = windows(seg)
            trains.append(tr)
            tests.append(te)
            print(
                f"  {symbol} {hour:02d}:00 UTC: {len(seg.closes)} bars, "
                f"{len(tr.y)} train / {len(te.y)} test windows",
                flush=True,
            )
    train_set, test_set = _concat(trains), _concat(tests)
    fit = train(train_set)
    p_train = fit.predict(train_set.x)
    p_test = fit.predict(test_set.x)
    long_t = round(float(np.quantile(p_train, 1.0 - THRESHOLD_QUANTILE)), 4)
    short_t = round(float(np.quantile(p_train, THRESHOLD_QUANTILE)), 4)
    figures = {"train": metrics(p_train, train_set.y), "test": metrics(p_test, test_set.y)}
    signal_share = float(np.mean((p_test >= long_t) | (p_test <= short_t)))
    figures["test"]["signal_share"] = round(signal_share, 4)
    contract = ModelContract(
        schema_version=SCHEMA_VERSION,
        model_version=f"default-{SCHEMA_VERSION}-seed{seed}-{segment_minutes}m",
        features=FEATURES,
        window=WINDOW,
        bar_interval_s=BAR_INTERVAL_S,
        layout=Layout.FLAT,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        scaler=fit.scaler(),
        output="prob_up",
        long_threshold=long_t,
        short_threshold=short_t,
        horizon_bars=HORIZON_BARS,
        label=(
            f"1 when ln(close[t+{HORIZON_BARS}] / close[t]) > +{FEE_BPS:g} bps, 0 when < "
            f"-{FEE_BPS:g} bps, windows with smaller moves left out; close = last trade price "
            f"of the {BAR_INTERVAL_S} s bar"
        ),
        training_range=json.dumps(
            {
                "source": f"app.sim.market, seeds {seed}*1000+k, step {STEP_MS} ms",
                "symbols": list(SYMBOLS),
                "segments_utc": [
                    f"2024-01-01T{h:02d}:00Z+{segment_minutes}m" for h in SEGMENT_STARTS_H
                ],
                "bars": bars,
                "split": f"first {TRAIN_SHARE:.0%} of each segment train, last "
                f"{1 - TRAIN_SHARE:.0%} test",
            }
        ),
        golden=pick_golden(fit, test_set, seed),
        symbols=(),
        description=(
            "Logistic regression on 16 one-second bars of 10 scale-free features, trained on the "
            "exchange simulator's random walk: it demonstrates the pipeline, not an edge."
        ),
        metrics=json.dumps(figures),
    )
    model = build_graph(fit, to_metadata(contract))
    data: bytes = model.SerializeToString()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    loaded = load_model(tmp)  # the engine's own checks, golden vectors included
    ort_out = np.array([loaded.predict(x) for x in test_set.x[:200]])
    err = float(np.max(np.abs(ort_out - p_test[:200])))
    if err > GOLDEN_TOLERANCE / 10:
        tmp.unlink()
        raise SystemExit(f"onnxruntime differs from the numpy reference by {err:.3g}")
    tmp.replace(out)
    for name, fig in figures.items():
        print(f"{name:5s}: " + ", ".join(f"{k} {v}" for k, v in fig.items()))
    print(
        f"thresholds: long >= {long_t}, short <= {short_t}; onnxruntime vs numpy max error "
        f"{err:.2g}"
    )
    print(f"wrote {out} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    ap.add_argument(
        "--segment-minutes",
        type=int,
        default=60,
        help="simulated minutes per segment; 2 symbols x 4 segments (default 60)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "models" / "default.onnx")
    args = ap.parse_args(argv)
    if args.segment_minutes < 10:
        ap.error("--segment-minutes must be at least 10 (warm-up, window, horizon, split gap)")
    make(args.seed, args.segment_minutes, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

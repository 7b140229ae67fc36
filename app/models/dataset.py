"""Datasets: recordings (or a simulator series) → feature rows at bar closes → labels → a file.

Rows come from :class:`~app.engine.sampling.BarSampler`, the rule the live trader uses, fed with
events the engine's decoder made, in receive order, one sampler per symbol; nothing is recomputed
differently offline. One row per symbol per bar close, the whole file ordered by time then symbol.

Columns: ``ts_close_ms, symbol, segment, close, gap, outlier, <features...>, ret_bps, label_h,
tb_label, tb_outcome``. Features still warming up are empty (NaN).

Gaps and outliers are flagged, never silently repaired:

- ``gap`` = 1 for bars closed by an event that came more than ``max_gap_s`` after the symbol's
  previous one (a recording that stopped, a feed that dropped). The bar builder fills such
  intervals with flat bars, as it does live; a model must not learn from them.
- ``outlier`` = 1 for a bar whose 1-bar log-return is more than ``outlier_mads`` median absolute
  deviations from the median (a bad print). Features are not clipped here (the model's graph
  clips its standardised input).

Training drops every window that contains a flagged bar and every label whose horizon reaches
one. Output is CSV (the appliance has no pyarrow), or Parquet when the name ends in ``.parquet``
and pyarrow is installed; a ``.json`` sidecar records the spec, sources and counts.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.engine.features import UnknownFeatureError, parse_feature
from app.engine.sampling import BarSampler, as_floats
from app.errors import ConfigError
from app.models.labels import forward_return_bps, horizon_label, triple_barrier
from app.models.replay import Replayed

F64 = npt.NDArray[np.float64]

DEFAULT_FEATURES: tuple[str, ...] = (
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


@dataclass(frozen=True)
class DatasetSpec:
    """What to compute: features on bars of ``bar_interval_s``, and the labels' parameters."""

    features: tuple[str, ...] = DEFAULT_FEATURES
    bar_interval_s: int = 1
    horizon_bars: int = 120
    threshold_bps: float = 5.0
    take_profit_bps: float = 10.0
    stop_loss_bps: float = 10.0
    max_gap_s: float = 5.0
    outlier_mads: float = 25.0

    def check(self) -> None:
        for name in self.features:
            try:
                parse_feature(name)
            except UnknownFeatureError as exc:
                raise ConfigError(f"feature {name!r}: {exc}") from exc
        if self.bar_interval_s < 1 or self.horizon_bars < 1:
            raise ConfigError("bar_interval_s and horizon_bars must be at least 1")


@dataclass
class SymbolSeries:
    """One symbol's rows of one source (segment), in time order."""

    symbol: str
    segment: int = 0
    ts_ms: list[int] = field(default_factory=list)
    closes: list[float] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)
    gap: list[bool] = field(default_factory=list)


@dataclass(frozen=True)
class Labelled:
    """A symbol's series of one segment as arrays, with flags and labels."""

    symbol: str
    segment: int
    ts_ms: npt.NDArray[np.int64]
    closes: F64
    x: F64  # (bars, features)
    gap: npt.NDArray[np.bool_]
    outlier: npt.NDArray[np.bool_]
    ret_bps: F64
    label_h: F64
    tb_label: F64
    tb_outcome: F64

    @property
    def bad(self) -> npt.NDArray[np.bool_]:
        out: npt.NDArray[np.bool_] = self.gap | self.outlier
        return out


def sample(
    events: Iterable[Replayed], spec: DatasetSpec, segment: int = 0
) -> dict[str, SymbolSeries]:
    """Feature rows at every bar close, per symbol, exactly as the live trader samples them.

    Each source is sampled on its own (fresh samplers): separate recordings or simulated segments
    are never stitched into one series."""
    samplers: dict[str, BarSampler] = {}
    series: dict[str, SymbolSeries] = {}
    last_ns: dict[str, int] = {}
    gap_ns = int(spec.max_gap_s * 1e9)
    for ts_ns, _stream, ev in events:
        symbol = ev.symbol
        sampler = samplers.get(symbol)
        if sampler is None:
            sampler = samplers[symbol] = BarSampler(spec.features, spec.bar_interval_s)
            series[symbol] = SymbolSeries(symbol, segment)
        prev = last_ns.get(symbol)
        gapped = prev is not None and ts_ns - prev > gap_ns
        last_ns[symbol] = ts_ns
        out = series[symbol]
        for bar, row in sampler.on_event(ev):
            out.ts_ms.append(bar.open_time_ms + sampler.interval_ms)
            out.closes.append(bar.close)
            out.rows.append(as_floats(row))
            out.gap.append(gapped)
    return series


def label(s: SymbolSeries, spec: DatasetSpec) -> Labelled:
    """Flags and labels for one symbol's rows."""
    closes = np.asarray(s.closes, dtype=np.float64)
    n_feat = len(spec.features)
    x = np.asarray(s.rows, dtype=np.float64).reshape(len(s.rows), n_feat)
    r1 = np.zeros(len(closes))
    if len(closes) > 1:
        r1[1:] = np.log(closes[1:] / closes[:-1])
    med = float(np.median(r1)) if len(r1) else 0.0
    mad = float(np.median(np.abs(r1 - med))) if len(r1) else 0.0
    # A flat series has MAD 0: then only a move of more than 1 % is called an outlier.
    limit = spec.outlier_mads * mad if mad > 0 else 0.01
    outlier = np.abs(r1 - med) > limit
    tb_label, tb_outcome = triple_barrier(
        closes, spec.horizon_bars, spec.take_profit_bps, spec.stop_loss_bps
    )
    return Labelled(
        s.symbol,
        s.segment,
        np.asarray(s.ts_ms, dtype=np.int64),
        closes,
        x,
        np.asarray(s.gap, dtype=bool),
        outlier,
        forward_return_bps(closes, spec.horizon_bars),
        horizon_label(closes, spec.horizon_bars, spec.threshold_bps),
        tb_label,
        tb_outcome,
    )


def columns(spec: DatasetSpec) -> list[str]:
    return [
        "ts_close_ms",
        "symbol",
        "segment",
        "close",
        "gap",
        "outlier",
        *spec.features,
        "ret_bps",
        "label_h",
        "tb_label",
        "tb_outcome",
    ]


def _ordered(parts: Sequence[Labelled]) -> list[tuple[int, int, int]]:
    """(ts, symbol index, row index) in time order, then symbol."""
    keys = [(int(t), k, i) for k, p in enumerate(parts) for i, t in enumerate(p.ts_ms)]
    keys.sort()
    return keys


def _num(v: float) -> str:
    return "" if math.isnan(v) else repr(float(v))


def write(path: Path, parts: Sequence[Labelled], spec: DatasetSpec) -> int:
    """Write the rows in time order (CSV, or Parquet for ``.parquet``); returns the row count."""
    order = _ordered(parts)
    cols = columns(spec)
    if path.suffix == ".parquet":
        try:
            import pyarrow as pa  # type: ignore[import-not-found,unused-ignore]
            import pyarrow.parquet as pq  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigError("Parquet needs pyarrow; write a .csv instead") from exc
        data: dict[str, list[Any]] = {c: [] for c in cols}
        for _, k, i in order:
            for c, v in zip(cols, _row(parts[k], i), strict=True):
                data[c].append(v)
        pq.write_table(pa.table(data), path)
        return len(order)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for _, k, i in order:
            w.writerow([v if isinstance(v, int | str) else _num(v) for v in _row(parts[k], i)])
    tmp.replace(path)
    return len(order)


def _row(p: Labelled, i: int) -> list[Any]:
    return [
        int(p.ts_ms[i]),
        p.symbol,
        p.segment,
        float(p.closes[i]),
        int(p.gap[i]),
        int(p.outlier[i]),
        *(float(v) for v in p.x[i]),
        float(p.ret_bps[i]),
        float(p.label_h[i]),
        float(p.tb_label[i]),
        float(p.tb_outcome[i]),
    ]


def build(
    sources: Sequence[tuple[str, Iterable[Replayed]]], spec: DatasetSpec, out: Path
) -> dict[str, Any]:
    """Sample each ``(name, events)`` source, label, and write a dataset with its ``.json``
    sidecar; returns the summary."""
    spec.check()
    parts = [
        label(s, spec)
        for k, (_name, events) in enumerate(sources)
        for s in sample(events, spec, k).values()
    ]
    if not any(len(p.ts_ms) for p in parts):
        raise ConfigError(
            "the sources gave no bar closes (no trades for any symbol): nothing to write; "
            "check the recording, or simulate at least a few minutes"
        )
    rows = write(out, parts, spec)
    summary: dict[str, Any] = {
        "spec": asdict(spec),
        "sources": [name for name, _ in sources],
        "rows": rows,
        "segments": {
            f"{p.segment}:{p.symbol}": {
                "bars": len(p.ts_ms),
                "first_ms": int(p.ts_ms[0]) if len(p.ts_ms) else None,
                "last_ms": int(p.ts_ms[-1]) if len(p.ts_ms) else None,
                "gap_bars": int(p.gap.sum()),
                "outlier_bars": int(p.outlier.sum()),
                "label_h_up": int(np.nansum(p.label_h)),
                "label_h_labelled": int(np.isfinite(p.label_h).sum()),
            }
            for p in parts
        },
    }
    out.with_name(out.name + ".json").write_text(json.dumps(summary, indent=1))
    return summary


def read(path: Path) -> tuple[DatasetSpec, list[Labelled], dict[str, Any]]:
    """A CSV dataset back as per-symbol arrays, with its spec from the sidecar.

    Raises :class:`ConfigError` saying what is wrong (no file, no or a broken sidecar, rows that
    do not parse), never a bare ``OSError`` or ``KeyError``."""
    sidecar = path.with_name(path.name + ".json")
    if not path.is_file():
        raise ConfigError(f"dataset {path} does not exist: write one with appliance dataset")
    try:
        meta: dict[str, Any] = json.loads(sidecar.read_text())
        raw_spec = meta["spec"]
        spec = DatasetSpec(**{**raw_spec, "features": tuple(raw_spec["features"])})
        spec.check()
    except FileNotFoundError as exc:
        raise ConfigError(
            f"dataset {path} has no sidecar {sidecar.name} (appliance dataset writes both)"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"dataset {path}: its sidecar {sidecar.name} is not one appliance dataset wrote "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    try:
        return spec, _read_rows(path, spec), meta
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"dataset {path}: a row does not parse ({exc})") from exc


def _read_rows(path: Path, spec: DatasetSpec) -> list[Labelled]:
    by_symbol: dict[tuple[int, str], list[list[str]]] = {}
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != columns(spec):
            raise ConfigError(f"{path}: columns do not match its sidecar's spec")
        for rec in reader:
            by_symbol.setdefault((int(rec[2]), rec[1]), []).append(rec)
    n_feat = len(spec.features)

    def col(rows: list[list[str]], j: int) -> F64:
        return np.asarray([float(r[j]) if r[j] else math.nan for r in rows])

    parts = []
    for (segment, symbol), rows in by_symbol.items():
        base = 6 + n_feat
        parts.append(
            Labelled(
                symbol,
                segment,
                np.asarray([int(r[0]) for r in rows], dtype=np.int64),
                col(rows, 3),
                np.stack([col(rows, 6 + j) for j in range(n_feat)], axis=1),
                col(rows, 4) == 1.0,
                col(rows, 5) == 1.0,
                col(rows, base),
                col(rows, base + 1),
                col(rows, base + 2),
                col(rows, base + 3),
            )
        )
    return parts

"""The model contract, version 1: what an ONNX model file must declare, and how it is read.

A model is an ONNX file whose ``metadata_props`` (string keys, string values) declare everything
the engine needs to feed it and to act on its output; ``models/README.md`` is the prose version
of this module. :func:`read_model_file` reads the metadata from the file's bytes
(:mod:`app.engine.onnxproto`, no ``onnx`` package) before onnxruntime is given anything: a file
without a valid contract, or one that is not only data (a tensor stored as external data), is
refused for the price of a parse, never a session. The tools that write models use
:func:`to_metadata`, so writer and reader share one definition.

Keys (all values are strings; JSON where noted)::

    schema_version   "1"
    model_version    free text naming this build, e.g. "default-seed1"
    features         JSON list of catalogue names (app.engine.features), in input order
    window           bars per input window (rows), >= 1
    bar_interval_s   the bars' length in seconds, >= 1
    layout           "window": input [1, window, features]; "flat": [1, window * features]
    input_name       the graph's one input (float32)
    output_name      the graph's one output (float32, shape [1, 1] or [1])
    scaler           the normalisation the engine applies to each row before the graph:
                     "baked" (none: it is in the graph); a fixed scaler, JSON
                     {"mean": [F floats], "scale": [F floats]} (optionally "kind": "fixed");
                     or a rolling z-score, JSON {"kind": "rolling_zscore", "window": N}
                     (2 <= N <= 100000). Both take an optional "clip": c > 0 (values cut to
                     [-c, c]). See :class:`RollingZScore` for its rule and warm-up.
    output           what the output means; v1 knows "prob_up"
    long_threshold   prob_up >= this: go long
    short_threshold  prob_up <= this: go short (short_threshold < long_threshold)
    horizon_bars     the label's horizon in bars
    label            the label's definition, in words
    training_range   what the model was trained on (data source, time range, rows), free text
    golden           JSON {"tolerance": t, "cases": [{"input": [[...] x F] x window, "output": p}]}
                     (p a probability in [0, 1], as the output is)
    symbols          optional: comma-separated symbols it serves; absent or "*": every symbol
    description      optional free text
    metrics          optional JSON of training figures (AUC, accuracy, Brier), for the panel

A window's rows are oldest first: row ``window - 1`` holds the feature values read when the
latest bar closed. Golden inputs are raw windows (before any declared scaler), exactly what
:meth:`app.engine.inference.LoadedModel.predict` takes: ``window`` rows, or for a rolling
z-score ``window + N - 1`` rows (the history its first row's statistics need;
:attr:`ModelContract.raw_rows`).

The ``scaler`` key carries the rolling form too (rather than a new key) so that an engine which
predates it refuses such a model ("scaler must be ...") instead of ignoring an unknown key and
feeding it raw features.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from app.engine.features import UnknownFeatureError, parse_feature
from app.engine.onnxproto import ModelHeader, ProtoError, read_header

SCHEMA_VERSION = 1

REQUIRED_KEYS: tuple[str, ...] = (
    "schema_version",
    "model_version",
    "features",
    "window",
    "bar_interval_s",
    "layout",
    "input_name",
    "output_name",
    "scaler",
    "output",
    "long_threshold",
    "short_threshold",
    "horizon_bars",
    "label",
    "training_range",
    "golden",
)
OPTIONAL_KEYS: tuple[str, ...] = ("symbols", "description", "metrics")

# What each ``output`` kind means; v1 has one.
OUTPUT_KINDS: dict[str, str] = {
    "prob_up": "probability in [0, 1] that the next significant move over the horizon is up",
}

ALL_SYMBOLS = "*"


class Layout(StrEnum):
    """How a window is laid out in the input tensor."""

    WINDOW = "window"  # [1, window, features]
    FLAT = "flat"  # [1, window * features], row after row


class Direction(StrEnum):
    """The direction a model's output points to (not an order side: closing a long sells)."""

    LONG = "long"
    SHORT = "short"


@dataclass(frozen=True, slots=True)
class Scaler:
    """A standard scaler applied by the engine before the graph: ``(x - mean) / scale``, then cut
    to ``[-clip, clip]`` when ``clip`` is given (None: not cut).

    The engine applies it as each row enters the window, so the graph starts at the model proper:
    onnxruntime's element-wise kernels cost several microseconds each when cold.
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    clip: float | None = None


ROLLING_ZSCORE = "rolling_zscore"
MAX_ROLLING_WINDOW = 100_000  # per symbol and feature, N floats are kept: bounded memory


@dataclass(frozen=True, slots=True)
class RollingZScore:
    """A rolling z-score per feature over the last ``window`` (N) complete rows:
    ``(x - mean_N) / std_N`` with the population standard deviation (ddof 0) of those N rows,
    the current row included, then cut to ``[-clip, clip]`` when ``clip`` is given. A feature
    (nearly) constant over the N rows (std below 1e-9 of max(1, |mean|)) gives 0.

    Warm-up: a row's z-score exists once N complete rows in a row have been seen (min periods =
    N); a row with a missing value (a feature warming up) starts the count again. The first
    decision therefore comes after ``N + window - 1`` complete rows. The engine's window
    (:class:`app.engine.inference.WindowBuffer`), backtests (the same trader), validation (golden
    cases hold ``window + N - 1`` raw rows, streamed through the same code) and ``appliance
    train`` (:func:`app.models.normalize.rolling_zscore`) apply this one implementation.
    """

    window: int
    clip: float | None = None


Normalization = Scaler | RollingZScore


@dataclass(frozen=True, slots=True)
class GoldenCase:
    """One raw input window (``window`` rows of ``features`` values) and its expected output."""

    input: tuple[tuple[float, ...], ...]
    output: float


@dataclass(frozen=True, slots=True)
class Golden:
    """Input/output pairs every load must reproduce within ``tolerance`` (absolute)."""

    tolerance: float
    cases: tuple[GoldenCase, ...]


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A graph input or output as onnxruntime describes it (``NodeArg``): name, shape, type.

    ``shape`` entries are ints for fixed dimensions and a str or None for symbolic ones; ``type``
    is onnxruntime's type string, e.g. ``"tensor(float)"``.
    """

    name: str
    shape: tuple[int | str | None, ...]
    type: str


@dataclass(frozen=True, slots=True)
class ModelContract:
    """A model's validated metadata (see the module docstring for each field's meaning)."""

    schema_version: int
    model_version: str
    features: tuple[str, ...]
    window: int
    bar_interval_s: int
    layout: Layout
    input_name: str
    output_name: str
    scaler: Normalization | None  # None: baked into the graph
    output: str
    long_threshold: float
    short_threshold: float
    horizon_bars: int
    label: str
    training_range: str
    golden: Golden
    symbols: tuple[str, ...] = ()  # empty: every configured symbol
    description: str = ""
    metrics: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The input tensor's shape for one window."""
        n = len(self.features)
        if self.layout is Layout.WINDOW:
            return (1, self.window, n)
        return (1, self.window * n)

    @property
    def raw_rows(self) -> int:
        """Raw rows :meth:`LoadedModel.predict` takes: ``window``, plus ``N - 1`` of history
        for a rolling z-score of N rows."""
        if isinstance(self.scaler, RollingZScore):
            return self.window + self.scaler.window - 1
        return self.window

    @property
    def window_shape(self) -> tuple[int, int]:
        """The shape of the raw window :meth:`LoadedModel.predict` takes: (raw_rows, features)."""
        return (self.raw_rows, len(self.features))

    def serves(self, symbol: str) -> bool:
        """Whether this model may decide for ``symbol`` (lower case)."""
        return not self.symbols or symbol.lower() in self.symbols

    def signal(self, prob: float) -> tuple[Direction | None, float]:
        """Map the model's output to ``(side, confidence)``.

        ``prob >= long_threshold`` → long with confidence ``prob``; ``prob <= short_threshold`` →
        short with confidence ``1 - prob``; otherwise no side, confidence ``max(prob, 1 - prob)``.
        A non-finite output gives ``(None, 0.0)``.
        """
        if not math.isfinite(prob):
            return None, 0.0
        if prob >= self.long_threshold:
            return Direction.LONG, prob
        if prob <= self.short_threshold:
            return Direction.SHORT, 1.0 - prob
        return None, max(prob, 1.0 - prob)


# -- reading ------------------------------------------------------------------------------------


class _Problems:
    """Collects every problem instead of stopping at the first, so a validator can list them."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)


def _int(meta: Mapping[str, str], key: str, p: _Problems, minimum: int = 1) -> int:
    raw = meta.get(key)
    if raw is None:
        return 0  # reported as missing already
    try:
        v = int(raw)
    except ValueError:
        p.add(f"metadata {key}={raw!r} is not an integer")
        return 0
    if v < minimum:
        p.add(f"metadata {key}={v} must be at least {minimum}")
        return 0
    return v


def _prob(meta: Mapping[str, str], key: str, p: _Problems) -> float:
    raw = meta.get(key)
    if raw is None:
        return math.nan
    try:
        v = float(raw)
    except ValueError:
        p.add(f"metadata {key}={raw!r} is not a number")
        return math.nan
    if not 0.0 <= v <= 1.0:
        p.add(f"metadata {key}={raw} must be within [0, 1]")
        return math.nan
    return v


def _json(meta: Mapping[str, str], key: str, p: _Problems) -> object:
    raw = meta.get(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        p.add(f"metadata {key} is not valid JSON ({exc})")
        return None


def _floats(value: object) -> tuple[float, ...] | None:
    if not isinstance(value, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        return None
    return tuple(float(v) for v in value)


def _features(meta: Mapping[str, str], p: _Problems) -> tuple[str, ...]:
    value = _json(meta, "features", p)
    if value is None:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(n, str) for n in value):
        p.add("metadata features must be a non-empty JSON list of feature names")
        return ()
    names: list[str] = []
    for n in value:
        try:
            names.append(parse_feature(n).name)
        except UnknownFeatureError as exc:
            p.add(f"metadata features: unknown feature name {n!r} ({exc})")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        p.add(f"metadata features lists {', '.join(dupes)} more than once")
    return tuple(names) if len(names) == len(value) else ()


def _clip(value: dict[str, object], p: _Problems) -> tuple[bool, float | None]:
    clip = value.get("clip")
    if clip is not None and (
        isinstance(clip, bool) or not isinstance(clip, int | float) or not 0.0 < clip < math.inf
    ):
        p.add(f"metadata scaler clip must be a positive number, got {clip!r}")
        return False, None
    return True, None if clip is None else float(clip)


def _rolling(value: dict[str, object], p: _Problems) -> RollingZScore | None:
    extra = sorted(set(value) - {"kind", "window", "clip"})
    if extra:
        p.add(
            f"metadata scaler {ROLLING_ZSCORE} has unknown keys {', '.join(extra)}: "
            'it takes "window" and optionally "clip"'
        )
        return None
    n = value.get("window")
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_ROLLING_WINDOW:
        p.add(
            f"metadata scaler {ROLLING_ZSCORE} window must be an integer from 2 to "
            f"{MAX_ROLLING_WINDOW} (bars per feature), got {n!r}"
        )
        return None
    ok, clip = _clip(value, p)
    return RollingZScore(n, clip) if ok else None


def _scaler(meta: Mapping[str, str], n_features: int, p: _Problems) -> Normalization | None:
    if meta.get("scaler") in (None, "baked"):
        return None
    value = _json(meta, "scaler", p)
    if value is None:
        return None
    kind = value.get("kind", "fixed") if isinstance(value, dict) else None
    if isinstance(value, dict) and kind == ROLLING_ZSCORE:
        return _rolling(value, p)
    if isinstance(value, dict) and kind != "fixed":
        p.add(f'metadata scaler kind {kind!r} is not one of "fixed", "{ROLLING_ZSCORE}"')
        return None
    mean = _floats(value.get("mean")) if isinstance(value, dict) else None
    scale = _floats(value.get("scale")) if isinstance(value, dict) else None
    if not isinstance(value, dict) or mean is None or scale is None:
        p.add(
            'metadata scaler must be "baked", JSON {"mean": [...], "scale": [...]} or '
            f'{{"kind": "{ROLLING_ZSCORE}", "window": N}}'
        )
        return None
    if n_features and (len(mean) != n_features or len(scale) != n_features):
        p.add(
            f"metadata scaler has {len(mean)} means and {len(scale)} scales "
            f"for {n_features} features"
        )
        return None
    if any(s <= 0.0 for s in scale):
        p.add("metadata scaler: every scale must be positive")
        return None
    ok, clip = _clip(value, p)
    return Scaler(mean, scale, clip) if ok else None


def _golden(
    meta: Mapping[str, str], window_shape: tuple[int, int], p: _Problems, history: int = 0
) -> Golden:
    empty = Golden(0.0, ())
    value = _json(meta, "golden", p)
    if value is None:
        return empty
    if not isinstance(value, dict) or not isinstance(value.get("cases"), list):
        p.add('metadata golden must be JSON {"tolerance": t, "cases": [{"input", "output"}...]}')
        return empty
    tol = value.get("tolerance")
    if not isinstance(tol, int | float) or isinstance(tol, bool) or not 0.0 < tol < 1.0:
        p.add(f"metadata golden tolerance must be a number in (0, 1), got {tol!r}")
        return empty
    cases: list[GoldenCase] = []
    rows_want, cols_want = window_shape
    for i, case in enumerate(value["cases"]):
        rows = case.get("input") if isinstance(case, dict) else None
        out = case.get("output") if isinstance(case, dict) else None
        parsed = [_floats(r) for r in rows] if isinstance(rows, list) else [None]
        good = [r for r in parsed if r is not None]
        if (
            len(good) != len(parsed)
            or not isinstance(out, int | float)
            or isinstance(out, bool)
            or not math.isfinite(out)
        ):
            p.add(f"metadata golden case {i}: needs input (rows of numbers) and output (a number)")
            continue
        if (
            rows_want
            and cols_want
            and (len(good) != rows_want or any(len(r) != cols_want for r in good))
        ):
            widths = "/".join(str(w) for w in sorted({len(r) for r in good})) or "0"
            p.add(
                f"metadata golden case {i}: input is {len(good)} rows of {widths} values, the "
                f"contract declares window x features = {rows_want}x{cols_want}"
                + (
                    f" (window {rows_want - history} + {history} rows of history)"
                    if history
                    else ""
                )
            )
            continue
        cases.append(GoldenCase(tuple(good), float(out)))
    # The output is a probability (every kind in OUTPUT_KINDS is): a model giving logits would
    # reproduce its golden cases and then never trade, every confidence refused by the gate.
    outside = [(i, c.output) for i, c in enumerate(cases) if not 0.0 <= c.output <= 1.0]
    if outside:
        listed = ", ".join(f"case {i}: {out:.6g}" for i, out in outside[:3])
        more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
        p.add(
            f"metadata golden outputs outside [0, 1] ({listed}{more}): the model's output must "
            "be a probability in [0, 1]; add a final Sigmoid"
        )
    if not value["cases"]:
        p.add("metadata golden has no cases: at least one input/output pair is required")
    return Golden(float(tol), tuple(cases))


def parse_contract(meta: Mapping[str, str]) -> tuple[ModelContract | None, list[str]]:
    """Read and validate a model's metadata; returns the contract, or None and every problem.

    Each problem is one message, e.g. ``missing metadata key 'window'`` or ``metadata features:
    unknown feature name 'rsi_x'``. A schema version other than :data:`SCHEMA_VERSION` stops the
    reading there: nothing else can be interpreted.
    """
    p = _Problems()
    version = meta.get("schema_version")
    if version is None:
        p.add(f"missing metadata key 'schema_version' (this engine reads version {SCHEMA_VERSION})")
        return None, p.items
    if version.strip() != str(SCHEMA_VERSION):
        p.add(f"unknown schema version {version!r}: this engine reads version {SCHEMA_VERSION}")
        return None, p.items
    for key in REQUIRED_KEYS:
        if key not in meta:
            p.add(f"missing metadata key {key!r}")
    features = _features(meta, p)
    window = _int(meta, "window", p)
    bar_interval_s = _int(meta, "bar_interval_s", p)
    horizon = _int(meta, "horizon_bars", p)
    layout_raw = meta.get("layout", Layout.WINDOW.value)
    try:
        layout = Layout(layout_raw)
    except ValueError:
        p.add(f"metadata layout={layout_raw!r} must be one of {', '.join(Layout)}")
        layout = Layout.WINDOW
    output = meta.get("output", "prob_up")
    if output not in OUTPUT_KINDS:
        p.add(f"metadata output={output!r} is not one of {', '.join(OUTPUT_KINDS)}")
    long_t = _prob(meta, "long_threshold", p)
    short_t = _prob(meta, "short_threshold", p)
    if not short_t < long_t and not (math.isnan(short_t) or math.isnan(long_t)):
        p.add(f"metadata short_threshold={short_t} must be below long_threshold={long_t}")
    for key in ("input_name", "output_name", "model_version"):
        if key in meta and not meta[key].strip():
            p.add(f"metadata {key} is empty")
    scaler = _scaler(meta, len(features), p)
    history = scaler.window - 1 if isinstance(scaler, RollingZScore) else 0
    golden = _golden(meta, (window and window + history, len(features)), p, history)
    raw_symbols = meta.get("symbols", ALL_SYMBOLS).strip()
    symbols = (
        ()
        if raw_symbols in ("", ALL_SYMBOLS)
        else tuple(s.strip().lower() for s in raw_symbols.split(",") if s.strip())
    )
    if p.items:
        return None, p.items
    return (
        ModelContract(
            schema_version=SCHEMA_VERSION,
            model_version=meta["model_version"],
            features=features,
            window=window,
            bar_interval_s=bar_interval_s,
            layout=layout,
            input_name=meta["input_name"],
            output_name=meta["output_name"],
            scaler=scaler,
            output=output,
            long_threshold=long_t,
            short_threshold=short_t,
            horizon_bars=horizon,
            label=meta["label"],
            training_range=meta["training_range"],
            golden=golden,
            symbols=symbols,
            description=meta.get("description", ""),
            metrics=meta.get("metrics", ""),
        ),
        [],
    )


def read_model_file(data: bytes) -> tuple[ModelHeader | None, ModelContract | None, list[str]]:
    """Read a model file's header and contract from its bytes, without onnxruntime.

    Returns ``(header, contract, problems)``: ``header`` is None when the bytes are not an ONNX
    model (random, truncated), ``contract`` None when anything is refused, and ``problems`` every
    reason. A file that is not only data (:meth:`ModelHeader.data_problems`: a tensor stored as
    external data, which onnxruntime would read from another file, or subgraphs nested deeper than
    the reader walks) is refused here, beside any problem of its contract, so onnxruntime never
    sees it.
    """
    if not data:
        return None, None, ["not an ONNX model: the file is empty"]
    try:
        header = read_header(data)
    except ProtoError as exc:
        return None, None, [f"not an ONNX model, or truncated or corrupt: {exc}"]
    problems = header.data_problems()
    contract, contract_problems = parse_contract(header.metadata)
    problems += contract_problems
    return header, None if problems else contract, problems


def _dims(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if not isinstance(d, int) else str(d) for d in shape) + "]"


def check_io(
    contract: ModelContract, inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo]
) -> list[str]:
    """Problems of the graph's inputs and outputs against the contract (empty list: they fit).

    The graph must have exactly one float32 input named ``input_name`` of shape
    :attr:`ModelContract.input_shape` (the batch dimension may be symbolic) and exactly one float32
    output named ``output_name`` of shape ``[1, 1]`` or ``[1]``.
    """
    problems: list[str] = []
    want = contract.input_shape
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        problems.append(f"the graph has {len(inputs)} inputs ({names}); the contract needs one")
    else:
        (i,) = inputs
        if i.name != contract.input_name:
            problems.append(
                f"input name mismatch: the graph's input is {i.name!r}, "
                f"the contract declares {contract.input_name!r}"
            )
        if i.type != "tensor(float)":
            problems.append(f"input dtype mismatch: {i.type}, the contract needs tensor(float)")
        fits = len(i.shape) == len(want) and all(
            (not isinstance(d, int) and k == 0) or d == w
            for k, (d, w) in enumerate(zip(i.shape, want, strict=True))
        )
        if not fits:
            what = (
                f"[1, window={contract.window}, features={len(contract.features)}]"
                if contract.layout is Layout.WINDOW
                else f"[1, window*features={contract.window}*{len(contract.features)}]"
            )
            problems.append(
                f"input shape mismatch: the graph takes {_dims(i.shape)}, the contract declares "
                f"{_dims(want)} = {what} (layout {contract.layout.value})"
            )
    if len(outputs) != 1:
        names = ", ".join(o.name for o in outputs)
        problems.append(f"the graph has {len(outputs)} outputs ({names}); the contract needs one")
    else:
        (o,) = outputs
        if o.name != contract.output_name:
            problems.append(
                f"output name mismatch: the graph's output is {o.name!r}, "
                f"the contract declares {contract.output_name!r}"
            )
        if o.type != "tensor(float)":
            problems.append(f"output dtype mismatch: {o.type}, the contract needs tensor(float)")
        ok_shape = len(o.shape) in (1, 2) and all(
            d == 1 or (k == 0 and not isinstance(d, int)) for k, d in enumerate(o.shape)
        )
        if not ok_shape:
            problems.append(
                f"output shape mismatch: the graph gives {_dims(o.shape)}, "
                "the contract needs [1, 1] or [1] (one value per window)"
            )
    return problems


# -- writing ------------------------------------------------------------------------------------


def _num(x: float) -> float | int:
    # JSON floats written with repr() round-trip exactly; integral values stay short.
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


def _scaler_text(scaler: Normalization | None) -> str:
    if scaler is None:
        return "baked"
    clip = {} if scaler.clip is None else {"clip": scaler.clip}
    if isinstance(scaler, RollingZScore):
        return json.dumps({"kind": ROLLING_ZSCORE, "window": scaler.window} | clip)
    return json.dumps(
        {"mean": [_num(v) for v in scaler.mean], "scale": [_num(v) for v in scaler.scale]} | clip
    )


def to_metadata(contract: ModelContract) -> dict[str, str]:
    """The ``metadata_props`` that declare ``contract`` (the inverse of :func:`parse_contract`)."""
    meta = {
        "schema_version": str(contract.schema_version),
        "model_version": contract.model_version,
        "features": json.dumps(list(contract.features)),
        "window": str(contract.window),
        "bar_interval_s": str(contract.bar_interval_s),
        "layout": contract.layout.value,
        "input_name": contract.input_name,
        "output_name": contract.output_name,
        "scaler": _scaler_text(contract.scaler),
        "output": contract.output,
        "long_threshold": repr(contract.long_threshold),
        "short_threshold": repr(contract.short_threshold),
        "horizon_bars": str(contract.horizon_bars),
        "label": contract.label,
        "training_range": contract.training_range,
        "golden": json.dumps(
            {
                "tolerance": contract.golden.tolerance,
                "cases": [
                    {"input": [[_num(v) for v in row] for row in c.input], "output": c.output}
                    for c in contract.golden.cases
                ],
            },
            separators=(",", ":"),
        ),
        "symbols": ",".join(contract.symbols) if contract.symbols else ALL_SYMBOLS,
    }
    if contract.description:
        meta["description"] = contract.description
    if contract.metrics:
        meta["metrics"] = contract.metrics
    return meta

"""Inference: load a model under its contract, run it on the hot path, swap it while running.

:func:`load_model` reads an ONNX file, validates its contract (:mod:`app.engine.model_contract`)
against the graph, and reproduces the golden vectors the file carries before anyone may use it:
onnxruntime builds for some platforms (RISC-V among them) have been reported to compute wrong
results, so a model that does not reproduce its own golden outputs is refused. Every refusal is a
:class:`~app.errors.ModelError` whose ``problems`` list each failure in its own message.

A load has two stages. :func:`read_model` reads the file's bytes without onnxruntime: a file that
is not only data (a tensor stored as external data, which onnxruntime would open from wherever
the process stands) or whose contract is broken is refused there, for the price of a parse.
:func:`open_model` then builds the one session (graph optimisation can cost seconds and hundreds
of megabytes, so it is built once, and only for a file that passed the first stage), checks the
graph's inputs and outputs and reproduces the golden cases.

The session runs on one thread (one intra-op, one inter-op, sequential execution, all graph
optimisations): the board has few cores and the feed must not wait for them. :meth:`predict` is
the general path: the window is copied into a preallocated float32 input that is bound to the
session once (IO binding), and the output lands in a preallocated buffer, so a call allocates
nothing in numpy or onnxruntime's Python layer. The decision loop goes one step further with
:meth:`LoadedModel.bind`: each symbol's :class:`WindowBuffer` is itself the bound input, so a
decision copies nothing at all.

:class:`InferenceSlot` holds the active model. A swap loads and validates the new file in a worker
thread while the event loop keeps handling market data, then replaces the model with one reference
assignment on the loop; a refused file leaves the running model in place.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import struct
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.engine.model_contract import (
    Direction,
    ModelContract,
    Normalization,
    RollingZScore,
    Scaler,
    TensorInfo,
    check_io,
    read_model_file,
)
from app.engine.onnxproto import ModelHeader
from app.errors import ModelError

Window = npt.NDArray[np.floating]  # (window, features), oldest row first
ContractCheck = Callable[[ModelContract], list[str]]

_MAX_ERROR_CHARS = 300


def session_options() -> ort.SessionOptions:
    """One thread, sequential, every graph optimisation, onnxruntime's own log kept to errors."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def _bound_run(
    session: ort.InferenceSession, contract: ModelContract, x: Window, out: Window
) -> tuple[Callable[[], object], tuple[object, ...]]:
    """A call without arguments that runs ``session`` on ``x`` into ``out``, bound once, and what
    must outlive it.

    On the CPU an OrtValue made from a numpy array shares its memory, so every call reads ``x``
    as it is then and writes where ``out`` is read. The public ``run_with_iobinding`` adds checks
    per call (a third of the cost of a small model here); the C binding it wraps has been stable
    since onnxruntime 1.8. Run options are made once: passing none makes onnxruntime build a
    default set on every call.
    """
    x_value = ort.OrtValue.ortvalue_from_numpy(x.reshape(contract.input_shape))
    out_value = ort.OrtValue.ortvalue_from_numpy(out)
    binding = session.io_binding()
    binding.bind_ortvalue_input(contract.input_name, x_value)
    binding.bind_ortvalue_output(contract.output_name, out_value)
    options = ort.RunOptions()
    options.log_severity_level = 3
    keep = (x, out, x_value, out_value, binding)
    c_session = getattr(session, "_sess", None)
    c_binding = getattr(binding, "_iobinding", None)
    if c_session is not None and c_binding is not None:
        return partial(c_session.run_with_iobinding, c_binding, options), keep
    return partial(session.run_with_iobinding, binding, options), keep


class LoadedModel:
    """A validated model with its session, ready for :meth:`predict`. Made by :func:`load_model`.

    Not thread-safe: one caller at a time (the decision loop). ``contract`` is what the file
    declares, ``sha256`` the file's digest (journalled when the model is swapped in).
    """

    __slots__ = (
        "_buf",
        "_clip",
        "_inv_scale",
        "_keep",
        "_mean",
        "_out",
        "_out_flat",
        "_rows",
        "_run",
        "_scratch",
        "contract",
        "path",
        "session",
        "sha256",
    )

    def __init__(
        self, path: Path, sha256: str, contract: ModelContract, session: ort.InferenceSession
    ) -> None:
        self.path = path
        self.sha256 = sha256
        self.contract = contract
        self.session = session
        self._buf = np.zeros(contract.input_shape, dtype=np.float32)
        # A (window, features) view of the same memory: predict writes the window through it.
        self._rows = self._buf.reshape((contract.window, len(contract.features)))
        out_shape = tuple(1 for _ in session.get_outputs()[0].shape)
        self._out = np.zeros(out_shape, dtype=np.float32)
        self._out_flat = self._out.reshape(-1)
        sc = contract.scaler if isinstance(contract.scaler, Scaler) else None
        self._mean = None if sc is None else np.asarray(sc.mean, dtype=np.float32)
        self._inv_scale = None if sc is None else (1.0 / np.asarray(sc.scale)).astype(np.float32)
        self._clip = None if sc is None else sc.clip
        # A rolling z-score needs history: predict streams the raw rows through a window of its
        # own, the code the decision loop's windows run.
        self._scratch = self.new_window() if isinstance(contract.scaler, RollingZScore) else None
        # Bound once: every run reads the window predict wrote and writes where it reads.
        self._run, self._keep = _bound_run(session, contract, self._buf, self._out)

    def predict(self, window: Window) -> float:
        """The model's output for one raw window of shape ``contract.window_shape``.

        Rows are oldest first; values are the features' raw values (any declared scaler is applied
        here; for a rolling z-score of N rows the window carries ``N - 1`` rows of history first,
        streamed through a :class:`WindowBuffer` as the engine streams bars). Raises
        ``ValueError`` for a window of the wrong shape.
        """
        want = self.contract.window_shape
        if window.shape != want:
            raise ValueError(
                f"window shape {window.shape} != {want} (window x features) of "
                f"model {self.contract.model_version}"
            )
        rows = self._rows
        scratch = self._scratch
        if scratch is not None:
            scratch.clear()
            # tolist's declared type is a union over every rank; a checked window is 2-D.
            for raw in cast("list[list[float]]", window.tolist()):
                scratch.push(raw)
            np.copyto(rows, scratch.view())
            self._run()
            return float(self._out_flat[0])
        np.copyto(rows, window, casting="same_kind")
        if self._mean is not None and self._inv_scale is not None:
            np.subtract(rows, self._mean, out=rows)
            np.multiply(rows, self._inv_scale, out=rows)
            if self._clip is not None:
                np.clip(rows, -self._clip, self._clip, out=rows)
        self._run()
        return float(self._out_flat[0])

    def new_window(self) -> WindowBuffer:
        """An empty window for this model: its shape, and its declared scaler applied at push."""
        c = self.contract
        return WindowBuffer(c.window, len(c.features), c.scaler)

    def bind(self, window: WindowBuffer) -> Callable[[], float]:
        """A predict for ``window`` (from :meth:`new_window`), bound to the session once.

        Each call of the returned function runs the model on the window's rows as they are then,
        without copying them: the window's buffer is the bound input, and the window has already
        applied any declared scaler to each row as it was pushed. One binding per window, so
        windows of several symbols share the session without rebinding. Raises ``ValueError``
        for a window of another shape or scaler.
        """
        rows = window.view()
        if rows.shape != self._rows.shape or window.scaler != self.contract.scaler:
            raise ValueError(
                f"cannot bind a window of shape {rows.shape} and scaler {window.scaler}: model "
                f"{self.contract.model_version} needs {self._rows.shape} and "
                f"{self.contract.scaler}"
            )
        out = np.zeros_like(self._out)
        run, keep = _bound_run(self.session, self.contract, rows, out)
        # Read through a memoryview: a Python float straight from the bytes, without entering
        # numpy (whose code, like onnxruntime's, is cold by the next bar close).
        value = out.data.cast("B").cast("f")

        def predict(
            run: Callable[[], object] = run,
            value: memoryview[float] = value,
            _keep: object = keep,
        ) -> float:
            run()
            return value[0]

        return predict

    def signal(self, prob: float) -> tuple[Direction | None, float]:
        """``(side, confidence)`` for an output (see :meth:`ModelContract.signal`)."""
        return self.contract.signal(prob)

    def describe(self) -> dict[str, object]:
        """What the model is, for ``status`` replies, the journal and the panel."""
        c = self.contract
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "model_version": c.model_version,
            "features": list(c.features),
            "window": c.window,
            "bar_interval_s": c.bar_interval_s,
            "output": c.output,
            "long_threshold": c.long_threshold,
            "short_threshold": c.short_threshold,
            "horizon_bars": c.horizon_bars,
            "symbols": list(c.symbols) or "*",
            "training_range": c.training_range,
            "metrics": c.metrics,
        }


def _refuse(path: Path, problems: Sequence[str]) -> ModelError:
    return ModelError(f"model {path} refused: {'; '.join(problems)}", tuple(problems))


def _tensors(args: Sequence[ort.NodeArg]) -> list[TensorInfo]:
    return [TensorInfo(a.name, tuple(a.shape), a.type) for a in args]


def golden_problems(model: LoadedModel) -> list[str]:
    """Reproduce the golden vectors through :meth:`LoadedModel.predict`; problems, if any."""
    golden = model.contract.golden
    worst: tuple[float, int, float, float] = (-1.0, 0, 0.0, 0.0)
    for i, case in enumerate(golden.cases):
        got = model.predict(np.asarray(case.input, dtype=np.float64))
        err = abs(got - case.output)
        if math.isnan(err):
            err = math.inf
        worst = max(worst, (err, i, case.output, got))
    err, i, want, got = worst
    if err <= golden.tolerance:
        return []
    return [
        f"golden mismatch: max abs error {err:.3g} > tolerance {golden.tolerance:g} "
        f"(case {i} of {len(golden.cases)}: expected {want:.9g}, got {got:.9g}); "
        "this onnxruntime build or this file computes wrong results"
    ]


def read_model(path: Path, data: bytes) -> tuple[ModelHeader, ModelContract]:
    """Stage one of a load: the file's header and contract, read and checked without onnxruntime.

    Raises :class:`ModelError` for an empty file, bytes that are not ONNX, a file that is not only
    data, and every problem of the contract (:func:`app.engine.model_contract.read_model_file`).
    """
    header, contract, problems = read_model_file(data)
    if header is None or contract is None:
        raise _refuse(path, problems)
    return header, contract


def _session_problem(text: str) -> str:
    detail = text.strip().splitlines()[0][:_MAX_ERROR_CHARS] if text.strip() else "no detail"
    return f"not an ONNX model, or truncated or corrupt: {detail}"


def open_model(
    path: Path,
    data: bytes,
    contract: ModelContract,
    *,
    explain: Callable[[str], str] = _session_problem,
) -> LoadedModel:
    """Stage two of a load: build the session (once), check the graph against ``contract`` and
    reproduce its golden cases. ``data`` must have passed :func:`read_model`.

    ``explain`` turns onnxruntime's message when it refuses the graph into the problem reported
    (the validator names unsupported opsets and operators). Raises :class:`ModelError`.
    """
    try:
        session = ort.InferenceSession(
            data, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime's pybind errors share no base class but Exception
        raise _refuse(path, [explain(str(exc) or type(exc).__name__)]) from exc
    problems = check_io(contract, _tensors(session.get_inputs()), _tensors(session.get_outputs()))
    if problems:
        raise _refuse(path, problems)
    model = LoadedModel(path, hashlib.sha256(data).hexdigest(), contract, session)
    try:
        problems = golden_problems(model)
    except Exception as exc:  # the graph itself failed to run: same verdict, its own message
        problems = [f"the graph failed to run a golden case: {str(exc)[:_MAX_ERROR_CHARS]}"]
    if problems:
        raise _refuse(path, problems)
    return model


def load_model(path: Path | str) -> LoadedModel:
    """Load, validate and self-test a model file; raises :class:`ModelError` saying why not.

    :func:`read_model`, then :func:`open_model`: the contract is checked before onnxruntime sees
    the file. Blocking (reads the file, builds the session, runs the golden cases): call it from a
    worker thread when the event loop is running (:meth:`InferenceSlot.swap` does).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _refuse(path, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    _header, contract = read_model(path, data)
    return open_model(path, data, contract)


def fit_problems(contract: ModelContract, symbols: Sequence[str]) -> list[str]:
    """Why a valid model cannot serve this engine: the configured ``symbols`` it does not cover."""
    missing = [s for s in symbols if not contract.serves(s)]
    if missing:
        return [
            f"the model serves {', '.join(contract.symbols)} only; configured symbols "
            f"{', '.join(missing)} would have no model"
        ]
    return []


class InferenceSlot:
    """The active model, swapped without stopping market data.

    Read :attr:`model` once per decision and use that object for the whole decision (predict and
    signal), so a swap in between cannot mix two models. :attr:`generation` grows with each swap,
    so a consumer knows when to rebuild what depends on the model (its feature set, its window).
    ``check`` adds the caller's own reasons to refuse a contract (an empty list: fine).
    """

    def __init__(
        self,
        model: LoadedModel | None = None,
        *,
        symbols: Sequence[str] = (),
        loader: Callable[[Path], LoadedModel] = load_model,
        check: ContractCheck | None = None,
    ) -> None:
        self._model = model
        self._symbols = tuple(s.lower() for s in symbols)
        self._loader = loader
        self._check = check
        self._lock = asyncio.Lock()
        self.generation = 0

    @property
    def model(self) -> LoadedModel | None:
        """The active model (None until one is loaded)."""
        return self._model

    def fit_problems(self, contract: ModelContract) -> list[str]:
        """Every reason this engine cannot run ``contract`` (an empty list: it can)."""
        problems = fit_problems(contract, self._symbols)
        if self._check is not None:
            problems += self._check(contract)
        return problems

    async def swap(self, path: Path | str) -> LoadedModel:
        """Load ``path`` off the loop, check it fits, and make it the active model.

        Raises :class:`ModelError` (the active model stays) when the file is refused. Swaps are
        serialised: a second one waits for the first.
        """
        path = Path(path)
        async with self._lock:
            new = await asyncio.to_thread(self._loader, path)
            problems = self.fit_problems(new.contract)
            if problems:
                raise _refuse(path, problems)
            self._model = new  # the swap: one reference assignment, on the loop
            self.generation += 1
            return new


class WindowBuffer:
    """The last ``window`` feature rows, oldest first, in one fixed contiguous float32 array.

    A push moves the rows up by one (a memmove of ``window * features * 4`` bytes: 640 for the
    default model) and writes the new row last, in native byte order as numpy reads it. The array
    never moves, so a model binds it once as its input (:meth:`LoadedModel.bind`) and runs on it
    without a copy. A row with a missing value (None: a feature still warming up) is stored as
    NaN, and the window is :attr:`ready` only once ``window`` complete rows follow it.

    With a ``scaler`` (a model's declared one) each row is stored scaled and clipped, so the
    rows are the graph's input as they are. With a rolling z-score (:class:`RollingZ`) a row is
    complete only once its statistics exist, so the window is ready after ``N + window - 1``
    complete raw rows (:attr:`needed`).
    """

    __slots__ = (
        "_bytes",
        "_clip",
        "_complete",
        "_floats",
        "_inv_scale",
        "_last",
        "_last_item",
        "_mean",
        "_pack",
        "_rolling",
        "_rows",
        "n_features",
        "needed",
        "scaler",
        "window",
    )

    def __init__(self, window: int, n_features: int, scaler: Normalization | None = None) -> None:
        if window < 1 or n_features < 1:
            raise ValueError(f"window and features must be >= 1, got {window}x{n_features}")
        fixed = scaler if isinstance(scaler, Scaler) else None
        if fixed is not None and not len(fixed.mean) == len(fixed.scale) == n_features:
            raise ValueError(f"the scaler is not for {n_features} features")
        self.window = window
        self.n_features = n_features
        self.scaler = scaler
        # As LoadedModel.predict applies a declared scaler: float32 mean and 1 / scale.
        self._mean = [] if fixed is None else [float(np.float32(m)) for m in fixed.mean]
        self._inv_scale = [] if fixed is None else [float(np.float32(1.0 / s)) for s in fixed.scale]
        self._clip = math.inf if fixed is None or fixed.clip is None else fixed.clip
        self._rolling = (
            RollingZ(scaler.window, n_features, scaler.clip)
            if isinstance(scaler, RollingZScore)
            else None
        )
        self.needed = window if self._rolling is None else window + self._rolling.n - 1
        # float32, the model's input type: the model reads these bytes as they are.
        self._rows = np.full((window, n_features), np.nan, dtype=np.float32)
        # Pushes go through memoryviews and struct, not numpy: a third of the cost per row, and a
        # fifth when the caches are cold (as they are once per bar).
        self._bytes = self._rows.data.cast("B")
        self._last = self._rows.nbytes - 4 * n_features  # where the newest row starts
        self._floats = self._bytes.cast("f")  # the same memory as float32 items
        self._pack = struct.Struct(f"={n_features}f").pack_into
        self._last_item = (window - 1) * n_features
        self._complete = 0

    def push(self, row: Sequence[float | None]) -> bool:
        """Append the latest bar's row; returns :attr:`ready`."""
        if len(row) != self.n_features:
            raise ValueError(f"row has {len(row)} values, the window has {self.n_features}")
        b = self._bytes
        b[: self._last] = b[4 * self.n_features :]  # one memmove: every row moves up one place
        rolling = self._rolling
        complete = None not in row
        if rolling is not None:
            complete = rolling.push(row, self._floats, self._last_item)
        elif self._mean:
            # Item by item into the float32 view: no list, no argument tuple, and compiled
            # (app.native) the arithmetic stays unboxed: 1.5 µs a row where a list and
            # pack_into took 3.7 (4.8 → 2.7 as Python).
            out, at = self._floats, self._last_item
            mean, inv_scale, hi = self._mean, self._inv_scale, self._clip
            lo = -hi
            for i in range(self.n_features):
                v = row[i]
                if v is None:
                    out[at + i] = math.nan
                else:
                    z = (v - mean[i]) * inv_scale[i]
                    out[at + i] = lo if z < lo else hi if z > hi else z  # NaN stays NaN
        elif complete:
            self._pack(b, self._last, *row)
        else:
            self._pack(b, self._last, *[math.nan if v is None else v for v in row])
        self._complete = self._complete + 1 if complete else 0
        return self._complete >= self.window

    @property
    def ready(self) -> bool:
        """True when the last ``window`` rows are all complete."""
        return self._complete >= self.window

    @property
    def filled(self) -> int:
        """Complete raw rows in a row, up to :attr:`needed` (the warm-up's progress)."""
        rolling = self._rolling
        if rolling is None:
            return min(self._complete, self.window)
        if rolling.count < rolling.n:
            return rolling.count
        return rolling.n - 1 + min(self._complete, self.window)

    def view(self) -> Window:
        """The last ``window`` rows, oldest first: the buffer itself, updated in place by
        :meth:`push` (copy it to keep a window)."""
        return self._rows

    def clear(self) -> None:
        """Forget every row (after a gap in the data, or when the model changes)."""
        self._rows.fill(np.nan)
        self._complete = 0
        if self._rolling is not None:
            self._rolling.reset()


class RollingZ:
    """The streaming rolling z-score of :class:`~app.engine.model_contract.RollingZScore`: per
    feature, the last ``n`` complete values in a ring, their mean and sum of squared deviations.

    Each push slides the statistics by one value (Welford's update for a fixed-length window:
    O(features), no pass over the ring); every ``n`` pushes they are recomputed exactly from the
    ring (two passes, amortised O(features) a row), so rounding never accumulates past one
    window. Arithmetic in float64; the z-scores are written as float32, the model's input type.
    """

    __slots__ = ("_clip", "_m2", "_mean", "_pos", "_ring", "count", "n", "n_features")

    def __init__(self, n: int, n_features: int, clip: float | None = None) -> None:
        if n < 2 or n_features < 1:
            raise ValueError(f"a rolling z-score needs n >= 2 and features >= 1, got {n}")
        self.n = n
        self.n_features = n_features
        self._clip = math.inf if clip is None else clip
        self._ring: list[float] = [0.0] * (n * n_features)
        self._mean: list[float] = [0.0] * n_features
        self._m2: list[float] = [0.0] * n_features
        self._pos = 0
        self.count = 0  # complete rows in a row, up to n

    def reset(self) -> None:
        """Forget the history (a missing value, a gap, a new model)."""
        self.count = 0
        self._pos = 0
        for i in range(self.n_features):
            self._mean[i] = 0.0
            self._m2[i] = 0.0

    def _exact(self) -> None:
        n, f, ring = self.n, self.n_features, self._ring
        for i in range(f):
            total = 0.0
            for j in range(n):
                total += ring[j * f + i]
            m = total / n
            sq = 0.0
            for j in range(n):
                d = ring[j * f + i] - m
                sq += d * d
            self._mean[i] = m
            self._m2[i] = sq

    def push(self, row: Sequence[float | None], out: memoryview[float], at: int) -> bool:
        """Add ``row`` and write its z-scores to ``out[at : at + features]`` (NaN while the
        statistics warm up); returns whether they exist. A missing value (None or NaN) resets
        the statistics: they cover the last ``n`` complete rows in a row."""
        f = self.n_features
        for i in range(f):
            v = row[i]
            if v is None or math.isnan(v):
                self.reset()
                for k in range(f):
                    out[at + k] = math.nan
                return False
        n, ring, mean, m2 = self.n, self._ring, self._mean, self._m2
        base = self._pos * f
        full = self.count >= n
        if not full:
            self.count += 1
        k_now = float(self.count)
        for i in range(f):
            x = float(row[i])  # type: ignore[arg-type]  # None was ruled out above
            m = mean[i]
            if full:
                old = ring[base + i]
                m_new = m + (x - old) / n
                m2[i] += (x - old) * (x - m_new + old - m)
            else:
                m_new = m + (x - m) / k_now
                m2[i] += (x - m) * (x - m_new)
            mean[i] = m_new
            ring[base + i] = x
        self._pos = self._pos + 1 if self._pos + 1 < n else 0
        if self.count < n:
            for i in range(f):
                out[at + i] = math.nan
            return False
        if self._pos == 0:
            self._exact()
        hi = self._clip
        lo = -hi
        for i in range(f):
            m = mean[i]
            var = m2[i] / n
            sd = math.sqrt(var) if var > 0.0 else 0.0
            z = 0.0 if sd <= 1e-9 * max(1.0, abs(m)) else (ring[base + i] - m) / sd
            out[at + i] = lo if z < lo else hi if z > hi else z
        return True

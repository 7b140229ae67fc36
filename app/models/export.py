"""From a trained network to a model file: ONNX export with the scaler folded into the graph,
the contract and golden vectors embedded, optional int8 quantisation with a parity report.

Needs torch (the ``train`` extra); int8 also needs the ``onnx`` package
(``onnxruntime.quantization`` is built on it). The contract metadata is written with
:mod:`.onnxproto`, so no other ONNX tooling is needed.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from app.engine.inference import load_model, session_options
from app.engine.model_contract import Golden, GoldenCase, ModelContract, to_metadata
from app.engine.onnxproto import with_metadata

F64 = npt.NDArray[np.float64]
OPSET = 17  # onnxruntime 1.17+ (Debian trixie ships 1.21) loads it
INPUT_NAME = "window"
OUTPUT_NAME = "prob_up"
FP32_TOLERANCE = 1e-5
# int8 kernels differ between CPUs (VNNI or not, RISC-V vector or scalar): a wider tolerance.
INT8_TOLERANCE = 1e-3


def export_torch(net: Any, mean: F64, scale: F64, window: int, clip: float) -> bytes:
    """``net`` (raw logits from standardised [1, window, features]) as ONNX bytes computing
    ``sigmoid(net(clip((x - mean) / scale, ±clip)))``: the scaler is part of the graph."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
            self.register_buffer("inv", torch.tensor(1.0 / scale, dtype=torch.float32))

        def forward(self, x: Any) -> Any:
            z = torch.clamp((x - self.mean) * self.inv, -clip, clip)
            return torch.sigmoid(self.net(z)).reshape(1, 1)

    module = Wrapped().eval()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The TorchScript exporter is deprecated but needs nothing beyond torch; the dynamo one
        # needs onnxscript. Its notice and the RNN batch-size note do not apply (batch is 1).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(1, window, len(mean)),),
            str(Path(tmp) / "model.onnx"),
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamo=False,
        )
        return (Path(tmp) / "model.onnx").read_bytes()


def run_ort(model: bytes, x: F64) -> F64:
    """The graph's outputs for raw windows ``x`` (n, window, features), one call each, fed as
    :meth:`LoadedModel.predict` feeds them (float32)."""
    sess = ort.InferenceSession(model, session_options(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x32 = x.astype(np.float32)
    return np.asarray([float(np.ravel(sess.run(None, {name: w[None]})[0])[0]) for w in x32])


def golden(
    model: bytes, x: F64, picks: list[int], tolerance: float, raw: list[F64] | None = None
) -> Golden:
    """Golden cases from what onnxruntime computes for the picked windows ``x[picks]`` (the
    graph's input). Their inputs are those windows, or ``raw`` when the engine normalises
    (a rolling z-score: the raw rows, history included, that the windows were made from)."""
    out = run_ort(model, x[picks])
    # Raw history stays float64, as the engine's normaliser reads it: a feature that barely
    # moves over N bars has z-scores that float32 rounding of its raw values would change.
    inputs = [x[i].astype(np.float32) for i in picks] if raw is None else raw
    cases = tuple(
        GoldenCase(tuple(tuple(float(v) for v in row) for row in r), float(o))
        for r, o in zip(inputs, out, strict=True)
    )
    return Golden(tolerance, cases)


def embed(model: bytes, contract: ModelContract) -> bytes:
    """The model with ``contract`` as its metadata."""
    return with_metadata(model, to_metadata(contract))


def quantize_int8(model: bytes) -> bytes | None:
    """Dynamic int8 quantisation of the weights; None when the ``onnx`` package is missing."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        return dst.read_bytes()


def latency_us(model: bytes, runs: int = 300) -> float:
    """Median :meth:`LoadedModel.predict` time of a finished model file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        path.write_bytes(model)
        loaded = load_model(path)
    window = np.asarray(loaded.contract.golden.cases[0].input)
    for _ in range(20):
        loaded.predict(window)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        loaded.predict(window)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000.0


@dataclass(frozen=True)
class Parity:
    """fp32 against int8 on the same windows."""

    max_abs_diff: float
    mean_abs_diff: float
    fp32_us: float
    int8_us: float
    kept: str  # "int8" or "fp32"

    def as_dict(self) -> dict[str, float | str]:
        return {
            "max_abs_diff": round(self.max_abs_diff, 6),
            "mean_abs_diff": round(self.mean_abs_diff, 6),
            "fp32_us": round(self.fp32_us, 2),
            "int8_us": round(self.int8_us, 2),
            "kept": self.kept,
        }


def parity(fp32: bytes, int8: bytes, x: F64, fp32_us: float, int8_us: float) -> Parity:
    """Compare the two graphs on ``x``; int8 is kept only when faster and within tolerance."""
    diff = np.abs(run_ort(fp32, x) - run_ort(int8, x))
    worst = float(diff.max()) if len(diff) else 0.0
    keep = "int8" if int8_us < fp32_us and worst <= 0.02 else "fp32"
    return Parity(worst, float(diff.mean()) if len(diff) else 0.0, fp32_us, int8_us, keep)

"""Inference latency of the default model: plain ``session.run`` vs IO binding vs ``predict``.

Figures, not pass/fail: ``python benchmarks/inference_bench.py [--calls N] [--model PATH]``.

- ``run``: what most code does, ``session.run([out], {in: array})``: builds the feed dict, wraps the
  array, allocates the output each call.
- ``io binding``: ``run_with_iobinding`` on an input bound once to a preallocated buffer.
- ``predict``: :meth:`LoadedModel.predict`, the general path: copies the window into the bound
  buffer (with the float64 → float32 cast) and reads the bound output.
- ``bound window``: what the decision loop calls, :meth:`LoadedModel.bind` on a
  :class:`WindowBuffer`: the window is the bound input, run options are made once, the output is
  read through a memoryview.

All hot (called back to back): in the decision loop a call comes once per bar close with other
work in between, and costs 2-4x these figures (see ``appliance bench``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

from app.engine.inference import load_model  # noqa: E402


def per_call_us(fn: Callable[[], object], calls: int, repeats: int = 5) -> tuple[float, float]:
    """Median and best of ``repeats`` timings, in microseconds per call."""
    for _ in range(min(calls, 1000)):  # warm caches and onnxruntime's first-run work
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter_ns() - t0) / calls / 1000)
    return statistics.median(samples), min(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "default.onnx")
    args = ap.parse_args()

    model = load_model(args.model)
    c = model.contract
    window = np.asarray(c.golden.cases[0].input, dtype=np.float64)
    # The window the decision loop keeps: rows scaled and clipped as they are pushed, which is
    # the graph's input as it is (``run`` and ``io binding`` take it too).
    wb = model.new_window()
    for row in c.golden.cases[0].input:
        wb.push(list(row))
    bound_window = model.bind(wb)
    x32 = wb.view().reshape(c.input_shape).copy()
    session = model.session

    def plain() -> np.ndarray:
        result: np.ndarray = session.run([c.output_name], {c.input_name: x32})[0]
        return result

    binding = session.io_binding()
    buf = x32.copy()
    out = np.zeros((1, 1), dtype=np.float32)
    in_value = ort.OrtValue.ortvalue_from_numpy(buf)
    out_value = ort.OrtValue.ortvalue_from_numpy(out)
    binding.bind_ortvalue_input(c.input_name, in_value)
    binding.bind_ortvalue_output(c.output_name, out_value)

    def bound() -> np.ndarray:
        session.run_with_iobinding(binding)
        return out

    assert float(plain().reshape(-1)[0]) == float(bound().reshape(-1)[0]) == bound_window()
    assert abs(bound_window() - model.predict(window)) < 1e-6  # predict scales in float32

    print(
        f"model {c.model_version}: input {list(c.input_shape)} float32, onnxruntime "
        f"{ort.__version__}, numpy {np.__version__}, 1 intra-op / 1 inter-op thread"
    )
    for name, fn in (
        ("run", plain),
        ("io binding", bound),
        ("predict", lambda: model.predict(window)),
        ("bound window", bound_window),
    ):
        median, best = per_call_us(fn, args.calls)
        print(
            f"  {name:12s} {median:8.2f} µs/call median  {best:8.2f} best  ({args.calls} calls x 5)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

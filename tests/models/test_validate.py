"""The validator: the default model passes; each broken file is refused with its own reason, a
non-zero exit, and the store's active model untouched."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.clock import ManualClock
from app.engine.inference import InferenceSlot, load_model
from app.engine.model_contract import Golden, GoldenCase, Layout, ModelContract, to_metadata
from app.engine.onnxproto import read_header, with_metadata
from app.errors import ModelError
from app.models.commands import model_commands
from app.models.store import ModelStore
from app.models.validate import MIB, ValidationLimits, validate, validate_async
from tests.handlers import invoke

onnx = pytest.importorskip("onnx", reason="building broken models needs the onnx package")

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "models" / "default.onnx"
BACKEND = Path(onnx.__file__).parent / "backend" / "test" / "data"


def _backend_model(rel: str) -> Path:
    """One of onnx's own backend test models (the pip wheel ships them; Debian's package does
    not, so on trixie's packages these cases skip, saying so)."""
    path = BACKEND / rel / "model.onnx"
    if not path.exists():
        pytest.skip(f"this onnx install has no backend test model {rel} (Debian strips them)")
    return path


def _contract(inp: str, out: str, window: int, n_feat: int) -> dict[str, str]:
    features = ("logret_1", "rsi_14", "obi_5", "spread_bps", "tod_sin")[:n_feat]
    zeros = tuple(tuple(0.0 for _ in features) for _ in range(window))
    c = ModelContract(
        schema_version=1, model_version="backend", features=features, window=window,
        bar_interval_s=1, layout=Layout.WINDOW, input_name=inp, output_name=out, scaler=None,
        output="prob_up", long_threshold=0.6, short_threshold=0.4, horizon_bars=10,
        label="x", training_range="none", golden=Golden(1e-5, (GoldenCase(zeros, 0.5),)),
    )  # fmt: skip
    return to_metadata(c)


def _backend(rel: str, inp: str, out: str, window: int, n_feat: int) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        data = _backend_model(rel).read_bytes()
        path = tmp / (rel.replace("/", "_") + ".onnx")
        path.write_bytes(with_metadata(data, _contract(inp, out, window, n_feat)))
        return path

    return make


def _random(tmp: Path) -> Path:
    path = tmp / "random.onnx"
    path.write_bytes(os.urandom(5000))
    return path


def _truncated(tmp: Path) -> Path:
    path = tmp / "truncated.onnx"
    data = DEFAULT.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _opset(tmp: Path) -> Path:
    m = onnx.load(str(_backend_model("simple/test_single_relu_model")))
    m.opset_import[0].version = 99
    path = tmp / "opset99.onnx"
    path.write_bytes(with_metadata(m.SerializeToString(), _contract("x", "y", 1, 2)))
    return path


def _double(tmp: Path) -> Path:
    """The backend's Sign model with its tensors made float64 (Sign accepts any number type)."""
    m = onnx.load(str(_backend_model("simple/test_sign_model")))
    for v in (*m.graph.input, *m.graph.output):
        v.type.tensor_type.elem_type = onnx.TensorProto.DOUBLE
    path = tmp / "double.onnx"
    path.write_bytes(with_metadata(m.SerializeToString(), _contract("x", "y", 7, 1)))
    return path


def _meta_changed(name: str, change: Callable[[dict[str, str]], None]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        data = DEFAULT.read_bytes()
        meta = dict(read_header(data).metadata)
        change(meta)
        path = tmp / f"{name}.onnx"
        path.write_bytes(with_metadata(data, meta))
        return path

    return make


def _bad_golden(meta: dict[str, str]) -> None:
    g = json.loads(meta["golden"])
    g["cases"][0]["output"] = min(1.0, g["cases"][0]["output"] + 0.25)
    meta["golden"] = json.dumps(g)


def _bad_feature(meta: dict[str, str]) -> None:
    names = json.loads(meta["features"])
    names[2] = "rsi_wobble"
    meta["features"] = json.dumps(names)


BAD: dict[str, tuple[Callable[[Path], Path], str]] = {
    "random bytes": (_random, "not an ONNX model"),
    "truncated": (_truncated, "truncated or corrupt"),
    "wrong input shape": (
        _backend("pytorch-converted/test_Sigmoid", "0", "1", 4, 5),
        "input shape mismatch",
    ),
    "wrong dtype": (_double, "input dtype mismatch"),
    "two inputs": (_backend("simple/test_expand_shape_model1", "X", "Y", 3, 1), "2 inputs"),
    "opset": (_opset, "unsupported opset"),
    "golden mismatch": (_meta_changed("golden", _bad_golden), "golden mismatch"),
    "unknown feature": (_meta_changed("feature", _bad_feature), "unknown feature name"),
}


def test_default_model_validates() -> None:
    report = validate(DEFAULT)
    assert report.ok, report.problems
    assert report.model is not None
    assert report.model["sha256"] == hashlib.sha256(DEFAULT.read_bytes()).hexdigest()
    assert report.latency_us is not None and report.baseline_us is not None
    assert report.budget_us is not None and report.latency_us <= report.budget_us
    # Same file as the baseline: size ratio 1, so the budget is 20x the baseline (a 1 s bar's
    # quarter, 250,000 us, is far above it).
    assert report.budget_us == pytest.approx(report.baseline_us * 20, abs=0.2)


def _heavy(tmp: Path, n: int, *, multiply: bool = True) -> Path:
    """A contract-valid model (1 feature, window 1, golden 0.5 on zeros) that also fills an n x n
    float32 matrix from its input (n = 28,000: 3.1 GB) and, with ``multiply``, multiplies it by
    itself (n = 600: ~200 M multiply-adds per prediction). That work is multiplied by 0, so the
    output is sigmoid(sum of the input); the input-dependent values keep it from being folded."""
    helper, numpy_helper, tp = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    inits = [
        numpy_helper.from_array(np.array([n, n], dtype=np.int64), "square"),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "out_shape"),
    ]
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["sx"], keepdims=1),
        helper.make_node("Expand", ["sx", "square"], ["big"]),
        helper.make_node("MatMul", ["big", "big"], ["product"])
        if multiply
        else helper.make_node("Identity", ["big"], ["product"]),
        helper.make_node("ReduceSum", ["product"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["sx", "nothing"], ["sum3"]),
        helper.make_node("Reshape", ["sum3", "out_shape"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "heavy",
        [helper.make_tensor_value_info("x", tp.FLOAT, [1, 1, 1])],
        [helper.make_tensor_value_info("y", tp.FLOAT, [1, 1])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path = tmp / f"heavy_{n}_{multiply}.onnx"
    path.write_bytes(with_metadata(model.SerializeToString(), _contract("x", "y", 1, 1)))
    return path


def test_a_model_slower_than_its_budget_is_refused(tmp_path: Path) -> None:
    report = validate(_heavy(tmp_path, 600), ValidationLimits(latency_runs=20))
    assert not report.ok
    assert len(report.problems) == 1 and report.problems[0].startswith("too slow: median"), report
    assert report.latency_us is not None and report.budget_us is not None
    assert report.baseline_us is not None
    assert report.latency_us > report.budget_us == pytest.approx(report.baseline_us * 20, abs=0.2)


def test_a_model_that_needs_more_memory_than_the_limit_is_refused(tmp_path: Path) -> None:
    # 3.1 GB past the 2 GiB address-space limit (onnxruntime itself maps ~350 MiB).
    limits = ValidationLimits(latency_runs=3)
    report = validate(_heavy(tmp_path, 28_000, multiply=False), limits)
    assert not report.ok
    assert len(report.problems) == 1, report.problems
    expected = f"memory limit: the model needs more than {limits.memory_bytes // MIB} MiB"
    assert report.problems[0].startswith(expected), report.problems


def test_a_model_that_burns_cpu_is_stopped_by_the_cpu_limit(tmp_path: Path) -> None:
    # n = 1,000: ~50 ms of CPU per prediction, 220 predictions: far past a 2 s CPU limit.
    report = validate(_heavy(tmp_path, 1000), ValidationLimits(cpu_s=2))
    assert report.problems == ("CPU time limit: the check used more than 2 s of CPU",)
    assert not report.ok


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_refuses_with_its_reason(case: str, tmp_path: Path) -> None:
    make, reason = BAD[case]
    path = make(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "model", "validate", str(path), "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert not report["ok"]
    assert any(reason in p for p in report["problems"]), report["problems"]


def test_size_limit_checked_first(tmp_path: Path) -> None:
    big = tmp_path / "big.onnx"
    big.write_bytes(DEFAULT.read_bytes() + b"\0" * 2000)  # a valid prefix does not matter
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "model", "validate", str(big), "--json",
         "--max-bytes", "16000"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout)["problems"] == [
        f"file too large: {big.stat().st_size} bytes > limit 16000 bytes (0.0152588 MiB)"
    ]


def test_wall_clock_limit(tmp_path: Path) -> None:
    report = validate(DEFAULT, ValidationLimits(wall_s=0.01))
    assert not report.ok and "wall-clock limit" in report.problems[0]


async def test_model_add_refusals_leave_the_active_model(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", ManualClock())
    active = load_model(DEFAULT)
    store.ensure_active(DEFAULT, active.contract.model_version)
    slot = InferenceSlot(active)
    handlers = model_commands(store, slot)
    for case, (make, reason) in sorted(BAD.items()):
        path = make(tmp_path)
        with pytest.raises(ModelError) as err:
            await invoke(handlers, "model.add", path=str(path))
        assert any(reason in p for p in err.value.problems), (case, err.value.problems)
        assert store.state.active == active.sha256
        assert slot.model is active
        assert list(store.state.models) == [active.sha256]


async def test_validate_async_matches_blocking(tmp_path: Path) -> None:
    for path in (DEFAULT, _heavy(tmp_path, 600), _random(tmp_path)):
        limits = ValidationLimits(latency_runs=20)
        blocking = validate(path, limits)
        report = await validate_async(path, limits)
        assert (report.ok, report.model) == (blocking.ok, blocking.model)
        # Latency figures differ run to run; the verdicts' wording up to the figures does not.
        assert [p.split(":")[0] for p in report.problems] == [
            p.split(":")[0] for p in blocking.problems
        ]
        assert report.ok is (path == DEFAULT)


async def test_one_validator_at_a_time_and_a_bounded_line(tmp_path: Path) -> None:
    """Four uploads at once with room for one waiting: one runs, one waits, two are refused; the
    lock keeps the two validated ones from overlapping (a second child would double the memory)."""
    import asyncio

    from app.models.commands import ValidatorQueue

    store = ModelStore(tmp_path / "models", ManualClock())
    active = load_model(DEFAULT)
    store.ensure_active(DEFAULT, active.contract.model_version)
    queue = ValidatorQueue(depth=1)
    handlers = model_commands(store, InferenceSlot(active), validator=queue)
    results = await asyncio.gather(
        *(invoke(handlers, "model.validate", path=str(DEFAULT)) for _ in range(4)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ModelError)]
    validated = [r for r in results if isinstance(r, dict)]
    assert len(validated) == 2 and all(r["ok"] for r in validated)
    assert len(refused) == 2 and all("the validator is busy" in str(r) for r in refused)
    assert queue.pending == 0
    listing = await invoke(handlers, "model.list")
    assert listing["validating"] == 0

"""The validator's checks and its report in this process, under the sandbox that runs them
(test_validate.py tests that sandbox: the child process, its limits, its empty directory): what
:func:`check_file` answers for the default model and for each broken file, the latency budget
with and without a baseline, the report's trip through the child's JSON, and its text."""

from __future__ import annotations

import json
import re
import signal
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("onnx", reason="building broken models needs the onnx package")

from app.engine import inference
from app.engine.inference import load_model
from app.engine.onnxproto import read_header, with_metadata
from app.errors import ModelError
from app.models import validate
from app.models.validate import (
    MIB,
    ValidationLimits,
    ValidationReport,
    check_file,
    format_report,
    with_baseline,
)
from tests.models.test_validate import BAD, DEFAULT

FAST = ValidationLimits(latency_runs=5)


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_broken_file_is_refused_with_its_reason(case: str, tmp_path: Path) -> None:
    make, reason = BAD[case]
    report = check_file(make(tmp_path), replace(FAST, baseline=None))
    assert report.ok is False
    assert any(reason in p for p in report.problems), report.problems
    assert (report.model, report.latency_us, report.budget_us) == (None, None, None)


def test_the_child_checks_the_size_again(tmp_path: Path) -> None:
    size = DEFAULT.stat().st_size
    report = check_file(DEFAULT, replace(FAST, max_bytes=size - 1))
    assert report.problems == (
        f"file too large: {size} bytes > limit {size - 1} bytes ({(size - 1) / MIB:g} MiB)",
    )
    assert report.ok is False


def test_an_unknown_opset_is_named_with_what_the_model_imports(tmp_path: Path) -> None:
    import onnxruntime as ort

    make, _ = BAD["opset"]
    report = check_file(make(tmp_path), replace(FAST, baseline=None))
    [problem] = report.problems
    assert problem.startswith(
        f"unsupported opset: the model imports ai.onnx 99, which onnxruntime {ort.__version__} "
        "cannot load ("
    ), problem


def test_the_default_model_is_measured_against_itself() -> None:
    data = DEFAULT.read_bytes()
    header = read_header(data)
    contract = load_model(DEFAULT).contract
    report = check_file(DEFAULT, FAST)
    assert report.ok and report.problems == () and report.notes == ()
    assert report.model is not None
    assert report.model["bytes"] == len(data)
    assert report.model["path"] == str(DEFAULT)
    assert report.model["ir_version"] == header.ir_version
    assert report.model["opsets"] == {d or "ai.onnx": v for d, v in header.opsets.items()}
    assert report.model["golden_cases"] == len(contract.golden.cases) > 0
    assert report.model["golden_tolerance"] == contract.golden.tolerance
    assert report.latency_us is not None and report.baseline_us is not None
    assert report.latency_us > 0 and report.baseline_us > 0
    # The same file as its baseline: size ratio 1, budget 20 x the baseline (far under a bar).
    assert report.budget_us == pytest.approx(report.baseline_us * 20, abs=0.2)


def test_without_a_baseline_the_budget_is_a_share_of_one_bar(tmp_path: Path) -> None:
    bar_s = load_model(DEFAULT).contract.bar_interval_s
    for baseline in (None, tmp_path / "missing.onnx"):
        report = check_file(DEFAULT, with_baseline(FAST, baseline))
        assert report.ok, report.problems
        assert report.baseline_us is None
        assert report.budget_us == bar_s * 250_000.0
        assert report.notes == ("no baseline model on this machine; latency checked per bar only",)


def test_a_baseline_that_does_not_load_is_noted(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07not a model")
    report = check_file(DEFAULT, with_baseline(FAST, broken))
    assert report.ok and report.baseline_us is None
    [note] = report.notes
    assert note.startswith(f"baseline {broken} did not load (")
    assert note.endswith("); latency checked per bar only")


def test_a_model_over_its_share_of_a_bar_is_too_slow() -> None:
    report = check_file(DEFAULT, replace(FAST, baseline=None, max_bar_share=1e-9))
    assert not report.ok
    [problem] = report.problems
    bar_s = load_model(DEFAULT).contract.bar_interval_s
    assert re.fullmatch(
        r"too slow: median inference \d+\.\d us > budget 0\.0 us "
        rf"\(baseline None us x 20 x size ratio, at most 1e-09 of a {bar_s} s bar\)",
        problem,
    ), problem
    assert report.latency_us is not None and report.latency_us > 0
    assert report.budget_us == 0.0


def test_the_report_survives_the_childs_json(tmp_path: Path) -> None:
    for limits in (FAST, replace(FAST, baseline=None)):
        report = check_file(DEFAULT, limits)
        again = ValidationReport.from_dict(json.loads(json.dumps(report.as_dict())))
        assert again == report
        assert report.as_dict()["notes"] == list(report.notes)
    assert report.notes  # the second one, without a baseline, has a note


def test_limits_survive_the_childs_command_line(tmp_path: Path) -> None:
    for limits in (ValidationLimits(), ValidationLimits(cpu_s=3, baseline=None),
                   ValidationLimits(latency_factor=2.5, baseline=tmp_path / "b.onnx")):  # fmt: skip
        assert ValidationLimits.from_json(limits.to_json()) == limits


def test_the_text_report(tmp_path: Path) -> None:
    report = check_file(DEFAULT, FAST)
    assert report.model is not None
    m = report.model
    assert format_report(report, Path("m.onnx")).splitlines() == [
        "m.onnx: OK",
        f"  model {m['model_version']} sha256 {m['sha256']}, {len(m['features'])} features x "
        f"window {m['window']}",
        f"  latency {report.latency_us} us (baseline {report.baseline_us} us, "
        f"budget {report.budget_us} us)",
    ]
    refused = ValidationReport(False, ("one", "two"), notes=("a note",))
    assert format_report(refused, Path("x.onnx")) == (
        "x.onnx: REFUSED\n  problem: one\n  problem: two\n  note: a note"
    )


class _StepClock:
    """``time.perf_counter_ns`` advancing ``step_ns`` per reading: every timed prediction takes
    exactly ``step_ns``, so the latency figures are known in advance."""

    def __init__(self, step_ns: int) -> None:
        self.now = 0
        self.step_ns = step_ns

    def __call__(self) -> int:
        self.now += self.step_ns
        return self.now


def _padded(tmp_path: Path, factor: int) -> Path:
    """The default model with metadata padding: the same graph in ``factor`` times the bytes."""
    data = DEFAULT.read_bytes()
    meta = dict(read_header(data).metadata)
    meta["padding"] = "x" * (len(data) * (factor - 1))
    path = tmp_path / "padded.onnx"
    path.write_bytes(with_metadata(data, meta))
    return path


def test_the_budget_scales_with_the_size_ratio_and_the_figures_are_rounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    padded = _padded(tmp_path, 2)
    ratio = padded.stat().st_size / DEFAULT.stat().st_size
    assert ratio > 1.9
    monkeypatch.setattr(time, "perf_counter_ns", _StepClock(1_234_567))
    report = check_file(padded, replace(FAST, latency_factor=0.75))
    assert report.ok, report.problems
    assert (report.latency_us, report.baseline_us) == (1234.57, 1234.57)
    assert report.budget_us == round(1234.567 * 0.75 * ratio, 2)


def test_too_slow_names_the_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "perf_counter_ns", _StepClock(1_234_567))
    report = check_file(DEFAULT, replace(FAST, latency_factor=0.5))
    bar_s = load_model(DEFAULT).contract.bar_interval_s
    assert report.problems == (
        "too slow: median inference 1234.6 us > budget 617.3 us (baseline 1234.6 us x 0.5 x "
        f"size ratio, at most 0.25 of a {bar_s} s bar)",
    )
    assert (report.latency_us, report.baseline_us, report.budget_us) == (1234.57, 1234.57, 617.28)


def test_a_model_exactly_at_its_budget_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    bar_s = load_model(DEFAULT).contract.bar_interval_s
    # Every prediction takes exactly a quarter of a bar: the budget without a baseline.
    monkeypatch.setattr(time, "perf_counter_ns", _StepClock(int(bar_s * 250_000_000)))
    report = check_file(DEFAULT, replace(FAST, baseline=None))
    assert report.ok, report.problems
    assert report.latency_us == report.budget_us == bar_s * 250_000.0


def test_an_allocation_failure_in_onnxruntime_is_the_memory_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failure = "onnxruntime: Failed to allocate memory for requested buffer of size 3136000000 " * 4

    def out_of_memory(*_: Any, **__: Any) -> None:
        raise ModelError("refused", ("a first problem", failure))

    monkeypatch.setattr(inference, "open_model", out_of_memory)
    report = check_file(DEFAULT, replace(FAST, memory_bytes=512 * MIB))
    assert report.problems == (
        f"memory limit: the model needs more than 512 MiB of address space ({failure[:200]})",
    )
    assert report.ok is False


class _Model:
    """What :func:`_median_predict_us` reads of a model: its contract's golden cases and window
    shape, and ``predict`` (here recording its inputs)."""

    def __init__(self, cases: tuple[Any, ...]) -> None:
        self.contract = SimpleNamespace(golden=SimpleNamespace(cases=cases), window_shape=(3, 2))
        self.inputs: list[Any] = []

    def predict(self, window: Any) -> None:
        self.inputs.append(window)


def test_latency_is_timed_on_the_first_golden_window_after_a_warm_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import numpy as np

    monkeypatch.setattr(time, "perf_counter_ns", _StepClock(1500))
    first = SimpleNamespace(input=((1, 2), (3, 4), (5, 6)))
    second = SimpleNamespace(input=((0, 0), (0, 0), (0, 0)))
    model = _Model((first, second))
    assert validate._median_predict_us(model, 50) == 1.5
    assert len(model.inputs) == 20 + 50  # 20 warm-up runs, then the timed ones
    window = model.inputs[0]
    assert window.dtype == np.float64
    assert window.tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    assert all(w is window for w in model.inputs)
    bare = _Model(())
    assert validate._median_predict_us(bare, 3) == 1.5
    assert len(bare.inputs) == 3 + 3
    assert bare.inputs[0].tolist() == [[0.0, 0.0]] * 3


def test_load_problems_name_the_cause() -> None:
    import onnxruntime as ort

    v = ort.__version__
    long = "y" * 400
    opsets = {"": 17, "com.microsoft": 1}
    assert validate._load_problem(f"Opset 99 is under development {long}\nmore", opsets) == (
        f"unsupported opset: the model imports ai.onnx 17, com.microsoft 1, which onnxruntime "
        f"{v} cannot load ({('Opset 99 is under development ' + long)[-200:]})"
    )
    for cause in ("No Op registered for Foo", "Could not find an implementation for Foo"):
        line = f"{cause} {long}"
        assert validate._load_problem(f"  {line}\nmore", opsets) == (
            f"unsupported operator for onnxruntime {v}: {line[-240:]}"
        )
    other = f"Load model failed {long}"
    assert validate._load_problem(other, opsets) == (
        f"onnxruntime cannot load the model: {other[:300]}"
    )
    assert (
        validate._load_problem("  \n ", opsets)
        == "onnxruntime cannot load the model: unknown error"
    )


# -- what the parent makes of the child's output ---------------------------------------------------

MARK = validate._CHILD_MARK


def _verdict(out: bytes, err: bytes = b"", returncode: int = 0) -> ValidationReport:
    return validate._verdict(returncode, out, err, FAST)


def test_the_childs_last_report_is_the_verdict() -> None:
    report = ValidationReport(True, (), {"model_version": "m"}, 1.5, 1.0, 20.0, ("n",))
    line = MARK + json.dumps(report.as_dict())
    # Anything before it (a library's chatter, bytes that are not UTF-8, even the mark) is noise.
    out = b"chatter \xff\n" + MARK.encode() + b'{"ok": tru\n' + line.encode() + b"\n"
    assert _verdict(out) == report


@pytest.mark.parametrize(
    "after_mark",
    [
        b'{"ok": tru',  # not JSON (ValueError)
        b'{"problems": []}',  # no verdict (KeyError)
        b'{"ok": true, "problems": 5}',  # problems not a list (TypeError)
    ],
)
def test_a_report_that_does_not_parse_is_a_failed_validator(after_mark: bytes) -> None:
    out = MARK.encode() + after_mark + b"\n"
    report = _verdict(out, b"Traceback (most recent call last):\n  ...\nSystemError: boom\n", 1)
    assert report == ValidationReport(
        False, ("the validator process failed (exit 1): SystemError: boom",)
    )


def test_a_failed_child_is_named_by_the_last_line_it_wrote() -> None:
    err = b"first\nsecond \xff line\n  last \xfe line  \n"
    assert _verdict(b"", err, 1).problems == (
        "the validator process failed (exit 1):   last \ufffd line",
    )
    assert _verdict(b"", b"", 2).problems == ("the validator process failed (exit 2): ",)


def test_a_child_killed_for_cpu_or_out_of_memory_is_named_so() -> None:
    cpu = "CPU time limit: the check used more than 60 s of CPU"
    assert _verdict(b"", b"", -signal.SIGXCPU).problems == (cpu,)
    assert _verdict(b"", b"", -signal.SIGKILL).problems == (cpu,)
    long = "std::bad_alloc " + "x" * 300
    assert _verdict(b"", f"Traceback\n{long}\n".encode(), 1).problems == (
        f"memory limit: the check failed within 2048 MiB (exit 1: {long[:200]})",
    )
    assert _verdict(b"", b"Fatal Python error: Segmentation fault\n", -signal.SIGSEGV).problems == (
        "memory limit: the check failed within 2048 MiB "
        f"(exit {-signal.SIGSEGV}: Fatal Python error: Segmentation fault)",
    )
    other = "RuntimeError: " + "z" * 400
    assert _verdict(b"", other.encode(), 1).problems == (
        f"the validator process failed (exit 1): {other[:300]}",
    )

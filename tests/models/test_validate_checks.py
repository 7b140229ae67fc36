"""The validator's checks and its report in this process, under the sandbox that runs them
(test_validate.py tests that sandbox: the child process, its limits, its empty directory): what
:func:`check_file` answers for the default model and for each broken file, the latency budget
with and without a baseline, the report's trip through the child's JSON, and its text."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("onnx", reason="building broken models needs the onnx package")

from app.engine.inference import load_model
from app.engine.onnxproto import read_header
from app.models.validate import (
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
    assert not report.ok
    assert any(reason in p for p in report.problems), report.problems
    assert (report.model, report.latency_us, report.budget_us) == (None, None, None)


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
        assert report.budget_us == pytest.approx(bar_s * 1e6 * 0.25)
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


def test_the_report_survives_the_childs_json() -> None:
    report = check_file(DEFAULT, replace(FAST, baseline=None))
    again = ValidationReport.from_dict(report.as_dict())
    assert again == report
    assert report.as_dict()["notes"] == list(report.notes)


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

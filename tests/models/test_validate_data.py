"""The validator holds models to being only data, as the engine's loader does (issue 14, part 5).

The issue's reproduction first: a model whose weights are stored as "external data" pointing at
``README.md`` (validated from the checkout) or at ``etc/passwd`` (validated from ``/``), with golden
outputs computed from that file, so that acceptance would prove the file was read. Then each
place a tensor can be external, a file without a contract (refused without building a session),
and a model whose golden outputs are logits.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("onnx", reason="crafting models needs the onnx package")

from app.engine.model_contract import Golden, to_metadata
from app.models.validate import ValidationLimits, check_file, validate
from tests.engine.test_model_data import WHERE, _logit_meta, _no_contract_heavy
from tests.engine.test_model_load import tiny_contract, write
from tests.models.crafted import (
    PLACES,
    external_payload,
    file_reader_model,
    tiny_graph_model,
)

ROOT = Path(__file__).resolve().parents[2]
LIMITS = ValidationLimits(latency_runs=20)
EXTERNAL = "1 tensor stored as external data"


def _reader(tmp_path: Path, location: str, source: Path) -> Path:
    tolerant = tiny_contract()
    tolerant = dataclasses.replace(tolerant, golden=Golden(1e-3, tolerant.golden.cases))
    content = source.read_bytes()[:4096]
    return write(tmp_path, file_reader_model(location, content, to_metadata(tolerant)))


@pytest.mark.parametrize(
    ("cwd", "location", "source"),
    [(ROOT, "README.md", ROOT / "README.md"), (Path("/"), "etc/passwd", Path("/etc/passwd"))],
)
def test_a_model_reading_a_file_it_does_not_contain_is_refused(
    cwd: Path, location: str, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not source.is_file():
        pytest.skip(f"no {source} here")
    path = _reader(tmp_path, location, source)
    monkeypatch.chdir(cwd)
    report = validate(path, LIMITS)
    assert not report.ok
    assert report.problems == (
        f"{EXTERNAL} (in a file outside the model, which onnxruntime would open): graph 'reader' "
        "> initializer 'w'. A model must carry its own weights: save it with every tensor inside "
        "the file",
    )


@pytest.mark.parametrize("place", PLACES)
def test_external_data_is_refused_wherever_it_is(
    place: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    meta = to_metadata(tiny_contract())
    assert validate(write(tmp_path, tiny_graph_model(meta, place), "inline.onnx"), LIMITS).ok
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.bin").write_bytes(external_payload())
    report = validate(write(tmp_path, tiny_graph_model(meta, place, external="weights.bin")))
    assert not report.ok
    (problem,) = report.problems
    assert problem.startswith(EXTERNAL) and WHERE[place] in problem, problem
    assert str(tmp_path) not in problem


def test_no_contract_is_refused_before_any_session(tmp_path: Path, sessions: list[bytes]) -> None:
    path = write(tmp_path, _no_contract_heavy())
    report = check_file(path, dataclasses.replace(LIMITS, baseline=None))
    assert report.problems == (
        "missing metadata key 'schema_version' (this engine reads version 1)",
    )
    assert len(sessions) == 0, "a session was built"


def test_validation_builds_one_session(tmp_path: Path, sessions: list[bytes]) -> None:
    data = tiny_graph_model(to_metadata(tiny_contract()))
    report = check_file(write(tmp_path, data), dataclasses.replace(LIMITS, baseline=None))
    assert report.ok, report.problems
    assert len(sessions) == 1 and sessions[0] == data, f"{len(sessions)} sessions built"


def test_logits_are_refused(tmp_path: Path) -> None:
    report = validate(write(tmp_path, tiny_graph_model(_logit_meta(), sigmoid=False)), LIMITS)
    assert not report.ok
    (problem,) = report.problems
    assert problem.endswith(
        "the model's output must be a probability in [0, 1]; add a final Sigmoid"
    ), problem

"""models/make_default.py: the same seed makes the same bytes, and the engine accepts them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine.inference import load_model

pytest.importorskip("onnx", reason="making a model needs the onnx package")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "models" / "make_default.py"


@pytest.mark.slow
def test_same_seed_same_bytes(tmp_path: Path) -> None:
    # Two processes at once (the machine has two cores): the smallest run the script allows.
    outs = [tmp_path / "a.onnx", tmp_path / "b.onnx"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "--seed",
                "3",
                "--segment-minutes",
                "10",
                "--out",
                str(o),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for o in outs
    ]
    logs = [p.communicate(timeout=100)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert "test : auc" in logs[0]
    model = load_model(outs[0])
    assert model.contract.model_version == "default-1-seed3-10m"
    assert json.loads(model.contract.training_range)["bars"] == 2 * 4 * 600

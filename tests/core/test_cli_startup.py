"""Every process of the appliance starts through `appliance`, which builds one parser of every
command: that parser must load nothing heavy, or each process carries every other one's
libraries. It did: `appliance ctl status` loaded numpy, onnxruntime, uvicorn and starlette
(76 MB, 656 modules), the panel carried onnxruntime and the engine the simulator's web server.
On the board, whose core is several times slower than a workstation's, that is seconds for every
`appliance ctl` and tens of megabytes in each long-running unit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import importlib, json, sys
from app.cli import build_parser
build_parser()
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""
# Libraries of one part only: the model runtime, the web servers, the exchange clients.
_ENGINE_ONLY = {"numpy", "onnxruntime", "websockets"}
_PANEL_ONLY = {"starlette", "uvicorn", "jinja2", "passlib"}
_HEAVY = _ENGINE_ONLY | _PANEL_ONLY | {"httpx", "sqlite_utils", "cryptography"}


def loaded(*modules: str) -> set[str]:
    """Top-level names of every module loaded by the parser and then ``modules``, in a fresh
    interpreter (the native build off: its import hook is not what is measured)."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, "-", *modules],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"APPLIANCE_NATIVE": "0"},
    )
    return {m.split(".")[0] for m in json.loads(out.stdout)}


def test_the_parser_of_every_command_loads_no_heavy_library() -> None:
    reached = loaded() & _HEAVY
    assert not reached, f"the parser loads {sorted(reached)}"


@pytest.mark.parametrize(
    ("process", "modules", "foreign"),
    [
        ("engine", ("app.node.engine",), _PANEL_ONLY),
        ("panel", ("app.admin.app", "app.admin.state"), _ENGINE_ONLY),
        ("ctl", ("app.ctl",), _HEAVY),
    ],
)
def test_each_process_loads_only_its_own_libraries(
    process: str, modules: tuple[str, ...], foreign: set[str]
) -> None:
    reached = loaded(*modules) & foreign
    assert not reached, f"the {process} loads {sorted(reached)}"

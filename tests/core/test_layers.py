"""Layers never reach up: importing every module of a package, in a fresh interpreter, loads
nothing of the packages above it. The composition root (app.node) is the only place that sees
them all."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# package -> the app packages it must never load (directly or through anything it imports).
FORBIDDEN: dict[str, set[str]] = {
    "app.config": {"app.engine", "app.live", "app.models", "app.store", "app.sim", "app.admin"},
    "app.binance": {
        "app.config",
        "app.engine",
        "app.live",
        "app.models",
        "app.store",
        "app.sim",
        "app.admin",
        "app.node",
    },
    "app.contract": {"app.engine", "app.live", "app.models", "app.store", "app.sim", "app.admin"},
    "app.store": {"app.engine", "app.live", "app.models", "app.sim", "app.admin", "app.node"},
    "app.engine": {"app.live", "app.models", "app.sim", "app.admin", "app.node"},
    "app.sim": {"app.engine", "app.live", "app.models", "app.admin", "app.node"},
    "app.live": {"app.models", "app.sim", "app.admin", "app.node"},
    "app.models": {"app.live", "app.admin", "app.node"},
    "app.admin": {"app.engine", "app.live", "app.models", "app.sim", "app.node"},
}
_PROBE = """
import importlib, json, pkgutil, sys
root = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(getattr(root, "__path__", []), sys.argv[1] + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted({".".join(m.split(".")[:2]) for m in sys.modules if m.startswith("app.")})))
"""


def loaded_by(package: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, package], capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_loads_nothing_above_it(package: str) -> None:
    reached = loaded_by(package) & FORBIDDEN[package]
    assert not reached, f"{package} loads {sorted(reached)}"


def test_the_composition_root_sees_everything() -> None:
    assert {"app.engine", "app.live", "app.models", "app.store"} <= loaded_by("app.node.engine")

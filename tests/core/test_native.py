"""app.native: a compiled build is used only when it matches the sources and is not turned off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import native


@pytest.fixture(autouse=True)
def _native_not_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read build directories; a caller's APPLIANCE_NATIVE=0 (`just mutate` sets it)
    would answer before any of them is looked at."""
    monkeypatch.delenv("APPLIANCE_NATIVE", raising=False)


def fake_build(directory: Path, **stamp_changes: object) -> Path:
    """A build directory as `appliance native build` leaves it (empty files stand for the
    extensions: check() looks at the stamp and that every file is there, it loads none)."""
    for path in native._files(directory).values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    stamp = {"modules": list(native.MODULES), "sources": native.digest()} | stamp_changes
    (directory / native.STAMP).write_text(json.dumps(stamp))
    return directory


def test_a_build_of_the_current_sources_is_used(tmp_path: Path) -> None:
    status = native.check(fake_build(tmp_path))
    assert status.active, status.reason


def test_changed_sources_are_never_shadowed_by_a_stale_build(tmp_path: Path) -> None:
    status = native.check(fake_build(tmp_path, sources="0" * 64))
    assert not status.active
    assert "sources changed since the build" in status.reason


def test_a_build_of_another_module_list_is_not_used(tmp_path: Path) -> None:
    status = native.check(fake_build(tmp_path, modules=["app.engine.book"]))
    assert not status.active and "another module list" in status.reason


def test_an_incomplete_build_is_not_used(tmp_path: Path) -> None:
    directory = fake_build(tmp_path)
    native._ext(directory, "app.engine.trader").unlink()
    status = native.check(directory)
    assert not status.active and "missing app.engine.trader" in status.reason


def test_no_build_and_an_unreadable_stamp_say_why(tmp_path: Path) -> None:
    assert native.check(tmp_path).reason == "not built (appliance native build)"
    (tmp_path / native.STAMP).write_text("{")
    assert native.check(tmp_path).reason.startswith("unreadable stamp")


def test_it_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(native.ENV, "0")
    status = native.check(fake_build(tmp_path))
    assert not status.active and status.reason == f"{native.ENV}=0"


def _engine_compiled(env: dict[str, str]) -> bool:
    code = (
        "import sys, app.engine.trader, app.engine.features.momentum as m; from app import native;"
        "print(native.in_use(sys.modules['app.engine.trader']), native.in_use(m))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert out[0] == out[1]  # all or nothing: compiled modules call each other natively
    return out[0] == "True"


def test_the_engine_runs_the_build_when_there_is_one() -> None:
    env = dict(os.environ)
    env.pop(native.ENV, None)
    if not native.check().active:
        pytest.skip(f"no usable build here: {native.check().reason}")
    assert _engine_compiled(env)
    assert not _engine_compiled(env | {native.ENV: "0"})


def test_the_compiled_modules_type_check_against_the_installed_stubs(tmp_path: Path) -> None:
    """mypyc type-checks before it compiles, against the packages installed where it runs: the
    image's cross build runs it on Debian trixie's. A numpy whose stubs type ``tolist()`` otherwise
    than the development venv's once failed that build 18 minutes into CI; run by the trixie suite
    (where python3-mypy is installed for this), the same check fails here in seconds."""
    pytest.importorskip("mypy")
    root = Path(native.__file__).resolve().parent.parent
    files = [m.replace(".", "/") + ".py" for m in native.MODULES]
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path), *files],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

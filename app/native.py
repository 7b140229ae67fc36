"""The per-message modules compiled with mypyc, used only when built from the sources as they are.

mypyc compiles type-annotated modules to C extensions; for the decision loop that took the
benchmark's p99 from 116 to 96 µs and its throughput from 45,000 to 55,000 messages/s (median of
5 interleaved runs each, Python 3.11, one x86 core). The Python sources stay the truth: the build
lives outside the tree, in ``.native/<SOABI>/``, with a stamp of the sources it was made from, and
:func:`install` (run when the ``app`` package is imported) serves the compiled modules only when
every stamped source is unchanged, so an edited module is never shadowed by a stale build. Without
a build (no compiler, or ``APPLIANCE_NATIVE=0``) everything runs as Python, the same code.

Build with ``appliance native build`` (``./setup.sh`` does, when it can); ``appliance native``
says which is in use and why.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# Modules every market message passes through. Not here: modules that run off the hot path;
# market_data (compiled, its feed task's cancellation under a TaskGroup behaved differently in
# the tests) and store.recorder (its row tuples are typed looser than mypyc's run-time checks).
MODULES: tuple[str, ...] = (
    "app.engine.book",
    "app.engine.decode",
    "app.engine.features.averages",
    "app.engine.features.bars",
    "app.engine.features.context",
    "app.engine.features.featureset",
    "app.engine.features.microstructure",
    "app.engine.features.momentum",
    "app.engine.health",
    "app.engine.inference",
    "app.engine.paper",
    "app.engine.recording",
    "app.engine.sampling",
    "app.engine.trader",
)
GROUP = "appliance_native"  # mypyc's shared library for the group: GROUP + "__mypyc"
STAMP = "stamp.json"
ROOT = Path(__file__).resolve().parents[1]
ENV = "APPLIANCE_NATIVE"


@dataclass(frozen=True)
class Status:
    """Whether the compiled modules are in use, and why (or why not)."""

    active: bool
    reason: str
    build_dir: Path


def build_dir() -> Path:
    """Where this interpreter's build lives (one per ABI: the trixie chroot's Python 3.13 and the
    host's 3.11 share a checkout)."""
    return ROOT / ".native" / str(sysconfig.get_config_var("SOABI"))


def source_path(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def digest(modules: Sequence[str] = MODULES) -> str:
    """One hash over the listed modules' sources, as they are now."""
    h = hashlib.sha256()
    for m in modules:
        h.update(m.encode() + b"\0")
        h.update(source_path(m).read_bytes())
    return h.hexdigest()


def _ext(path: Path, module: str) -> Path:
    return path.joinpath(*module.split(".")).with_name(
        module.rsplit(".", 1)[-1] + importlib.machinery.EXTENSION_SUFFIXES[0]
    )


def _files(directory: Path) -> dict[str, Path]:
    """Every extension a complete build holds, by module name (mypyc's group library too)."""
    return {m: _ext(directory, m) for m in (*MODULES, GROUP + "__mypyc")}


def check(directory: Path | None = None) -> Status:
    """Whether the build in ``directory`` (default: :func:`build_dir`) may be used."""
    directory = directory or build_dir()
    if os.environ.get(ENV, "1") == "0":
        return Status(False, f"{ENV}=0", directory)
    try:
        stamp = json.loads((directory / STAMP).read_text())
    except FileNotFoundError:
        return Status(False, "not built (appliance native build)", directory)
    except (OSError, ValueError) as exc:
        return Status(False, f"unreadable stamp: {exc}", directory)
    if stamp.get("modules") != list(MODULES):
        return Status(False, "built for another module list: rebuild", directory)
    try:
        current = digest()
    except OSError as exc:
        return Status(False, f"cannot read a source: {exc}", directory)
    if stamp.get("sources") != current:
        return Status(False, "sources changed since the build: rebuild", directory)
    missing = [m for m, file in _files(directory).items() if not file.exists()]
    if missing:
        return Status(False, f"build incomplete, missing {', '.join(missing)}", directory)
    return Status(True, f"mypyc build of {len(MODULES)} modules", directory)


class _Finder:
    """Serves the listed modules (and mypyc's group library) from the build directory (a meta
    path finder; not derived from ``importlib.abc``, whose import costs more than this module)."""

    def __init__(self, directory: Path) -> None:
        self._files = _files(directory)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self._files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


_installed: list[Status] = []  # what install() decided, once per process


def install() -> Status:
    """Serve the compiled modules if :func:`check` allows; once per process."""
    if not _installed:
        status = check()
        loaded = [m for m in MODULES if m in sys.modules]
        if status.active and loaded:  # too late for these: mixing would break mypyc's calls
            status = Status(False, f"already imported as Python: {loaded[0]}", status.build_dir)
        if status.active:
            sys.meta_path.insert(0, _Finder(status.build_dir))
        _installed.append(status)
    return _installed[0]


def status() -> Status:
    """What :func:`install` decided (installing now if it has not run)."""
    return install()


def in_use(module: ModuleType) -> bool:
    """True when ``module`` was loaded from the compiled build."""
    return (module.__file__ or "").endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def build(directory: Path | None = None) -> Path:
    """Compile :data:`MODULES` with mypyc into ``directory``; the stamp is written last, so a build
    that fails half-way is never used. Needs mypy (the ``dev`` extra), a C compiler and Python's
    headers."""
    import shutil
    import tempfile

    from mypyc.build import mypycify as _mypycify

    mypycify: Any = _mypycify  # its keywords differ between mypy versions (below)
    setuptools: Any = importlib.import_module("setuptools")  # untyped; imported only to build

    directory = directory or build_dir()
    sources = digest()
    files = [str(source_path(m).relative_to(ROOT)) for m in MODULES]
    with tempfile.TemporaryDirectory(prefix="native-") as tmp:
        cwd = Path.cwd()
        os.chdir(ROOT)  # mypyc names modules by their path relative to the working directory
        try:
            options: dict[str, Any] = {"opt_level": "3", "target_dir": str(Path(tmp) / "c")}
            try:
                ext = mypycify(files, group_name=GROUP, **options)
            except TypeError as exc:
                if "group_name" not in str(exc):
                    raise
                # mypy before 1.16 (Debian trixie's 1.15, which the image's cross build runs)
                # names the one shared library only through a `separate` group of every file.
                ext = mypycify(files, separate=[(files, GROUP)], **options)
            dist = setuptools.Distribution({"name": GROUP, "ext_modules": ext})
            cmd = dist.get_command_obj("build_ext")
            cmd.build_lib = str(Path(tmp) / "lib")
            cmd.build_temp = str(Path(tmp) / "obj")
            dist.run_command("build_ext")
        finally:
            os.chdir(cwd)
        staging = directory.with_name(directory.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(Path(tmp) / "lib", staging)
    stamp = {"modules": list(MODULES), "sources": sources, "python": sys.version.split()[0]}
    (staging / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)
    return directory

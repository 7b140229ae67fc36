"""Stage the app for the image: unpack a wheel as Debian's python3 would install it.

Usage: python3 image-stage.py WHEEL REPO STAGE [NATIVE]

Writes under STAGE (an mkosi extra tree): the wheel's packages and .dist-info in
/usr/lib/python3/dist-packages, its console scripts in /usr/bin (for /usr/bin/python3), and what
the app needs beside its code: the default model in /usr/share/appliance/models, the panel's
templates and static files in /usr/share/appliance/web, the README in /usr/share/doc/appliance.
No pip runs in the image and none of the wheel's dependencies are installed: they come from the
distribution's python3-* packages.

The app finds its data beside its package, as in a checkout (``<root>/models``, ``<root>/web``
next to ``<root>/app``): dist-packages gets ``models`` and ``web`` as links into
/usr/share/appliance, so every command (``appliance bench``, the engine, the validator, the panel)
finds them by itself, with no environment variable.

NATIVE, when given, is the per-message modules' cross build (``<SOABI>/`` from
scripts/image-native.sh). It goes where ``app.native`` looks (``<dist-packages>/.native/<SOABI>``),
and only after the check the guest repeats at every import: its stamp names the app's module list
and the digest of the sources staged here, and every extension is there.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import shutil
import sys
import zipfile
from pathlib import Path
from types import ModuleType

SITE = Path("usr/lib/python3/dist-packages")
SHARE = Path("usr/share/appliance")


def console_scripts(dist_info: Path) -> dict[str, str]:
    """The wheel's ``[console_scripts]`` entry points: name -> ``module:function``."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    entry_points = dist_info / "entry_points.txt"
    if entry_points.exists():
        parser.read(entry_points)
    return dict(parser["console_scripts"]) if parser.has_section("console_scripts") else {}


def staged_native(site: Path) -> ModuleType:
    """The staged app's own ``app.native``, loaded alone (it needs only the standard library), so
    the check below is the app's: its module list, its digest of the staged sources."""
    spec = importlib.util.spec_from_file_location("staged_app_native", site / "app" / "native.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def stage_native(native: Path, site: Path) -> Path:
    """Put the build in ``native`` (one ``<SOABI>/`` directory) where the staged app looks."""
    builds = [d for d in native.iterdir() if d.is_dir()]
    if len(builds) != 1:
        raise SystemExit(f"{native}: want one <SOABI>/ build directory, found {builds}")
    (build,) = builds
    app_native = staged_native(site)
    stamp = json.loads((build / app_native.STAMP).read_text())
    if stamp.get("modules") != list(app_native.MODULES):
        raise SystemExit(f"{build}: built for another module list")
    if stamp.get("sources") != app_native.digest():
        raise SystemExit(f"{build}: built from other sources than the staged ones")
    suffix = f".{build.name}.so"  # EXTENSION_SUFFIXES[0] of that ABI
    for module in (*app_native.MODULES, app_native.GROUP + "__mypyc"):
        ext = build.joinpath(*module.split(".")).with_name(module.rsplit(".", 1)[-1] + suffix)
        if not ext.is_file():
            raise SystemExit(f"{build}: no {ext.relative_to(build)}")
    # build_dir() is <root of the app>/.native/<this interpreter's SOABI>: the same parent.
    dest: Path = app_native.build_dir().parent / build.name
    shutil.copytree(build, dest)
    return dest


def stage(wheel: Path, repo: Path, root: Path, native: Path | None = None) -> None:
    """Unpack ``wheel`` and the app's data files from ``repo`` into the extra tree ``root``
    (with the compiled modules in ``native``, if given)."""
    if root.exists():
        shutil.rmtree(root)
    site = root / SITE
    site.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    (dist_info,) = site.glob("*.dist-info")
    (dist_info / "INSTALLER").write_text("appliance-image\n")
    bindir = root / "usr/bin"
    bindir.mkdir(parents=True)
    for name, target in console_scripts(dist_info).items():
        module, _, func = target.partition(":")
        script = bindir / name
        script.write_text(
            f"#!/usr/bin/python3\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n"
        )
        script.chmod(0o755)
    share = root / SHARE
    (share / "models").mkdir(parents=True)
    shutil.copy2(repo / "models/default.onnx", share / "models/default.onnx")
    for part in ("templates", "static"):
        src = repo / "web" / part
        if src.is_dir():
            shutil.copytree(src, share / "web" / part)
    # Beside the package, as in a checkout: where the app looks (relative links: they resolve in
    # the image and in the staging tree alike).
    for name in ("models", "web"):
        (site / name).symlink_to(Path("../../../..", SHARE, name))
    if native is not None:
        stage_native(native, site)
    doc = root / "usr/share/doc/appliance"
    doc.mkdir(parents=True)
    shutil.copy2(repo / "README.md", doc / "README.md")


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__.split("\n\n")[1])
    wheel_, repo_, stage_ = (Path(a) for a in sys.argv[1:4])
    stage(wheel_, repo_, stage_, Path(sys.argv[4]) if len(sys.argv) == 5 else None)

"""Stage the app for the image: unpack a wheel as Debian's python3 would install it.

Usage: python3 image-stage.py WHEEL REPO STAGE

Writes under STAGE (an mkosi extra tree): the wheel's packages and .dist-info in
/usr/lib/python3/dist-packages, its console scripts in /usr/bin (for /usr/bin/python3), and what
the app needs beside its code: the default model in /usr/share/appliance/models, the panel's
templates and static files in /usr/share/appliance/web, the README in /usr/share/doc/appliance.
No pip runs in the image and none of the wheel's dependencies are installed: they come from the
distribution's python3-* packages.
"""

from __future__ import annotations

import configparser
import shutil
import sys
import zipfile
from pathlib import Path

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


def stage(wheel: Path, repo: Path, root: Path) -> None:
    """Unpack ``wheel`` and the app's data files from ``repo`` into the extra tree ``root``."""
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
    doc = root / "usr/share/doc/appliance"
    doc.mkdir(parents=True)
    shutil.copy2(repo / "README.md", doc / "README.md")


if __name__ == "__main__":
    stage(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))

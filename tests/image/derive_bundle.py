"""Derive the bundles of versions N+1 and N+2 from the one image build, for `just image-test`.

Not a pytest module. Building the image twice more would take most of CI's budget, and what an
update must prove (a new slot booted, the data kept, a failed version rolled back) needs versions
that differ only where it shows: ``/usr/lib/appliance/version`` and ``IMAGE_VERSION`` in the
system image (edited with e2fsprogs' ``debugfs``), and the UKI's command line (``root=`` names
its slot's partition label) and ``.osrel`` section (systemd-boot sorts entries by it). ``--broken``
makes a version whose engine never reports ready (a drop-in replaces its start command), for the
rollback.

``python tests/image/derive_bundle.py --image appliance.raw --uki appliance.efi --key KEY
--from-version N --version N+1 [--broken] -o OUT``
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from app.update import bundle, gpt  # noqa: E402

BROKEN_DROPIN = """\
# A deliberately broken version (tests/image/derive_bundle.py --broken): the engine never
# reports ready, so this version must never be blessed.
[Service]
ExecStart=
ExecStart=/bin/sleep infinity
"""


def _sections(data: bytes) -> list[tuple[str, int]]:
    """(name, offset of its section header) for each PE section."""
    if data[:2] != b"MZ":
        raise ValueError("not a PE file")
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe : pe + 4] != b"PE\0\0":
        raise ValueError("no PE signature")
    count, opt_size = (
        struct.unpack_from("<H", data, pe + 6)[0],
        struct.unpack_from("<H", data, pe + 20)[0],
    )
    table = pe + 24 + opt_size
    return [
        (data[table + 40 * i : table + 40 * i + 8].rstrip(b"\0").decode(), table + 40 * i)
        for i in range(count)
    ]


def replace_in_section(data: bytearray, name: str, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` once in PE section ``name``, within its raw size."""
    sections = _sections(bytes(data))
    headers = dict(sections)
    if name not in headers:
        raise ValueError(f"no {name} section")
    h = headers[name]
    vsize, vaddr, raw_size, raw_ptr = struct.unpack_from("<IIII", data, h + 8)
    content = bytes(data[raw_ptr : raw_ptr + min(vsize, raw_size)])
    if content.count(old) != 1:
        raise ValueError(f"{name}: {old!r} found {content.count(old)} times, expected once")
    changed = content.replace(old, new)
    later = [struct.unpack_from("<I", data, o + 12)[0] for _, o in sections]
    limit = min([va for va in later if va > vaddr], default=vaddr + raw_size) - vaddr
    if len(changed) > min(raw_size, limit):
        raise ValueError(f"{name}: {len(changed)} bytes do not fit in {min(raw_size, limit)}")
    data[raw_ptr : raw_ptr + raw_size] = changed.ljust(raw_size, b"\0")
    struct.pack_into("<I", data, h + 8, len(changed))


def derive_uki(src: Path, dst: Path, old: str, new: str) -> None:
    data = bytearray(src.read_bytes())
    replace_in_section(data, ".cmdline", f"appliance_{old}".encode(), f"appliance_{new}".encode())
    replace_in_section(
        data, ".osrel", f'IMAGE_VERSION="{old}"'.encode(), f'IMAGE_VERSION="{new}"'.encode()
    )
    dst.write_bytes(data)


def _debugfs() -> list[str]:
    found = shutil.which("debugfs", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if not found:
        raise SystemExit("derive_bundle: needs e2fsprogs' debugfs")
    return [found]


def derive_root(root: Path, old: str, new: str, broken: bool, work: Path) -> None:
    """Edit the system image ``root`` in place: the new version, and the break if asked."""
    debugfs = _debugfs()
    os_release = subprocess.run(
        [*debugfs, "-R", "cat /usr/lib/os-release", str(root)],
        capture_output=True,
        check=True,
    ).stdout.decode()
    if f'IMAGE_VERSION="{old}"' not in os_release:
        raise SystemExit(f"derive_bundle: the image's os-release has no IMAGE_VERSION={old}")
    (work / "os-release").write_text(
        os_release.replace(f'IMAGE_VERSION="{old}"', f'IMAGE_VERSION="{new}"')
    )
    (work / "version").write_text(new + "\n")
    commands = [
        "rm /usr/lib/os-release",
        f"write {work / 'os-release'} /usr/lib/os-release",
        "rm /usr/lib/appliance/version",
        f"write {work / 'version'} /usr/lib/appliance/version",
    ]
    files = ["/usr/lib/os-release", "/usr/lib/appliance/version"]
    if broken:
        dropin = "/usr/lib/systemd/system/appliance-engine.service.d"
        (work / "broken.conf").write_text(BROKEN_DROPIN)
        commands += [f"mkdir {dropin}", f"write {work / 'broken.conf'} {dropin}/90-broken.conf"]
        files += [f"{dropin}/90-broken.conf"]
        commands += [f"sif {dropin} mode 040755", f"sif {dropin} uid 0", f"sif {dropin} gid 0"]
    for f in files:
        commands += [f"sif {f} mode 0100644", f"sif {f} uid 0", f"sif {f} gid 0"]
    (work / "commands").write_text("\n".join(commands) + "\n")
    subprocess.run(
        [*debugfs, "-w", "-f", str(work / "commands"), str(root)], check=True, capture_output=True
    )
    check = subprocess.run(
        [*debugfs, "-R", "cat /usr/lib/appliance/version", str(root)], capture_output=True
    )
    if check.stdout.decode().strip() != new:
        raise SystemExit(f"derive_bundle: the edit did not take: {check.stdout!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--uki", type=Path, required=True)
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--from-version", required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--broken", action="store_true")
    p.add_argument("-o", "--out", type=Path, required=True)
    ns = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=".derive-", dir=ns.out.parent) as tmp:
        work = Path(tmp)
        root = work / "root.raw"
        gpt.extract_partition(ns.image, root)
        derive_root(root, ns.from_version, ns.version, ns.broken, work)
        derive_uki(ns.uki, work / "uki.efi", ns.from_version, ns.version)
        m = bundle.write_bundle(
            ns.out, version=ns.version, root_image=root, uki=work / "uki.efi", private_key=ns.key
        )
    print(
        f"derived {ns.out}: version {m.version}{' (broken)' if ns.broken else ''}, "
        f"{ns.out.stat().st_size} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""scripts/image-flash.sh refuses what it must, on fake paths and loop devices, never real disks.

The running system's disk is only ever given with ``--check-only`` (which never writes, whatever
the checks say); writes go to loop devices over files in tmp_path that the test made itself.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLASH = REPO / "scripts" / "image-flash.sh"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")


def flash(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("APPLIANCE_IMAGE_OUT", None)
    return subprocess.run(
        ["bash", str(FLASH), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "appliance.raw"
    path.write_bytes(os.urandom(1024 * 1024))
    return path


def test_refuses_a_missing_path(image: Path, tmp_path: Path) -> None:
    r = flash("--check-only", "--image", str(image), str(tmp_path / "nope"))
    assert r.returncode == 2
    assert "does not exist" in r.stderr


def test_refuses_a_regular_file(image: Path, tmp_path: Path) -> None:
    target = tmp_path / "disk.img"
    target.write_bytes(b"\0" * 4096)
    r = flash("--image", str(image), str(target), stdin=f"{target}\n")
    assert r.returncode == 2
    assert "not a block device" in r.stderr
    assert target.read_bytes() == b"\0" * 4096


def test_refuses_a_character_device(image: Path) -> None:
    r = flash("--image", str(image), "/dev/null", stdin="/dev/null\n")
    assert r.returncode == 2
    assert "not a block device" in r.stderr


def _root_disk() -> str | None:
    if shutil.which("findmnt") is None or shutil.which("lsblk") is None:
        return None
    src = subprocess.run(
        ["findmnt", "-rno", "SOURCE", "--target", "/"], capture_output=True, text=True, check=False
    ).stdout.split("\n")[0]
    if not src.startswith("/dev/") or not Path(src).is_block_device():
        return None
    disks = subprocess.run(
        ["lsblk", "-srno", "NAME,TYPE", src], capture_output=True, text=True, check=False
    ).stdout.split("\n")
    names = [line.split()[0] for line in disks if line.split()[1:2] == ["disk"]]
    return f"/dev/{names[0]}" if names else None


def test_refuses_the_running_systems_disk(image: Path) -> None:
    disk = _root_disk()
    if disk is None:
        pytest.skip("/ is not on a block device here (container overlay)")
    # --check-only: even a wrong verdict could not write anything.
    r = flash("--check-only", "--image", str(image), disk)
    assert r.returncode == 2, r.stderr
    assert "running system" in r.stderr or "is mounted" in r.stderr or "held by" in r.stderr


def _mbr_with_one_partition(path: Path, size: int) -> None:
    """A disk image with an MBR and one Linux partition from 1 MiB to the end."""
    with path.open("wb") as f:
        f.truncate(size)
        entry = struct.pack("<B3sB3sII", 0, b"\0\0\0", 0x83, b"\0\0\0", 2048, size // 512 - 2048)
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")


def _partition_node(loop: str, tmp_path: Path) -> str | None:
    """The loop's first partition as a device node (made in tmp_path where /dev lacks one)."""
    name = f"{Path(loop).name}p1"
    if Path(f"/dev/{name}").is_block_device():
        return f"/dev/{name}"
    sysdev = Path(f"/sys/class/block/{name}/dev")
    if not sysdev.exists():
        return None
    major, minor = (int(x) for x in sysdev.read_text().split(":"))
    node = tmp_path / name
    os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(major, minor))
    return str(node)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("loop devices need root")
    if not Path("/dev/loop-control").exists() or shutil.which("losetup") is None:
        pytest.skip("no loop device support here")
    backing = tmp_path / "loopdisk.img"
    _mbr_with_one_partition(backing, 32 * 1024 * 1024)
    made = subprocess.run(
        ["losetup", "--find", "--show", "--partscan", str(backing)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if made.returncode != 0:
        pytest.skip(f"losetup failed: {made.stderr.strip()}")
    dev = made.stdout.strip()
    try:
        if shutil.which("udevadm"):
            subprocess.run(["udevadm", "settle", "--timeout=10"], check=False, timeout=20)
        yield dev
    finally:
        subprocess.run(["umount", str(tmp_path / "mnt")], capture_output=True, check=False)
        subprocess.run(["losetup", "--detach", dev], check=False, timeout=30)


@needs_root
def test_a_whole_loop_disk_passes_the_checks(loop: str, image: Path) -> None:
    r = flash("--check-only", "--image", str(image), loop)
    assert r.returncode == 0, r.stderr
    assert "sha256" in r.stderr
    assert "nothing written" in r.stderr


@needs_root
def test_refuses_a_partition(loop: str, image: Path, tmp_path: Path) -> None:
    part = _partition_node(loop, tmp_path)
    if part is None:
        pytest.skip("the kernel made no partition device for the loop")
    r = flash("--check-only", "--image", str(image), part)
    assert r.returncode == 2
    assert "is a partition" in r.stderr


@needs_root
def test_refuses_a_disk_with_a_mounted_partition(loop: str, image: Path, tmp_path: Path) -> None:
    part = _partition_node(loop, tmp_path)
    if part is None or shutil.which("mkfs.ext4") is None:
        pytest.skip("no partition device or no mkfs.ext4")
    subprocess.run(["mkfs.ext4", "-q", part], check=True, timeout=60)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", part, str(mnt)], check=True, timeout=30)
    r = flash("--image", str(image), loop, stdin=f"{loop}\n")
    assert r.returncode == 2
    assert "is mounted" in r.stderr


@needs_root
def test_a_wrong_confirmation_writes_nothing(loop: str, image: Path) -> None:
    before = Path(loop).read_bytes()[:4096]
    r = flash("--image", str(image), loop, stdin="yes\n")
    assert r.returncode == 2
    assert "confirmation" in r.stderr
    assert Path(loop).read_bytes()[:4096] == before


@needs_root
def test_writes_the_image_after_the_typed_confirmation(loop: str, image: Path) -> None:
    r = flash("--image", str(image), loop, stdin=f"{loop}\n")
    assert r.returncode == 0, r.stderr
    data = image.read_bytes()
    with open(loop, "rb") as dev:
        assert dev.read(len(data)) == data
    assert "read back and compared" in r.stderr

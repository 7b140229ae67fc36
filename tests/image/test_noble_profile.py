"""The board profile (noble-rv2) without the board: its extlinux.conf, its configuration as mkosi
reads it, and scripts/deb-rebuild.sh's refusals. Fast, no root, no network, nothing is built.
"""

from __future__ import annotations

import configparser
import importlib.machinery
import importlib.util
import json
import os
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "image"
PROFILE = IMAGE / "mkosi.profiles" / "noble-rv2"
POSTINST = PROFILE / "mkosi.postinst.chroot"
REBUILD = REPO / "scripts" / "deb-rebuild.sh"
CACHE = Path(os.environ.get("APPLIANCE_IMAGE_CACHE", "/var/cache/appliance-image"))
MKOSI = CACHE / "mkosi/bin/mkosi"


@pytest.fixture(scope="module")
def postinst() -> ModuleType:
    # A script without a .py suffix, loaded as the module it also is.
    loader = importlib.machinery.SourceFileLoader("noble_rv2_postinst", str(POSTINST))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def ini(path: Path) -> configparser.ConfigParser:
    # mkosi's files: repeated keys (CopyFiles=) and indented continuation lines.
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


EXPECTED = """\
# Written by mkosi.postinst.chroot of profile noble-rv2; read by U-Boot's distro boot.
default appliance
menu title appliance
prompt 0
timeout 1

label appliance
    menu label appliance (kernel 6.6.63-ky)
    linux /vmlinuz-6.6.63-ky
    initrd /initrd.img-6.6.63-ky
    fdt /dtb/spacemit/x1_orangepi-rv2.dtb
    append root=LABEL=root-riscv64 console=ttyS0,115200 rw
"""


def test_extlinux_conf_exact(postinst: ModuleType) -> None:
    text = postinst.render(
        "6.6.63-ky", "LABEL=root-riscv64", ["console=ttyS0,115200", "rw"], postinst.DTB
    )
    assert text == EXPECTED


def test_extlinux_adds_the_console_and_drops_a_stray_root(postinst: ModuleType) -> None:
    text = postinst.render("6.6.1", "PARTUUID=abc", ["root=/dev/sda2", "quiet"], "x/b.dtb")
    assert text.splitlines()[-1] == "    append root=PARTUUID=abc console=ttyS0,115200 quiet"
    assert "    fdt /dtb/x/b.dtb" in text.splitlines()
    other = postinst.render("6.6.1", "LABEL=r", ["console=ttyS1,9600"], "x/b.dtb")
    assert other.splitlines()[-1] == "    append root=LABEL=r console=ttyS1,9600"


def test_the_postinst_uses_the_base_command_line(postinst: ModuleType) -> None:
    # The base's KernelCommandLine is what main() reads from mkosi's config.json.
    base = ini(IMAGE / "mkosi.conf")
    assert base["Content"]["KernelCommandLine"].split() == ["console=ttyS0,115200", "rw"]
    # IMAGE_VERSION is in the environment mkosi gives the script; not in this test's.
    expected = f"PARTLABEL=appliance_{os.environ.get('IMAGE_VERSION', '')}"
    assert expected == postinst.ROOT


def test_kernel_and_dtb_are_found_in_a_fake_image(postinst: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "usr/lib/modules/6.6.63-ky").mkdir(parents=True)
    (tmp_path / "usr/lib/modules/6.8.0-generic").mkdir(parents=True)  # no kernel in /boot
    (tmp_path / "boot").mkdir()
    (tmp_path / "boot/vmlinuz-6.6.63-ky").write_bytes(b"Image")
    assert postinst.kernel_version(tmp_path) == "6.6.63-ky"
    with pytest.raises(SystemExit, match=r"no spacemit/x1_orangepi-rv2\.dtb"):
        postinst.find_dtb(tmp_path, "6.6.63-ky")
    packaged = tmp_path / "usr/lib/linux-image-6.6.63-ky/spacemit/x1_orangepi-rv2.dtb"
    packaged.parent.mkdir(parents=True)
    packaged.write_bytes(b"dtb")
    assert postinst.find_dtb(tmp_path, "6.6.63-ky") == packaged
    # The loose DTB given as an input wins over the packaged one.
    loose = tmp_path / "boot/dtb/spacemit/x1_orangepi-rv2.dtb"
    loose.parent.mkdir(parents=True)
    loose.write_bytes(b"dtb")
    assert postinst.find_dtb(tmp_path, "6.6.63-ky") == loose
    (tmp_path / "boot/vmlinuz-6.8.0-generic").write_bytes(b"Image")
    with pytest.raises(SystemExit, match="exactly one kernel"):
        postinst.kernel_version(tmp_path)


def test_profile_ini() -> None:
    conf = ini(PROFILE / "mkosi.conf")
    assert conf["Distribution"]["Distribution"] == "ubuntu"
    assert conf["Distribution"]["Release"] == "noble"
    assert conf["Content"]["Bootable"] == "no"
    assert conf["Content"]["Bootloader"] == "none"
    assert conf["Content"]["UnifiedKernelImages"] == "no"
    packages = conf["Content"]["Packages"].split()
    assert "initramfs-tools" in packages and "linux-image-rv2-vendor" in packages
    # u-boot-menu would write its own extlinux.conf, guessing root= inside the build sandbox.
    assert "u-boot-menu" not in packages
    assert os.access(POSTINST, os.X_OK)
    assert POSTINST.read_text().startswith("#!/usr/bin/python3\n")


def test_the_esp_is_made_from_boot_and_root_is_labelled_with_its_version() -> None:
    esp = (IMAGE / "mkosi.repart/00-esp.conf").read_text()
    assert "CopyFiles=/boot:/" in esp.splitlines()
    root = ini(IMAGE / "mkosi.repart/10-root.conf")["Partition"]
    # root=PARTLABEL=appliance_<IMAGE_VERSION> (extlinux here, the UKI on trixie) names it so.
    assert root["Type"] == "root"
    assert root["Label"] == "appliance_%A"
    assert ini(IMAGE / "mkosi.conf")["Distribution"]["Architecture"] == "riscv64"


def test_the_build_passes_the_loose_dtb_where_the_postinst_looks(postinst: ModuleType) -> None:
    build = (REPO / "scripts/image-build.sh").read_text()
    target = f"/{postinst.DTB_DIRS[0]}/{postinst.DTB}"
    assert f'--extra-tree="$RV2_VENDOR_DIR/x1_orangepi-rv2.dtb:{target}"' in build


# mkosi arrives with the first `just image` (scripts/image-setup.sh): the host suite runs before it
# on a fresh machine, so .ci/run runs this test again after the image stage with
# APPLIANCE_REQUIRE_MKOSI=1, where a missing mkosi is a failure, not a skip.
@pytest.mark.skipif(
    not os.access(MKOSI, os.X_OK) and not os.environ.get("APPLIANCE_REQUIRE_MKOSI"),
    reason=f"no mkosi at {MKOSI} yet (scripts/image-setup.sh installs it)",
)
def test_mkosi_reads_the_profile() -> None:
    r = subprocess.run(
        [str(MKOSI), "-C", str(IMAGE), "--profile", "noble-rv2", "--json", "summary"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (config,) = [c for c in json.loads(r.stdout)["Images"] if c["Profiles"] == ["noble-rv2"]]
    assert (config["Distribution"], config["Release"]) == ("ubuntu", "noble")
    assert config["Bootable"] == "disabled"
    assert config["Bootloader"] == "none"
    assert config["UnifiedKernelImages"] == "disabled"
    assert config["KernelCommandLine"] == ["console=ttyS0,115200", "rw"]
    assert config["PostInstallationScripts"][-1] == str(POSTINST)
    assert {"python3-msgspec", "python3-onnxruntime", "linux-image-rv2-vendor"} <= set(
        config["Packages"]
    )


def test_configure_refuses_missing_inputs(tmp_path: Path) -> None:
    def configure(vendor: Path) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "RV2_VENDOR_DIR": str(vendor)}
        script = str(PROFILE / "mkosi.configure")
        return subprocess.run(
            ["sh", script], input="{}", capture_output=True, text=True, timeout=30, env=env
        )

    r = configure(tmp_path)
    assert r.returncode == 1
    for name in ("x1_orangepi-rv2.dtb", "python3-msgspec_*_riscv64.deb", "python3-onnxruntime_*"):
        assert name in r.stderr
    for name in (
        "linux-image-6.6.63-ky_1_riscv64.deb",
        "x1_orangepi-rv2.dtb",
        "python3-msgspec_0.19.0-2~noble1_riscv64.deb",
        "python3-onnxruntime_1.21.0-1~noble1_riscv64.deb",
    ):
        (tmp_path / name).touch()
    r = configure(tmp_path)
    assert (r.returncode, r.stdout) == (0, "{}")


def rebuild(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REBUILD), *args], capture_output=True, text=True, timeout=30)


def test_deb_rebuild_help() -> None:
    r = rebuild("--help")
    assert r.returncode == 0
    assert "Usage: scripts/deb-rebuild.sh SOURCE SUITE ARCH OUTDIR" in r.stdout
    assert "qemu-user" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("python-msgspec", "trixie", "sparc64", "{out}"), "architecture 'sparc64' not supported"),
        (("python-msgspec", "jammy", "amd64", "{out}"), "suite 'jammy' not supported"),
        (("Not/A/Name", "trixie", "amd64", "{out}"), "not a source package name"),
        (("python-msgspec", "trixie", "amd64"), "expected 4 arguments, got 3"),
        (("{out}.dsc", "noble", "riscv64", "{out}"), "no such .dsc"),
    ],
)
def test_deb_rebuild_refuses_bad_arguments(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    r = rebuild(*(a.format(out=out) for a in args))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "usage:" in r.stderr
    assert not out.exists()


def test_both_readmes_name_the_same_rebuild() -> None:
    command = "scripts/deb-rebuild.sh python-msgspec noble riscv64"
    for readme in (REPO / "README.md", PROFILE / "README.md"):
        text = readme.read_text()
        assert command in text, readme
        assert "PackageDirectories=" in text, readme

"""The root helper's install: its guards, and what the slot writer is handed.

systemd-sysupdate writes partitions of the disk the system runs from, which a test machine must not
do: here a stand-in script takes its place and records what it was asked and what it found in the
staging directory at that moment. `just image-test` runs the real one in QEMU.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from app.update import bundle, install
from app.update.install import Trading, UpdateRefused

PAPER = Trading(mode="paper", positions={"BTCUSDT": Decimal("0.010")}, open_orders=2)
LIVE_FLAT = Trading(mode="live", positions={"BTCUSDT": Decimal(0)}, open_orders=0)


def _bundle(tmp: Path, version: str = "0.1.0.351") -> tuple[Path, bytes]:
    (tmp / "root.img").write_bytes(os.urandom(4096) + bytes(100_000))
    (tmp / "uki.efi").write_bytes(b"MZ" + bytes(3000))
    public = bundle.generate_key(tmp / "k.pem")
    out = tmp / "n1.update"
    bundle.write_bundle(
        out,
        version=version,
        root_image=tmp / "root.img",
        uki=tmp / "uki.efi",
        private_key=tmp / "k.pem",
    )
    return out, public


def _sysupdate(tmp: Path, rc: int = 0) -> tuple[list[str], Path]:
    log = tmp / "sysupdate.log"
    script = tmp / "sysupdate"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "args: $*" >> {log}\n'
        f'ls "$STAGING" >> {log}\n'
        f"[ {rc} = 0 ] || echo 'Failed to find suitable empty partition' >&2\n"
        f"exit {rc}\n"
    )
    script.chmod(0o755)
    return [str(script)], log


@pytest.fixture(autouse=True)
def carried(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The machine id's carry mounts the new slot: recorded here instead (tested below)."""
    versions: list[str] = []

    def carry(version: str) -> str:
        versions.append(version)
        return f"carried to {version}"

    monkeypatch.setattr(install, "carry_machine_id", carry)
    return versions


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "staged"
    monkeypatch.setenv("STAGING", str(path))
    return path


def test_install_hands_the_staged_version_to_the_slot_writer(
    tmp_path: Path, staging: Path, carried: list[str]
) -> None:
    path, public = _bundle(tmp_path)
    sysupdate, log = _sysupdate(tmp_path)
    said: list[str] = []
    m = install.install(
        path,
        public,
        trading=PAPER,
        running="0.1.0.350",
        staging=staging,
        sysupdate=sysupdate,
        say=said.append,
    )
    assert m.version == "0.1.0.351"
    assert log.read_text().splitlines() == [
        "args: update 0.1.0.351",
        "appliance_0.1.0.351.efi",
        "appliance_0.1.0.351.root.raw",
    ]
    assert list(staging.iterdir()) == []  # removed once written
    assert carried == ["0.1.0.351"] and said[-2] == "carried to 0.1.0.351"
    assert said[-1].startswith("version 0.1.0.351 installed in ")
    assert said[-1].endswith(" s; it starts at the next reboot")


def test_live_positions_or_orders_refuse_before_anything_is_read(
    tmp_path: Path, staging: Path
) -> None:
    path, public = _bundle(tmp_path)
    sysupdate, log = _sysupdate(tmp_path)
    busy = Trading(
        mode="live", positions={"ETHUSDT": Decimal("-1.5"), "BTCUSDT": Decimal(0)}, open_orders=3
    )
    with pytest.raises(UpdateRefused) as info:
        install.install(
            path, public, trading=busy, running="0.1.0.350", staging=staging, sysupdate=sysupdate
        )
    assert str(info.value) == (
        "refused: live trading has open positions in ETHUSDT, 3 open orders; flatten first "
        '(tick "flatten first" on the update form, or leave live and flatten on the Mode page), '
        "then update"
    )
    assert install.has_open_live(busy)
    assert not staging.exists() and not log.exists()
    orders_only = Trading(mode="live", positions={}, open_orders=1)
    with pytest.raises(UpdateRefused, match="live trading has 1 open orders; flatten first"):
        install.check_trading(orders_only)
    with pytest.raises(UpdateRefused, match="the engine does not answer"):
        install.check_trading(None)
    install.check_trading(LIVE_FLAT)  # flat and no orders: allowed
    assert install.has_open_live(orders_only)
    assert not install.has_open_live(LIVE_FLAT) and not install.has_open_live(None)
    assert not install.has_open_live(PAPER)  # paper: nothing real is open


@pytest.mark.parametrize(
    ("running", "allow", "expect"),
    [
        ("0.1.0.351", False, "refused: version 0.1.0.351 is the one running"),
        ("0.1.0.352", False, "refused: version 0.1.0.351 is older than the running 0.1.0.352"),
    ],
)
def test_the_running_or_an_older_version_is_refused(
    tmp_path: Path, staging: Path, running: str, allow: bool, expect: str
) -> None:
    path, public = _bundle(tmp_path)
    sysupdate, log = _sysupdate(tmp_path)
    with pytest.raises(UpdateRefused) as info:
        install.install(
            path,
            public,
            trading=PAPER,
            running=running,
            staging=staging,
            sysupdate=sysupdate,
            allow_downgrade=allow,
        )
    assert str(info.value).startswith(expect)
    assert list(staging.iterdir()) == [] and not log.exists()


def test_a_downgrade_goes_ahead_when_asked(tmp_path: Path, staging: Path) -> None:
    path, public = _bundle(tmp_path)
    sysupdate, log = _sysupdate(tmp_path)
    install.install(
        path,
        public,
        trading=PAPER,
        running="0.1.0.352",
        staging=staging,
        sysupdate=sysupdate,
        allow_downgrade=True,
        say=lambda _: None,
    )
    assert log.read_text().startswith("args: update 0.1.0.351\n")


def test_a_slot_writer_failure_is_reported_and_the_staging_emptied(
    tmp_path: Path, staging: Path
) -> None:
    path, public = _bundle(tmp_path)
    sysupdate, _ = _sysupdate(tmp_path, rc=1)
    with pytest.raises(UpdateRefused) as info:
        install.install(
            path,
            public,
            trading=PAPER,
            running="0.1.0.350",
            staging=staging,
            sysupdate=sysupdate,
            say=lambda _: None,
        )
    assert str(info.value) == (
        "the slot writer failed (systemd-sysupdate exit 1): Failed to find suitable empty partition"
    )
    assert list(staging.iterdir()) == []


def test_versions_order_as_numbers() -> None:
    ordered = ["0.1.0.99", "0.1.0.100", "0.1.0.100.1", "0.1.0.100.2", "0.1.1.1", "1.0"]
    assert sorted(reversed(ordered), key=install.version_key) == ordered


def test_the_running_version_is_read_from_os_release(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text(
        'ID=debian\nIMAGE_ID="appliance"\nIMAGE_VERSION="0.1.0.350"\n'
    )
    assert install.running_version(tmp_path / "os-release") == "0.1.0.350"
    (tmp_path / "bare").write_text("ID=debian\n")
    assert install.running_version(tmp_path / "bare") == ""
    assert install.running_version(tmp_path / "missing") == ""


def test_a_system_without_the_slot_writer_says_so(tmp_path: Path, staging: Path) -> None:
    path, public = _bundle(tmp_path)
    with pytest.raises(UpdateRefused, match="the slot writer is missing"):
        install.install(
            path,
            public,
            trading=PAPER,
            running="0.1.0.350",
            staging=staging,
            sysupdate=[str(tmp_path / "no-such-program")],
            say=lambda _: None,
        )
    assert list(staging.iterdir()) == []


MID = "0123456789abcdef0123456789abcdef"
# The real one (the autouse fixture above stands in for it in the install tests).
carry_machine_id = install.carry_machine_id


def _mounter(tmp: Path, fail: str = "") -> tuple[list[list[str]], Callable[[Sequence[str]], None]]:
    """A stand-in for udevadm/mount/umount: "mounting" makes the slot's /etc in the mount point."""
    calls: list[list[str]] = []

    def run(cmd: Sequence[str]) -> None:
        calls.append(list(cmd))
        if cmd[0] == fail:
            raise subprocess.CalledProcessError(32, cmd, stderr=f"{fail}: no such device")
        if cmd[0] == "mount":
            (Path(cmd[-1]) / "etc").mkdir()
            (Path(cmd[-1]) / "etc" / "machine-id").write_text("uninitialized\n")
            (tmp / "seen").write_text(cmd[-1])
        if cmd[0] == "umount":
            # What the slot holds when it is unmounted.
            (tmp / "slot-machine-id").write_text((Path(cmd[-1]) / "etc/machine-id").read_text())
            (tmp / "slot-mode").write_text(oct((Path(cmd[-1]) / "etc/machine-id").stat().st_mode))

    return calls, run


def test_carry_machine_id_writes_this_machines_id_into_the_new_slot(tmp_path: Path) -> None:
    (tmp_path / "machine-id").write_text(MID + "\n")
    calls, run = _mounter(tmp_path)
    said = carry_machine_id("0.1.0.351", tmp_path / "machine-id", tmp_path / "by-partlabel", run)
    assert said == "machine id 01234567… kept for version 0.1.0.351"
    mnt = (tmp_path / "seen").read_text()
    assert calls == [
        ["udevadm", "settle", "--timeout=30"],
        [
            "mount",
            "-t",
            "ext4",
            "-o",
            "nosuid,nodev,noexec",
            str(tmp_path / "by-partlabel" / "appliance_0.1.0.351"),
            mnt,
        ],
        ["umount", mnt],
    ]
    assert (tmp_path / "slot-machine-id").read_text() == MID + "\n"
    assert (tmp_path / "slot-mode").read_text() == "0o100444"
    assert not Path(mnt).exists()


@pytest.mark.parametrize("content", ["", "uninitialized\n", "not-hex-" * 4 + "\n"])
def test_carry_machine_id_without_an_id_leaves_the_slot_alone(tmp_path: Path, content: str) -> None:
    (tmp_path / "machine-id").write_text(content)
    calls, run = _mounter(tmp_path)
    said = carry_machine_id("0.1.0.351", tmp_path / "machine-id", tmp_path, run)
    assert said == "no machine id to keep: the new version makes its own" and calls == []


@pytest.mark.parametrize("fail", ["udevadm", "mount"])
def test_carry_machine_id_that_fails_says_so_and_does_not_fail_the_install(
    tmp_path: Path, fail: str
) -> None:
    (tmp_path / "machine-id").write_text(MID)
    calls, run = _mounter(tmp_path, fail=fail)
    said = carry_machine_id("0.1.0.351", tmp_path / "machine-id", tmp_path, run)
    assert said == (
        f"machine id not kept (the new version makes a new one): {fail}: no such device"
    )
    # A failed mount is not unmounted.
    assert [c[0] for c in calls] == ["udevadm", "mount"][: 1 + (fail == "mount")]

"""Install a bundle into the other system slot: the root helper (`appliance update install`).

Order, each step refusing with its reason and leaving the running system as it was:

1. the guard: no update while the engine trades live with a position or an order open (paper
   trading needs no guard: nothing real is at stake across a reboot);
2. the version: never the running one, never an older one unless the owner asks;
3. :func:`app.update.stage.stage`: the signature and every checksum, then the payloads unpacked
   and checked against the manifest;
4. ``systemd-sysupdate update VERSION`` writes the system image into the slot labelled
   ``_empty`` (or the older of the two) and the UKI into the ESP (``/usr/lib/sysupdate.d``);
5. the staged files are removed, and this machine's id is written into the new slot (a new
   root would otherwise come up with a new one: a new journal directory, a new DHCP client id);
   the new version boots at the next reboot (systemd-boot starts the newest entry), which the
   caller asks for.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.update import stage
from app.update.bundle import BundleError, Manifest

OS_RELEASE = Path("/etc/os-release")
# On the running system slot, root's alone: not on the data partition, whose top directory is the
# engine user's (a file staged there could be swapped between the check and the write).
STAGING = Path("/var/lib/appliance-update/staged")


# Not on PATH: Debian ships it in systemd-container, under /usr/lib/systemd.
SYSUPDATE = ("/usr/lib/systemd/systemd-sysupdate",)
MACHINE_ID = Path("/etc/machine-id")
BY_PARTLABEL = Path("/dev/disk/by-partlabel")


class UpdateRefused(BundleError):
    """An update that is not installed now: the trading state, its version or the slot writer."""


@dataclass(frozen=True, slots=True)
class Trading:
    """What the guard needs from the engine's ``status``."""

    mode: str
    positions: dict[str, Decimal]
    open_orders: int | None


def running_version(os_release: Path = OS_RELEASE) -> str:
    """IMAGE_VERSION from os-release; "" when there is none (not an appliance image)."""
    try:
        text = os_release.read_text()
    except FileNotFoundError:
        return ""
    for line in text.splitlines():
        if line.startswith("IMAGE_VERSION="):
            return line.split("=", 1)[1].strip().strip("\"'")
    return ""


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order versions as systemd does for these (digits as numbers, the rest as text)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.findall(r"\d+|[A-Za-z]+", version)
    )


def has_open_live(trading: Trading | None) -> bool:
    """Live trading with a position or an order open (what an update must not cut across)."""
    if trading is None or trading.mode != "live":
        return False
    return any(trading.positions.values()) or bool(trading.open_orders)


def check_trading(trading: Trading | None) -> None:
    if trading is None:
        raise UpdateRefused(
            "refused: the engine does not answer, so open live positions cannot be ruled out; "
            "start it (or stop trading on the exchange) and try again"
        )
    if trading.mode != "live":
        return
    open_positions = sorted(s for s, q in trading.positions.items() if q)
    if open_positions or trading.open_orders:
        raise UpdateRefused(
            "refused: live trading has "
            + ", ".join(
                filter(
                    None,
                    [
                        f"open positions in {', '.join(open_positions)}" if open_positions else "",
                        f"{trading.open_orders} open orders" if trading.open_orders else "",
                    ],
                )
            )
            + '; flatten first (tick "flatten first" on the update form, or leave live and '
            "flatten on the Mode page), then update"
        )


def check_version(new: str, running: str, allow_downgrade: bool) -> None:
    if new == running:
        raise UpdateRefused(f"refused: version {new} is the one running")
    if running and version_key(new) < version_key(running) and not allow_downgrade:
        raise UpdateRefused(
            f"refused: version {new} is older than the running {running} (allow a downgrade "
            "explicitly to install it)"
        )


def engine_trading(socket_path: Path) -> Trading | None:
    """The engine's mode, positions and open orders over the control socket; None if silent."""
    from app import contract
    from app import ctl as ctl_mod

    client = ctl_mod.EngineClient(socket_path, actor="update")
    reply = asyncio.run(client.call(contract.STATUS, contract.NoArgs()))
    if not reply.ok or reply.result is None:
        return None
    return trading_of(reply.result)


def trading_of(status: Any) -> Trading:
    """The guard's view of an engine ``status`` result."""
    return Trading(status.mode, dict(status.positions), status.open_orders)


def install(
    path: Path,
    trusted_pem: bytes,
    *,
    trading: Trading | None,
    running: str,
    staging: Path = STAGING,
    sysupdate: Sequence[str] = SYSUPDATE,
    allow_downgrade: bool = False,
    say: Callable[[str], None] = print,
    carry: Callable[[str], str] | None = None,
) -> Manifest:
    """``carry(version)`` (default :func:`carry_machine_id`) runs once the slot is written; what
    it returns is said."""
    check_trading(trading)
    started = time.monotonic()
    say("checking the signature and checksums, then unpacking")
    manifest = stage.stage(path, trusted_pem, staging)
    say(f"checked and unpacked in {time.monotonic() - started:.0f} s")
    names = stage.staged_names(manifest.version)
    try:
        check_version(manifest.version, running, allow_downgrade)
        say(f"writing version {manifest.version} into the other system slot")
        try:
            done = subprocess.run(
                [*sysupdate, "update", manifest.version],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            raise UpdateRefused(
                f"the slot writer is missing ({sysupdate[0]}): this system cannot install updates"
            ) from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise UpdateRefused(
                f"the slot writer failed (systemd-sysupdate exit {done.returncode}): "
                + " / ".join(detail)
            )
    finally:
        for name in names:
            (staging / name).unlink(missing_ok=True)
    say((carry or carry_machine_id)(manifest.version))
    say(
        f"version {manifest.version} installed in {time.monotonic() - started:.0f} s; "
        "it starts at the next reboot"
    )
    return manifest


def carry_machine_id(
    version: str,
    machine_id: Path = MACHINE_ID,
    by_partlabel: Path = BY_PARTLABEL,
    run: Callable[[Sequence[str]], None] | None = None,
) -> str:
    """Write this machine's id into the slot just written for ``version``, so that the new root
    is the same machine. Never fails the install: the worst case is a new id, which is said."""
    run = run or _run
    mid = machine_id.read_text(errors="replace").strip() if machine_id.exists() else ""
    if not re.fullmatch(r"[0-9a-f]{32}", mid):
        return "no machine id to keep: the new version makes its own"
    device = by_partlabel / f"appliance_{version}"
    try:
        # The slot's new label reaches /dev/disk/by-partlabel through udev.
        run(["udevadm", "settle", "--timeout=30"])
        with tempfile.TemporaryDirectory(prefix="appliance-slot.") as mnt:
            run(["mount", "-t", "ext4", "-o", "nosuid,nodev,noexec", str(device), mnt])
            try:
                target = Path(mnt) / "etc" / "machine-id"
                tmp = target.with_name(".machine-id.new")
                tmp.write_text(mid + "\n")
                tmp.chmod(0o444)
                os.replace(tmp, target)
            finally:
                run(["umount", mnt])
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        return f"machine id not kept (the new version makes a new one): {str(detail).strip()}"
    return f"machine id {mid[:8]}… kept for version {version}"


def _run(cmd: Sequence[str]) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True, text=True)

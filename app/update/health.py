"""The health gate: a new system version is kept only once the appliance works on it.

``appliance-update-health.service`` runs ``appliance update health`` at every boot, before
``boot-complete.target``. It waits (up to a timeout) until every probe passes:

- engine: ``appliance-engine.service`` is active (``Type=notify``: it said READY=1 after loading
  its model, whose golden vectors ``app.engine.inference.load_model`` reproduced, and its feeds);
- control: the engine answers ``status`` on its control socket;
- model: that status names the active model the engine trades;
- panel: the panel answers HTTP on its port.

All pass: the gate exits 0 and ``boot-complete.target`` is reached; a boot entry on trial
(``appliance_V+3.efi``, as systemd-sysupdate installs it) is marked good (``appliance_V.efi``).
One still fails at the timeout: the gate adds why to :data:`RECORD` (the panel shows it), and if
this version's entry is on trial marks it bad (``appliance_V+0-1.efi``) and reboots; systemd-boot
then starts the newest good entry, the previous version. A version that was blessed before is
never rolled back by the gate: it records the failure and stays.

On firmware that renames files on the ESP (EDK2), systemd-boot counts each try itself and
``systemd-bless-boot`` marks the entry good after ``boot-complete.target``; the gate leaves the
good mark to it and uses ``systemd-bless-boot bad``. U-Boot's EFI (the board's, and CI's) refuses
the rename, so systemd-boot's count never goes down there and the gate settles the entry itself:
a version that hangs before the gate runs is not rolled back by itself on U-Boot (the kernel's
panic=10 reboots it into the same entry); the owner rolls it back from the boot menu.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.update import jsonfile

# The panel's state directory (data partition): what it shows after a rollback.
RECORD = Path("/var/lib/appliance-panel/update-health.json")


@dataclass(frozen=True, slots=True)
class Probe:
    name: str
    ok: bool
    detail: str


def _run(cmd: Sequence[str]) -> str:
    done = subprocess.run(list(cmd), capture_output=True, text=True, check=False, timeout=30)
    return (done.stdout or done.stderr).strip()


def unit_state(show_output: str) -> dict[str, str]:
    """``systemctl show -p A -p B`` as a dict: it prints the properties in its own order."""
    return dict(line.split("=", 1) for line in show_output.splitlines() if "=" in line)


def probe_engine(unit: str = "appliance-engine.service") -> Probe:
    props = unit_state(
        _run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "NRestarts", unit])
    )
    active, sub = props.get("ActiveState", "?"), props.get("SubState", "?")
    ok = active == "active" and sub == "running"
    restarts = props.get("NRestarts", "?")
    return Probe("engine", ok, f"{unit} {active} ({sub}), restarted {restarts} times")


def probe_control_and_model(socket_path: Path) -> list[Probe]:
    from app import contract
    from app import ctl as ctl_mod

    reply = asyncio.run(ctl_mod.EngineClient(socket_path, actor="health").call(contract.STATUS))
    if not reply.ok or reply.result is None:
        return [
            Probe("control", False, f"no answer to status: {reply.error}"),
            Probe("model", False, "unknown: the engine does not answer"),
        ]
    status = reply.result
    model = status.trader.model
    return [
        Probe("control", True, f"status answers: {status.mode}, {status.state}"),
        Probe(
            "model",
            model is not None,
            f"trading {model.model_version} ({model.sha256[:12]})" if model else "no active model",
        ),
    ]


def probe_panel(url: str) -> Probe:
    import httpx

    try:
        r = httpx.get(url, timeout=10.0, follow_redirects=False)
    except httpx.HTTPError as exc:
        return Probe("panel", False, f"{url}: {exc!r}")
    return Probe("panel", r.status_code < 500, f"{url}: HTTP {r.status_code}")


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    waited_s: float
    probes: list[Probe]

    def failed(self) -> list[Probe]:
        return [p for p in self.probes if not p.ok]


def wait_healthy(
    probes: Callable[[], list[Probe]],
    timeout_s: float,
    interval_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    start = clock()
    while True:
        result = probes()
        waited = clock() - start
        if all(p.ok for p in result):
            return Outcome(True, waited, result)
        if waited >= timeout_s:
            return Outcome(False, waited, result)
        sleep(interval_s)


HISTORY = 20  # verdicts kept in the record, newest first


def record(path: Path, version: str, outcome: Outcome, action: str, ts_ms: int) -> None:
    """Add the gate's verdict to the record the panel reads (newest first, a few kept: a rollback's
    reason must survive the previous version's own healthy boot after it). Written safely in a
    directory root does not own: a new file, never through a link left there, renamed over."""
    verdict = {
        "version": version,
        "ok": outcome.ok,
        "waited_s": round(outcome.waited_s, 1),
        "probes": [asdict(p) for p in outcome.probes],
        "action": action,
        "ts_ms": ts_ms,
    }
    prepend(path, verdict)


def prepend(path: Path, verdict: dict[str, Any]) -> None:
    jsonfile.write(path, [verdict, *read_record(path)][:HISTORY])


def read_record(path: Path = RECORD) -> list[dict[str, Any]]:
    """The verdicts, newest first; none if the record is missing or unreadable."""
    doc = jsonfile.read(path)
    return [v for v in doc if isinstance(v, dict)] if isinstance(doc, list) else []


# --- the boot entry on trial ------------------------------------------------------------------

_LOADER = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"
EFIVARS = Path("/sys/firmware/efi/efivars")
COUNTED = re.compile(r"(?P<base>.+?)\+(?P<left>\d+)(?:-(?P<done>\d+))?\.efi")


@dataclass(frozen=True, slots=True)
class Entry:
    """This version's boot entry (its UKI on the ESP) and its boot-assessment counter."""

    path: Path
    left: int | None  # tries left; None: not counted (known good)
    done: int

    @property
    def on_trial(self) -> bool:
        return self.left is not None


def boot_entry(esp: Path, version: str) -> Entry | None:
    for path in sorted((esp / "EFI" / "Linux").glob(f"appliance_{version}*.efi")):
        if path.name == f"appliance_{version}.efi":
            return Entry(path, None, 0)
        m = COUNTED.fullmatch(path.name)
        if m and m["base"] == f"appliance_{version}":
            return Entry(path, int(m["left"]), int(m["done"] or 0))
    return None


def loader_counts(efivars: Path = EFIVARS) -> bool:
    """Did systemd-boot count this boot itself (and so systemd-bless-boot will settle it)?

    It does on firmware that can rename files on the ESP (EDK2). U-Boot's EFI refuses the rename;
    systemd-boot then leaves the name as it was and sets no LoaderBootCountPath, and the gate
    settles the entry itself."""
    return (efivars / f"LoaderBootCountPath-{_LOADER}").exists()


def settle(entry: Entry, good: bool) -> Path:
    """Good: the counter goes from the name. Bad: no tries left, so systemd-boot passes it over
    for the previous version's entry."""
    base = COUNTED.fullmatch(entry.path.name)
    if base is None:
        return entry.path
    name = f"{base['base']}.efi" if good else f"{base['base']}+0-{entry.done}.efi"
    target = entry.path.with_name(name)
    entry.path.rename(target)
    return target

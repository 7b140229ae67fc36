"""Going back to the previous version by the owner's choice (the panel's "Go back" button).

The previous version is the newest older one whose boot entry is on the ESP and not marked bad,
and whose system slot is still labelled with its version (an install since may have overwritten
it). Root works this out itself at every boot (the health gate writes it to the panel's
directory, where the System page offers it) and again when asked: the panel's word is never
taken for it. Going back marks the running version's entry bad (no tries left), the same mark
the health gate gives a version that fails; systemd-boot then passes over it for the previous
one at the next boot. The version stays in its slot until an update overwrites it; to use it
again, install its bundle again.
"""

from __future__ import annotations

from pathlib import Path

from app.update import health, install, jsonfile

SLOTS = "update-slots.json"  # in the panel's directory: {"running": ..., "previous": ...}


def previous_version(esp: Path, running: str, by_partlabel: Path) -> str | None:
    found: list[str] = []
    for path in (esp / "EFI" / "Linux").glob("appliance_*.efi"):
        m = health.COUNTED.fullmatch(path.name)
        base = m["base"] if m else path.name.removesuffix(".efi")
        version = base.removeprefix("appliance_")
        if m is not None and int(m["left"]) == 0:
            continue  # marked bad
        # Older only: a newer one installed but not yet booted is the next version, not a way back.
        if install.version_key(version) >= install.version_key(running):
            continue
        if (by_partlabel / base).exists():
            found.append(version)
    return max(found, key=install.version_key, default=None)


def write_slots(panel_dir: Path, running: str, previous: str | None) -> None:
    jsonfile.write(panel_dir / SLOTS, {"running": running, "previous": previous})


def read_previous(panel_dir: Path, running: str) -> str | None:
    """What root found at this boot; None if it was written for another version."""
    doc = jsonfile.read(panel_dir / SLOTS)
    if not isinstance(doc, dict) or doc.get("running") != running:
        return None
    previous = doc.get("previous")
    return previous if isinstance(previous, str) and previous else None


def go_back(esp: Path, running: str, to: str, by_partlabel: Path) -> Path:
    """Mark the running version's entry bad, so that the next boot starts ``to``; the entry's
    new path. Refused unless ``to`` is the previous version as root sees it now."""
    previous = previous_version(esp, running, by_partlabel)
    if previous is None or previous != to:
        raise install.UpdateRefused(
            f"refused: version {to} is not the previous version on this appliance "
            f"({previous or 'there is none'})"
        )
    entry = health.boot_entry(esp, running)
    if entry is None:
        raise install.UpdateRefused(f"refused: no boot entry for the running version {running}")
    target = entry.path.with_name(f"appliance_{running}+0-{entry.done}.efi")
    entry.path.rename(target)
    return target


def record_go_back(record: Path, running: str, to: str, actor: str, ts_ms: int) -> None:
    """The owner's choice, in the record the System page lists beside the health gate's."""
    health.prepend(
        record,
        {
            "version": running,
            "ok": True,
            "waited_s": 0.0,
            "probes": [],
            "action": "went back",
            "to": to,
            "actor": actor,
            "ts_ms": ts_ms,
        },
    )

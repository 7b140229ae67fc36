"""Going back to the previous version by the owner's choice: which version that is (root's view
of the ESP and the slots), the mark that makes the next boot start it, and the request's path
from the panel's spool through root's serve."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from app.update import install, request, rollback
from app.update.bundle import BundleError


def _disk(tmp: Path, entries: list[str], slots: list[str]) -> tuple[Path, Path]:
    """An ESP with these UKIs and a /dev/disk/by-partlabel with these slot labels."""
    esp, labels = tmp / "esp", tmp / "by-partlabel"
    (esp / "EFI" / "Linux").mkdir(parents=True)
    labels.mkdir()
    for name in entries:
        (esp / "EFI" / "Linux" / name).write_bytes(b"MZ")
    for label in slots:
        (labels / label).symlink_to("/dev/null")
    return esp, labels


@pytest.mark.parametrize(
    ("entries", "slots", "previous"),
    [
        # After an update: N's entry good, its slot still labelled.
        (
            ["appliance_1.0.9.efi", "appliance_1.0.10.efi"],
            ["appliance_1.0.9", "appliance_1.0.10"],
            "1.0.9",
        ),
        # First boot: nothing else.
        (["appliance_1.0.10.efi"], ["appliance_1.0.10", "_empty"], None),
        # The other entry was marked bad (rolled back from, or left by the owner).
        (
            ["appliance_1.0.9+0-1.efi", "appliance_1.0.10.efi"],
            ["appliance_1.0.9", "appliance_1.0.10"],
            None,
        ),
        # Its slot was overwritten since: the entry alone cannot boot.
        (
            ["appliance_1.0.9.efi", "appliance_1.0.10.efi"],
            ["appliance_1.0.11", "appliance_1.0.10"],
            None,
        ),
        # A newer version installed but not yet booted is the next one, not a way back.
        (
            ["appliance_1.0.11+3-0.efi", "appliance_1.0.10.efi"],
            ["appliance_1.0.11", "appliance_1.0.10"],
            None,
        ),
        # Versions compare as numbers (1.0.9 < 1.0.10), and an entry with tries left counts.
        (
            ["appliance_1.0.8.efi", "appliance_1.0.9+2-1.efi", "appliance_1.0.10.efi"],
            ["appliance_1.0.8", "appliance_1.0.9", "appliance_1.0.10"],
            "1.0.9",
        ),
    ],
)
def test_the_previous_version_is_the_newest_older_bootable_one(
    tmp_path: Path, entries: list[str], slots: list[str], previous: str | None
) -> None:
    esp, labels = _disk(tmp_path, entries, slots)
    assert rollback.previous_version(esp, "1.0.10", labels) == previous


def test_going_back_marks_the_running_entry_bad(tmp_path: Path) -> None:
    esp, labels = _disk(
        tmp_path,
        ["appliance_1.0.9.efi", "appliance_1.0.10.efi"],
        ["appliance_1.0.9", "appliance_1.0.10"],
    )
    target = rollback.go_back(esp, "1.0.10", "1.0.9", labels)
    assert target.name == "appliance_1.0.10+0-0.efi"
    assert sorted(p.name for p in (esp / "EFI" / "Linux").iterdir()) == [
        "appliance_1.0.10+0-0.efi",
        "appliance_1.0.9.efi",
    ]
    # Nothing to go back to now from 1.0.9's point of view, and 1.0.10 is not offered again.
    assert rollback.previous_version(esp, "1.0.9", labels) is None


@pytest.mark.parametrize("to", ["1.0.8", "1.0.11", ""])
def test_going_back_anywhere_but_the_previous_version_is_refused(tmp_path: Path, to: str) -> None:
    esp, labels = _disk(
        tmp_path,
        ["appliance_1.0.9.efi", "appliance_1.0.10.efi"],
        ["appliance_1.0.9", "appliance_1.0.10"],
    )
    with pytest.raises(install.UpdateRefused, match=f"version {to} is not the previous version"):
        rollback.go_back(esp, "1.0.10", to, labels)
    assert (esp / "EFI" / "Linux" / "appliance_1.0.10.efi").exists()  # untouched


def test_the_slots_file_is_for_one_running_version(tmp_path: Path) -> None:
    rollback.write_slots(tmp_path, "1.0.10", "1.0.9")
    assert rollback.read_previous(tmp_path, "1.0.10") == "1.0.9"
    assert rollback.read_previous(tmp_path, "1.0.9") is None  # written by another boot
    rollback.write_slots(tmp_path, "1.0.10", None)
    assert rollback.read_previous(tmp_path, "1.0.10") is None
    (tmp_path / rollback.SLOTS).write_text("not json")
    assert rollback.read_previous(tmp_path, "1.0.10") is None


def test_a_go_back_request_goes_through_serve_and_reboots(tmp_path: Path) -> None:
    spool = tmp_path / "update"
    spool.mkdir()
    request.write_request(
        spool,
        request.Request("1.0.9", reboot=True, actor="panel:admin", ts_ms=1, action="go back"),
    )
    asked: list[str] = []
    rebooted: list[bool] = []

    def install_fn(path: Path, say: object) -> str:
        raise AssertionError("a go-back request must not install anything")

    def go_back_fn(req: request.Request, say: Callable[[str], None]) -> None:
        asked.append(req.version)
        say("entry marked bad")

    state = request.serve(spool, install_fn, lambda: rebooted.append(True), go_back_fn)
    assert (state, asked, rebooted) == ("rebooting", ["1.0.9"], [True])
    status = json.loads((spool / request.STATUS).read_text())
    assert status["state"] == "rebooting" and status["lines"] == [
        "going back to version 1.0.9, asked for by panel:admin",
        "entry marked bad",
        "rebooting into version 1.0.9",
    ]


def test_a_refused_go_back_does_not_reboot(tmp_path: Path) -> None:
    spool = tmp_path / "update"
    spool.mkdir()
    request.write_request(
        spool, request.Request("1.0.9", reboot=True, actor="", ts_ms=1, action="go back")
    )

    def go_back_fn(req: request.Request, say: object) -> None:
        raise install.UpdateRefused("refused: live trading has 1 open orders")

    rebooted: list[bool] = []
    state = request.serve(spool, lambda p, s: "", lambda: rebooted.append(True), go_back_fn)
    assert state == "refused" and rebooted == []
    assert json.loads((spool / request.STATUS).read_text())["lines"][-1] == (
        "refused: live trading has 1 open orders"
    )


def test_an_unknown_action_is_refused(tmp_path: Path) -> None:
    (tmp_path / request.REQUEST).write_text(
        json.dumps({"version": "1.0.9", "reboot": True, "ts_ms": 1, "action": "format disk"})
    )
    with pytest.raises(BundleError, match="asks for 'format disk'"):
        request.take_request(tmp_path)


def test_the_owners_choice_is_recorded_beside_the_gates_verdicts(tmp_path: Path) -> None:
    record = tmp_path / "update-health.json"
    record.write_text(json.dumps([{"version": "1.0.10", "ok": True, "action": "kept"}]))
    rollback.record_go_back(record, "1.0.10", "1.0.9", "panel:admin@10.0.0.2", 5)
    first, second = json.loads(record.read_text())
    assert first == {
        "version": "1.0.10",
        "ok": True,
        "waited_s": 0.0,
        "probes": [],
        "action": "went back",
        "to": "1.0.9",
        "actor": "panel:admin@10.0.0.2",
        "ts_ms": 5,
    }
    assert second["action"] == "kept"

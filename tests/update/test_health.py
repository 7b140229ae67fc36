"""The health gate's waiting, its verdict file, and its probes against a real engine process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.update import health
from app.update.health import Outcome, Probe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_the_gate_passes_as_soon_as_every_probe_does() -> None:
    clock = Clock()
    rounds = iter(
        [
            [Probe("engine", False, "activating (start)"), Probe("panel", True, "HTTP 303")],
            [Probe("engine", False, "activating (start)"), Probe("panel", True, "HTTP 303")],
            [Probe("engine", True, "active (running)"), Probe("panel", True, "HTTP 303")],
        ]
    )
    out = health.wait_healthy(lambda: next(rounds), 60, 5, clock, clock.sleep)
    assert out.ok and out.waited_s == 10 and out.failed() == []


def test_the_gate_fails_at_its_timeout_naming_what_failed() -> None:
    clock = Clock()
    calls = []

    def probes() -> list[Probe]:
        calls.append(clock.now)
        return [Probe("engine", False, "activating (start)"), Probe("panel", True, "HTTP 200")]

    out = health.wait_healthy(probes, 30, 5, clock, clock.sleep)
    assert not out.ok and out.waited_s == 30
    assert calls == [0, 5, 10, 15, 20, 25, 30]  # probed until the timeout, not beyond
    assert [p.name for p in out.failed()] == ["engine"]


def test_verdicts_are_kept_newest_first_for_the_panel(tmp_path: Path) -> None:
    failed = Outcome(
        False, 300.4, [Probe("engine", False, "activating (start), restarted 2 times")]
    )
    path = tmp_path / "update-health.json"
    health.record(path, "0.1.0.110.2", failed, "rolled back", 1_700_000_000_000)
    # The previous version boots again and passes: the rollback's reason stays in the record.
    health.record(path, "0.1.0.110.1", Outcome(True, 41.0, []), "kept", 1_700_000_400_000)
    assert health.read_record(path) == [
        {
            "version": "0.1.0.110.1",
            "ok": True,
            "waited_s": 41.0,
            "probes": [],
            "action": "kept",
            "ts_ms": 1_700_000_400_000,
        },
        {
            "version": "0.1.0.110.2",
            "ok": False,
            "waited_s": 300.4,
            "probes": [
                {"name": "engine", "ok": False, "detail": "activating (start), restarted 2 times"}
            ],
            "action": "rolled back",
            "ts_ms": 1_700_000_000_000,
        },
    ]
    assert path.stat().st_mode & 0o777 == 0o644
    assert list(tmp_path.iterdir()) == [path]
    for i in range(health.HISTORY + 5):
        health.record(path, f"9.{i}", Outcome(True, 1.0, []), "kept", i)
    kept = health.read_record(path)
    assert len(kept) == health.HISTORY and kept[0]["version"] == f"9.{health.HISTORY + 4}"


def test_the_verdict_never_writes_through_a_link(tmp_path: Path) -> None:
    """The directory is the panel user's: a link left at the file's name is replaced, not
    followed, so root never writes where that user points it."""
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    path = tmp_path / "update-health.json"
    path.symlink_to(target)
    health.record(path, "1", Outcome(True, 1.0, []), "kept", 1)
    assert target.read_text() == "precious\n"
    assert not path.is_symlink() and json.loads(path.read_text())[0]["action"] == "kept"
    # A link at the temporary name is refused outright.
    os.symlink(target, tmp_path / f".update-health.json.{os.getpid()}")
    with pytest.raises(OSError):
        health.record(path, "2", Outcome(True, 1.0, []), "kept", 2)
    assert target.read_text() == "precious\n"


def test_a_missing_or_broken_record_reads_as_empty(tmp_path: Path) -> None:
    assert health.read_record(tmp_path / "none.json") == []
    (tmp_path / "bad.json").write_text("{not json")
    assert health.read_record(tmp_path / "bad.json") == []
    (tmp_path / "dict.json").write_text('{"version": "1"}')
    assert health.read_record(tmp_path / "dict.json") == []


def _esp(tmp: Path, *names: str) -> Path:
    (tmp / "EFI" / "Linux").mkdir(parents=True)
    for n in names:
        (tmp / "EFI" / "Linux" / n).write_bytes(b"MZ")
    return tmp


def test_a_new_versions_entry_is_on_trial_and_settled_either_way(tmp_path: Path) -> None:
    esp = _esp(tmp_path, "appliance_0.1.0.110.efi", "appliance_0.1.0.110.1+3.efi")
    old = health.boot_entry(esp, "0.1.0.110")
    assert old is not None and not old.on_trial and health.settle(old, good=True) == old.path
    new = health.boot_entry(esp, "0.1.0.110.1")
    assert new is not None and (new.on_trial, new.left, new.done) == (True, 3, 0)
    assert health.settle(new, good=True).name == "appliance_0.1.0.110.1.efi"
    assert sorted(p.name for p in (esp / "EFI/Linux").iterdir()) == [
        "appliance_0.1.0.110.1.efi",
        "appliance_0.1.0.110.efi",
    ]


def test_a_failed_entry_is_marked_bad_with_no_tries_left(tmp_path: Path) -> None:
    # EDK2 counted two boots already (+1-2); U-Boot never renames (+3).
    esp = _esp(tmp_path, "appliance_2.0+1-2.efi", "appliance_2.1+3.efi", "appliance_2.10.efi")
    edk2 = health.boot_entry(esp, "2.0")
    assert edk2 is not None and (edk2.left, edk2.done) == (1, 2)
    assert health.settle(edk2, good=False).name == "appliance_2.0+0-2.efi"
    uboot = health.boot_entry(esp, "2.1")  # not confused with 2.10
    assert uboot is not None and health.settle(uboot, good=False).name == "appliance_2.1+0-0.efi"
    assert health.boot_entry(esp, "3.0") is None


def test_whether_systemd_boot_counted_this_boot(tmp_path: Path) -> None:
    assert not health.loader_counts(tmp_path)
    (tmp_path / "LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f").write_bytes(b"x")
    assert health.loader_counts(tmp_path)


def test_probes_against_a_silent_engine_and_a_closed_port(tmp_path: Path) -> None:
    from tests.conftest import free_port

    control, model = health.probe_control_and_model(tmp_path / "no-engine.sock")
    assert not control.ok and control.detail.startswith("no answer to status")
    assert not model.ok
    panel = health.probe_panel(f"http://127.0.0.1:{free_port()}/")
    assert not panel.ok and "ConnectError" in panel.detail


def test_the_engines_unit_state_is_read_whatever_order_systemctl_prints() -> None:
    # systemctl show lists a service's own properties (NRestarts) before the unit's.
    out = "NRestarts=2\nActiveState=activating\nSubState=start\n"
    assert health.unit_state(out) == {
        "NRestarts": "2",
        "ActiveState": "activating",
        "SubState": "start",
    }
    assert health.unit_state("") == {}

"""Whole-state archives: a round trip finds every row and file back; a tampered archive and one
from a newer schema are refused with a clear message and change nothing; the engine's restore
command stages, backs up the current state and restarts; retention keeps the newest."""

from __future__ import annotations

import asyncio
import io
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from app import contract
from app.admin.paneldb import PANEL_MIGRATIONS
from app.clock import ManualClock
from app.engine.backups import BackupService, backup_commands
from app.errors import ControlError
from app.live.ledger import MIGRATIONS as ORDER_MIGRATIONS
from app.store import archive, db, restore, schema, trading
from app.store.archive import ArchiveError, Layout

TS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
PASSWORD_HASH = b"$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA\n"
MODEL = b"\x08\x07fake onnx bytes" * 100


def _db(path: Path, migrations: list[str]) -> sqlite3.Connection:
    conn = db.connect(path)
    db.migrate(conn, migrations)
    return conn


def make_state(data: Path) -> None:
    """A data directory with every kind of member: rows the tests look for afterwards."""
    conn = _db(data / "trading.db", schema.TRADING_MIGRATIONS)
    trading.set_setting(conn, "settings.runtime", {"risk.max_leverage": "2"}, TS)
    trading.set_setting(conn, "engine.flags", {"paused": False, "halted": False}, TS)
    for i in range(50):
        trading.journal(conn, TS + i, "test", f"cmd{i}", {"i": i}, True, None)
    conn.close()
    conn = _db(data / "orders.db", ORDER_MIGRATIONS)
    conn.execute(
        "INSERT INTO orders (client_id, ts_created_ns, ts_updated_ns, symbol, side, type, qty, "
        "reduce_only, purpose, reason, model_version, stage) "
        "VALUES ('app-1-1', 1, 2, 'BTCUSDT', 'BUY', 'MARKET', '0.010', 0, 'entry', 'signal', "
        "'m1', 'done')"
    )
    conn.close()
    conn = _db(data / "panel.db", PANEL_MIGRATIONS)
    conn.execute("INSERT INTO settings VALUES ('webhook', '\"http://127.0.0.1:9/hook\"', 1)")
    conn.execute("INSERT INTO sessions VALUES ('h1', 'admin', '127.0.0.1', 'ua', 1, 2, NULL)")
    conn.close()
    (data / "secrets").mkdir(mode=0o700)
    (data / "secrets" / "admin-password.hash").write_bytes(PASSWORD_HASH)
    (data / "secrets" / "api-keys.json").write_text('{"api_key": "K", "api_secret": "S"}')
    models = data / "models"
    models.mkdir()
    (models / "abc123.onnx").write_bytes(MODEL)
    (models / "store.json").write_text('{"active": "abc123", "history": [{"to": "abc123"}]}')


def check_state(data: Path) -> None:
    conn = sqlite3.connect(data / "trading.db")
    assert trading.get_setting(conn, "settings.runtime") == {"risk.max_leverage": "2"}
    assert conn.execute("SELECT count(*) FROM journal WHERE actor = 'test'").fetchone() == (50,)
    conn.close()
    conn = sqlite3.connect(data / "orders.db")
    assert conn.execute("SELECT client_id, qty FROM orders").fetchall() == [("app-1-1", "0.010")]
    conn.close()
    conn = sqlite3.connect(data / "panel.db")
    assert conn.execute("SELECT value FROM settings WHERE key = 'webhook'").fetchone() == (
        '"http://127.0.0.1:9/hook"',
    )
    assert conn.execute("SELECT id_hash FROM sessions").fetchall() == [("h1",)]
    conn.close()
    assert (data / "secrets" / "admin-password.hash").read_bytes() == PASSWORD_HASH
    assert (data / "models" / "abc123.onnx").read_bytes() == MODEL
    assert "abc123" in (data / "models" / "store.json").read_text()


def wipe(data: Path, keep: tuple[str, ...] = ("backups",)) -> None:
    """Everything but the backups (as after flashing and copying the backups back)."""
    for path in data.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def flags(data: Path) -> dict[str, object]:
    conn = sqlite3.connect(data / "trading.db")
    try:
        value = trading.get_setting(conn, "engine.flags", {})
    finally:
        conn.close()
    assert isinstance(value, dict)
    return value


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    make_state(d)
    return d


def test_schema_versions_pinned_to_their_owners() -> None:
    assert archive.SCHEMAS["orders.db"] == len(ORDER_MIGRATIONS)
    assert archive.SCHEMAS["panel/panel.db"] == len(PANEL_MIGRATIONS)
    assert archive.SCHEMAS["trading.db"] == len(schema.TRADING_MIGRATIONS)


def test_round_trip_finds_every_row_and_file_back(data: Path) -> None:
    info = archive.create(Layout(data, data), TS)
    assert info.path.name == "appliance_20260101T000000Z.tar.zst"
    manifest = archive.verify(info.path, known=archive.SCHEMAS)
    assert manifest.members["trading.db"].schema_version == len(schema.TRADING_MIGRATIONS)
    assert "secrets/api-keys.json" in manifest.left_out  # API keys are never archived
    assert not any(n.startswith("secrets") for n in manifest.members)
    wipe(data)
    staged = restore.stage(Layout(data, data), info.path, TS + 1)
    assert staged.pre_restore == ""  # nothing left to save
    report = restore.apply_pending_restore(data, data)
    assert report is not None and not report.problems
    check_state(data)
    assert flags(data)["paused"] is True
    assert not (data / "secrets" / "api-keys.json").exists()
    assert restore.apply_pending_restore(data, data) is None  # applied once


def test_restore_backs_up_the_state_it_replaces(data: Path) -> None:
    layout = Layout(data, data)
    old = archive.create(layout, TS)
    conn = sqlite3.connect(data / "orders.db")
    conn.execute("UPDATE orders SET qty = '0.020'")  # a change made after the backup
    conn.commit()
    conn.close()
    staged = restore.stage(layout, old.path, TS + 60_000_000_000)
    assert staged.pre_restore.endswith("_pre-restore.tar.zst")
    restore.apply_pending_restore(data, data)
    check_state(data)
    # The replaced state is itself an archive: restore it and the change is back.
    pre = data / "backups" / staged.pre_restore
    restore.stage(layout, pre, TS + 120_000_000_000)
    restore.apply_pending_restore(data, data)
    conn = sqlite3.connect(data / "orders.db")
    assert conn.execute("SELECT qty FROM orders").fetchone() == ("0.020",)
    conn.close()


def _refused_and_nothing_changed(data: Path, path: Path, message: str) -> None:
    before = (data / "trading.db").read_bytes()
    with pytest.raises(ArchiveError, match=message):
        restore.stage(Layout(data, data), path, TS + 1)
    assert restore.pending(data) is None
    assert not (data / "restore" / "staged").exists()
    assert (data / "trading.db").read_bytes() == before
    assert not list((data / "backups").glob("*pre-restore*"))


def test_one_byte_changed_on_disk_is_refused(data: Path) -> None:
    path = archive.create(Layout(data, data), TS).path
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    _refused_and_nothing_changed(data, path, "damaged|does not match its checksum")


def _rewrite(path: Path, change: dict[str, bytes | None]) -> None:
    """Recompress ``path`` with members replaced: a well-formed archive, one member different."""
    out = io.BytesIO()
    with (
        path.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as zin,
        tarfile.open(fileobj=zin, mode="r|") as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        for entry in src:
            handle = src.extractfile(entry)
            assert handle is not None
            body = handle.read()
            body = change.get(entry.name) or body
            entry.size = len(body)
            dst.addfile(entry, io.BytesIO(body))
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(out.getvalue()))


def _member(path: Path, name: str) -> bytes:
    with (
        path.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as zin,
        tarfile.open(fileobj=zin, mode="r|") as tar,
    ):
        for entry in tar:
            if entry.name == name:
                handle = tar.extractfile(entry)
                assert handle is not None
                return handle.read()
    raise AssertionError(name)


def test_one_byte_changed_in_a_member_is_refused_by_its_checksum(data: Path) -> None:
    """Decompresses cleanly, unpacks cleanly, passes integrity_check: only the SHA-256 stops it."""
    path = archive.create(Layout(data, data), TS).path
    body = _member(path, "orders.db")
    assert body.count(b"0.010") == 1
    _rewrite(path, {"orders.db": body.replace(b"0.010", b"0.910")})
    _refused_and_nothing_changed(data, path, r"orders\.db does not match its checksum")


def test_newer_schema_is_refused(data: Path) -> None:
    conn = sqlite3.connect(data / "trading.db")
    conn.execute(f"PRAGMA user_version = {len(schema.TRADING_MIGRATIONS) + 1}")
    conn.close()
    path = archive.create(Layout(data, data), TS).path  # made by a "newer" program
    conn = sqlite3.connect(data / "trading.db")
    conn.execute(f"PRAGMA user_version = {len(schema.TRADING_MIGRATIONS)}")
    conn.close()
    _refused_and_nothing_changed(data, path, r"trading\.db has schema version 5, newer than")


def test_older_schema_is_restored_and_migrated_at_open(data: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    conn = _db(old / "trading.db", schema.TRADING_MIGRATIONS[:1])
    trading.set_setting(conn, "settings.runtime", {"risk.max_leverage": "3"}, TS)
    conn.close()
    path = archive.create(Layout(old, old), TS, backup_dir=data / "backups").path
    restore.stage(Layout(data, data), path, TS + 1)
    restore.apply_pending_restore(data, data)
    conn = db.connect(data / "trading.db")
    assert db.migrate(conn, schema.TRADING_MIGRATIONS) == len(schema.TRADING_MIGRATIONS)
    assert trading.get_setting(conn, "settings.runtime") == {"risk.max_leverage": "3"}
    conn.close()
    assert not (data / "orders.db").exists()  # the archive had none: state is the archive's


def test_an_interrupted_apply_is_finished_by_the_next_start(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = archive.create(Layout(data, data), TS).path
    wipe(data)
    restore.stage(Layout(data, data), path, TS + 1)
    real = restore._swap_models

    def crash(*args: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(restore, "_swap_models", crash)
    with pytest.raises(OSError, match="power cut"):
        restore.apply_pending_restore(data, data)
    monkeypatch.setattr(restore, "_swap_models", real)
    assert restore.pending(data) is not None
    report = restore.apply_pending_restore(data, data)
    assert report is not None
    check_state(data)


def test_retention_keeps_the_newest(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    day = 86_400_000_000_000
    names = []
    for i in range(10):
        p = archive._unique_path(backups, TS + i * day, "scheduled")
        p.write_bytes(b"x")
        names.append(p.name)
    removed = archive.prune(backups, TS + 30 * day, retention_days=14, keep_min=3)
    assert sorted(p.name for p in backups.iterdir()) == sorted(names[-3:])
    assert len(removed) == 7
    assert archive.made_on(backups, TS + 9 * day, "scheduled")
    assert not archive.made_on(backups, TS + 10 * day, "scheduled")


async def test_engine_commands_stage_back_up_and_restart(data: Path) -> None:
    restarts: list[str] = []
    paused: list[bool] = []

    async def pause() -> None:
        paused.append(True)

    clock = ManualClock(TS)
    service = BackupService(Layout(data, data), clock, restarts.append, pause)
    handlers = backup_commands(service)
    create = handlers.get("backup")
    assert create is not None
    done = await create.handler(contract.NoArgs())
    listing = await service.listing(contract.NoArgs())
    assert [a.name for a in listing.archives] == [Path(done.backup).name]
    clock.advance(60.0)
    staged = await service.restore(contract.BackupRef(name=Path(done.backup).name))
    assert staged.restarting and restarts and paused
    assert staged.pre_restore.endswith("_pre-restore.tar.zst")
    assert (await service.listing(contract.NoArgs())).pending_restore == staged.archive
    with pytest.raises(Exception, match="no backup archive"):
        await service.restore(contract.BackupRef(name="../trading.db"))
    # The engine exits; at its next start, before anything is opened:
    wipe(data, keep=("backups", "restore"))
    assert restore.apply_pending_restore(data, data) is not None
    check_state(data)
    assert flags(data)["paused"] is True


def test_cli_restore_refuses_a_tampered_archive_with_a_clear_message(data: Path) -> None:
    path = archive.create(Layout(data, data), TS).path
    body = _member(path, "orders.db")
    _rewrite(path, {"orders.db": body.replace(b"0.010", b"0.910")})
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "--data-dir", str(data), "backup", "restore", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 1
    assert "orders.db does not match its checksum" in done.stderr
    assert "Traceback" not in done.stderr


# Python 3.13 only (trixie): cancelling the service while its archive runs in the default executor
# leaves an event loop's self-pipe socket for the garbage collector, reported as an unclosed
# socket. Pre-existing (764fee1 shows it when this file runs before test_key_backup.py); not yet
# traced to its source, so ignored here alone rather than failing whichever test comes next.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_service_run_makes_the_daily_archive(data: Path) -> None:
    async def once() -> None:
        service = BackupService(Layout(data, data), ManualClock(TS), lambda r: None)
        task = asyncio.create_task(service.run())
        for _ in range(200):
            if archive.list_archives(data / "backups"):
                break
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(once())
    [made] = archive.list_archives(data / "backups")
    assert made.label == "scheduled"


def _other_appliance(tmp_path: Path) -> Path:
    """An archive made on another board: its own state, its own backups."""
    other = tmp_path / "other"
    other.mkdir()
    make_state(other)
    return archive.create(Layout(other, other), TS).path


@pytest.mark.parametrize("cut", [1, 4, 5, 200, "half"])
def test_a_truncated_archive_is_refused_as_truncated(data: Path, cut: int | str) -> None:
    """The streaming reader alone returns a short read for a cut-off end; the frame walk tells."""
    path = archive.create(Layout(data, data), TS).path
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2 if cut == "half" else len(raw) - int(cut)])
    _refused_and_nothing_changed(data, path, "is truncated: it ends inside")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not an appliance backup .*: it is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(600), "not an appliance backup .*: it is not zstd"),
        (b"\x1f\x8b\x08\x00" + bytes(600), "it is not zstd-compressed"),  # a .tar.gz
        (zstandard.ZstdCompressor().compress(b"hello" * 200), "no tar archive inside"),
    ],
    ids=["empty", "png", "gzip", "zstd-not-tar"],
)
def test_a_foreign_file_is_refused_as_not_a_backup(
    data: Path, tmp_path: Path, body: bytes, message: str
) -> None:
    path = tmp_path / "appliance_20260101T000000Z.tar.zst"
    path.write_bytes(body)
    _refused_and_nothing_changed(data, path, message)


def test_a_tar_without_a_manifest_is_refused(data: Path, tmp_path: Path) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("trading.db")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    path = tmp_path / "other.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(out.getvalue()))
    _refused_and_nothing_changed(data, path, "not an appliance backup \\(no manifest first\\)")


def test_bytes_after_the_end_are_refused_and_the_old_empty_last_frame_is_not(data: Path) -> None:
    path = archive.create(Layout(data, data), TS).path
    raw = path.read_bytes()
    # Archives written before the writer made one frame ended with an empty second frame.
    path.write_bytes(raw + zstandard.ZstdCompressor(write_checksum=True).compress(b""))
    archive.verify(path, known=archive.SCHEMAS)
    path.write_bytes(raw + b"\0\0\0\0junk")
    _refused_and_nothing_changed(data, path, "is damaged: 8 bytes after its end")
    path.write_bytes(raw + zstandard.ZstdCompressor().compress(b"more"))
    _refused_and_nothing_changed(data, path, "is damaged: it holds data after its archive")


def test_adopt_lists_an_archive_from_elsewhere_named_for_its_arrival(
    data: Path, tmp_path: Path
) -> None:
    made = _other_appliance(tmp_path)
    arrived = TS + 3 * 86_400_000_000_000
    info, manifest = archive.adopt(made, data / "backups", arrived, shown="mine.tar.zst")
    assert info.path.name == "appliance_20260104T000000Z_uploaded.tar.zst"
    assert info.label == "uploaded" and manifest.ts_created_ns == TS
    assert info.path.read_bytes() == made.read_bytes()
    assert [a.path.name for a in archive.list_archives(data / "backups")] == [info.path.name]
    # Restored like one made here.
    wipe(data)
    restore.stage(Layout(data, data), info.path, arrived + 1)
    restore.apply_pending_restore(data, data)
    check_state(data)


def test_adopt_refuses_a_bad_file_by_the_name_it_was_uploaded_as(
    data: Path, tmp_path: Path
) -> None:
    made = _other_appliance(tmp_path)
    raw = made.read_bytes()
    made.write_bytes(raw[:-100])
    backups = data / "backups"
    with pytest.raises(ArchiveError, match=r"^mine\.tar\.zst is truncated"):
        archive.adopt(made, backups, TS, shown="mine.tar.zst")
    made.write_bytes(raw)
    body = _member(made, "orders.db")
    _rewrite(made, {"orders.db": body.replace(b"0.010", b"0.910")})
    with pytest.raises(ArchiveError, match=r"mine\.tar\.zst: orders\.db does not match"):
        archive.adopt(made, backups, TS, shown="mine.tar.zst")
    assert not backups.exists() or list(backups.iterdir()) == []


async def test_engine_takes_in_an_upload_and_refuses_a_damaged_one(
    data: Path, tmp_path: Path
) -> None:
    made = _other_appliance(tmp_path)
    service = BackupService(Layout(data, data), ManualClock(TS + 60_000_000_000), lambda r: None)
    handler = backup_commands(service).get("backup.import")
    assert handler is not None
    done = await handler.handler(contract.PathArgs(path=str(made), name="from-laptop.tar.zst"))
    assert done.archive.name == "appliance_20260101T000100Z_uploaded.tar.zst"
    assert done.ts_made_ns == TS and "trading.db" in done.members
    listed = await service.listing(contract.NoArgs())
    assert [a.name for a in listed.archives] == [done.archive.name]
    made.write_bytes(made.read_bytes()[:-1])
    with pytest.raises(ControlError, match=r"not taken in: from-laptop\.tar\.zst is truncated"):
        await service.take_in(contract.PathArgs(path=str(made), name="from-laptop.tar.zst"))
    with pytest.raises(ControlError, match=r"not taken in: gone\.tar\.zst: No such file"):
        await service.take_in(contract.PathArgs(path=str(tmp_path / "x"), name="gone.tar.zst"))
    assert len((await service.listing(contract.NoArgs())).archives) == 1


async def test_a_failed_daily_archive_raises_an_alarm_that_the_next_success_clears(
    data: Path,
) -> None:
    alarms: list[tuple[str, str | None]] = []

    async def alarm(kind: str, message: str | None) -> None:
        alarms.append((kind, message))

    service = BackupService(Layout(data, data), ManualClock(TS), lambda r: None, alarm=alarm)
    (data / "orders.db").write_bytes(b"not a database" * 100)
    await service._scheduled()
    [(kind, message)] = alarms
    assert kind == "archive_failed" and message is not None
    assert message.startswith("the daily backup archive failed: ")
    assert archive.list_archives(data / "backups") == []
    (data / "orders.db").unlink()
    await service._scheduled()
    assert alarms[-1] == ("archive_failed", None)
    [made] = archive.list_archives(data / "backups")
    assert made.label == "scheduled"

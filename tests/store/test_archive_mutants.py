"""Whole-state archives member by member: what goes in (and what is left out, and why), how an
archive is named, sealed and placed, and every way a made-up or damaged archive is refused with
its message while nothing is left behind. Real SQLite files, real zstd and tar, nothing mocked."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sqlite3
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import zstandard

from app.admin.paneldb import PANEL_MIGRATIONS
from app.live.ledger import MIGRATIONS as ORDER_MIGRATIONS
from app.store import archive, db, schema, trading
from app.store.archive import ArchiveError, Layout, Manifest, Member

TS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
DAY = 86_400_000_000_000
PASSWORD_HASH = b"$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA\n"
MODEL = b"\x08\x07fake onnx bytes" * 50
KEYS_JSON = b'{"api_key": "K", "api_secret": "S"}'


def _db(path: Path, migrations: list[str]) -> None:
    conn = db.connect(path)
    db.migrate(conn, migrations)
    conn.close()


def _state(data: Path, panel: Path | None = None) -> Layout:
    """Every kind of member, the panel's files in ``panel`` (``data`` when None)."""
    panel = panel or data
    data.mkdir(parents=True, exist_ok=True)
    panel.mkdir(parents=True, exist_ok=True)
    conn = db.connect(data / "trading.db")
    db.migrate(conn, schema.TRADING_MIGRATIONS)
    trading.set_setting(conn, "settings.runtime", {"risk.max_leverage": "2"}, TS)
    conn.close()
    _db(data / "orders.db", ORDER_MIGRATIONS)
    _db(panel / "panel.db", PANEL_MIGRATIONS)
    (panel / "secrets").mkdir(exist_ok=True)
    (panel / "secrets" / "admin-password.hash").write_bytes(PASSWORD_HASH)
    models = data / "models"
    models.mkdir()
    (models / "abc123.onnx").write_bytes(MODEL)
    (models / "store.json").write_text('{"active": "abc123"}')
    return Layout(data, panel)


def _entries(path: Path) -> list[tarfile.TarInfo]:
    with (
        path.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as zin,
        tarfile.open(fileobj=zin, mode="r|") as tar,
    ):
        return list(tar)


def _body(path: Path, name: str) -> bytes:
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


def _pack(path: Path, entries: list[tuple[str, bytes | None]]) -> Path:
    """A zstd tar of ``entries`` in order (None: a directory entry)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in entries:
            info = tarfile.TarInfo(name)
            if body is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(out.getvalue()))
    return path


def _manifest(members: dict[str, bytes], fmt: int = 1, **versions: int) -> bytes:
    return Manifest(
        fmt,
        "9.9.9",
        TS,
        "",
        {
            n: Member(n, len(b), hashlib.sha256(b).hexdigest(), versions.get(n.replace(".", "_")))
            for n, b in members.items()
        },
    ).to_json()


def _forged(path: Path, members: dict[str, bytes], **versions: int) -> Path:
    """A well-formed archive of ``members`` whose manifest tells the truth about them."""
    entries: list[tuple[str, bytes | None]] = [("manifest.json", _manifest(members, **versions))]
    return _pack(path, entries + list(members.items()))


def _sqlite_bytes(tmp: Path, version: int) -> bytes:
    path = tmp / f"v{version}.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    return path.read_bytes()


# -- what an archive holds -------------------------------------------------------------------------


def test_an_archive_holds_every_member_sorted_after_its_manifest(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data", tmp_path / "panel")
    info = archive.create(layout, TS + 500_000_000, label="scheduled")
    assert info.path == tmp_path / "data" / "backups" / (
        "appliance_20260101T000000Z_scheduled.tar.zst"
    )
    assert (info.ts_created_ns, info.label) == (TS + 500_000_000, "scheduled")
    assert info.bytes == info.path.stat().st_size
    assert info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest()
    entries = _entries(info.path)
    assert [e.name for e in entries] == [
        "manifest.json",
        "models/abc123.onnx",
        "models/store.json",
        "orders.db",
        "panel/admin-password.hash",
        "panel/panel.db",
        "trading.db",
    ]
    assert {(e.mode, e.mtime, e.isfile()) for e in entries} == {(0o600, TS // 10**9, True)}
    assert _body(info.path, "panel/admin-password.hash") == PASSWORD_HASH
    assert _body(info.path, "models/abc123.onnx") == MODEL
    manifest = archive.read_manifest(info.path)
    assert manifest.format == archive.FORMAT == 1
    assert manifest.ts_created_ns == TS + 500_000_000
    assert manifest.label == "scheduled"
    assert manifest.app_version == archive.app_version()
    assert manifest.left_out == {
        "secrets/api-keys.json": "left out unless a passphrase is given "
        "(appliance backup create --include-keys)"
    }
    members = manifest.members
    assert members["models/abc123.onnx"] == Member(
        "models/abc123.onnx", len(MODEL), hashlib.sha256(MODEL).hexdigest(), None
    )
    assert members["trading.db"].schema_version == len(schema.TRADING_MIGRATIONS)
    assert members["orders.db"].schema_version == len(ORDER_MIGRATIONS)
    assert members["panel/panel.db"].schema_version == len(PANEL_MIGRATIONS)
    assert members["panel/admin-password.hash"].schema_version is None
    # The archive's own bytes are one zstd frame with its checksum (frame header flag 0x04).
    raw = info.path.read_bytes()
    assert raw[:4] == b"\x28\xb5\x2f\xfd" and raw[4] & 0x04


def test_the_trading_journal_is_a_consistent_copy_with_its_rows(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data")
    info = archive.create(layout, TS)
    out = tmp_path / "out"
    manifest = archive.verify(info.path, into=out, known=archive.SCHEMAS)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {f for f in files if not f.endswith(("-wal", "-shm"))} == set(manifest.members)
    conn = sqlite3.connect(out / "trading.db")
    try:
        assert trading.get_setting(conn, "settings.runtime") == {"risk.max_leverage": "2"}
    finally:
        conn.close()


def test_what_does_not_exist_is_listed_as_left_out(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _db(data / "trading.db", schema.TRADING_MIGRATIONS)
    info = archive.create(Layout(data, data), TS, passphrase="correct horse")
    manifest = archive.read_manifest(info.path)
    assert sorted(manifest.members) == ["trading.db"]
    assert manifest.left_out == {
        "orders.db": "does not exist",
        "panel/panel.db": "does not exist",
        "panel/admin-password.hash": "does not exist",
        "models/": "no model store",
        "secrets/api-keys.json": "does not exist (no API keys saved)",
    }
    summary = archive.manifest_summary(manifest)
    assert summary == {
        "app_version": archive.app_version(),
        "made": "2026-01-01T00:00:00+00:00",
        "label": "",
        "members": {
            "trading.db": {
                "bytes": manifest.members["trading.db"].bytes,
                "schema_version": len(schema.TRADING_MIGRATIONS),
            }
        },
        "api_keys": "left out",
        "left_out": manifest.left_out,
    }


def test_half_written_models_and_hidden_files_are_not_archived(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data")
    models = layout.models_dir
    (models / "def456.onnx.tmp").write_bytes(b"half")
    (models / ".store.json.swp").write_bytes(b"editor")
    (models / ".staging").mkdir()
    (models / ".staging" / "x.onnx").write_bytes(b"staged")
    (models / "old").mkdir()
    (models / "old" / "v1.onnx").write_bytes(b"v1")
    info = archive.create(layout, TS)
    names = [e.name for e in _entries(info.path) if e.name.startswith("models/")]
    assert names == ["models/abc123.onnx", "models/old/v1.onnx", "models/store.json"]


def test_a_panel_database_that_cannot_be_read_is_left_out_with_why(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data", tmp_path / "panel")
    (tmp_path / "panel" / "panel.db").write_bytes(b"not a database" * 100)
    (tmp_path / "panel" / "secrets" / "admin-password.hash").unlink()
    (tmp_path / "panel" / "secrets" / "admin-password.hash").mkdir()
    manifest = archive.read_manifest(archive.create(layout, TS).path)
    assert "panel/panel.db" not in manifest.members
    assert manifest.left_out["panel/panel.db"] == "not readable here: file is not a database"
    assert manifest.left_out["panel/admin-password.hash"].startswith("not readable here: [Errno")
    assert "orders.db" in manifest.members


@pytest.mark.parametrize("name", ["orders.db", "trading.db"])
def test_an_engine_journal_that_cannot_be_copied_stops_the_archive(
    tmp_path: Path, name: str
) -> None:
    layout = _state(tmp_path / "data")
    (tmp_path / "data" / name).write_bytes(b"not a database" * 100)
    with pytest.raises(ArchiveError, match=rf"^{name} cannot be copied: file is not a database$"):
        archive.create(layout, TS)
    assert [p.name for p in layout.backup_dir.iterdir()] == []


def test_the_keys_are_sealed_only_with_a_passphrase(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data")
    layout.keys_file.parent.mkdir(exist_ok=True)
    layout.keys_file.write_bytes(KEYS_JSON)
    info = archive.create(layout, TS, passphrase="correct horse")
    manifest = archive.verify(info.path, passphrase="correct horse")
    assert archive.KEYS in manifest.members
    assert "secrets/api-keys.json" not in manifest.left_out
    assert archive.manifest_summary(manifest)["api_keys"] == "included, encrypted"
    out = tmp_path / "out"
    archive.verify(info.path, into=out)
    assert KEYS_JSON not in (out / archive.KEYS).read_bytes()
    assert archive.open_keys(out / archive.KEYS, "correct horse") == KEYS_JSON
    with pytest.raises(ArchiveError, match=r"^keys\.enc: the API keys cannot be opened: "):
        archive.open_keys(out / archive.KEYS, "wrong")
    with pytest.raises(ArchiveError, match=r"^mine\.tar\.zst: the API keys cannot be opened: "):
        archive.open_keys(out / archive.KEYS, "wrong", "mine.tar.zst")


def test_keys_that_cannot_be_read_or_sealed_stop_the_archive(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data")
    layout.keys_file.mkdir(parents=True)  # a directory where the keys file should be
    with pytest.raises(
        ArchiveError,
        match=r"^the API keys \(.*/secrets/api-keys\.json\) cannot be read: Is a directory "
        r"\(run as their owner or as root\)$",
    ):
        archive.create(layout, TS, passphrase="correct horse")
    layout.keys_file.rmdir()
    layout.keys_file.write_bytes(KEYS_JSON)
    with pytest.raises(
        ArchiveError,
        match=r"^the API keys cannot be included: an empty passphrase cannot protect anything$",
    ):
        archive.create(layout, TS, passphrase="")
    assert list(layout.backup_dir.iterdir()) == []


def test_a_wrong_passphrase_refuses_the_archive_by_its_name(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data")
    layout.keys_file.parent.mkdir(exist_ok=True)
    layout.keys_file.write_bytes(KEYS_JSON)
    path = archive.create(layout, TS, passphrase="correct horse").path
    with pytest.raises(
        ArchiveError, match=r"^appliance_20260101T000000Z\.tar\.zst: the API keys cannot be opened"
    ):
        archive.verify(path, passphrase="wrong")
    archive.verify(path)  # without a passphrase the keys are not opened


# -- names, places, modes --------------------------------------------------------------------------


def test_archives_of_the_same_second_are_numbered(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data")
    names = [archive.create(layout, TS, label="pre-restore").path.name for _ in range(3)]
    assert names == [
        "appliance_20260101T000000Z_pre-restore.tar.zst",
        "appliance_20260101T000000Z-1_pre-restore.tar.zst",
        "appliance_20260101T000000Z-2_pre-restore.tar.zst",
    ]
    assert {a.path.name for a in archive.list_archives(layout.backup_dir)} == set(names)
    assert archive.parse_name(names[1]) == (TS, "pre-restore")


def test_a_thousand_archives_in_one_second_is_refused(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "appliance_20260101T000000Z.tar.zst").touch()
    for n in range(1, 999):
        (backups / f"appliance_20260101T000000Z-{n}.tar.zst").touch()
    assert archive._unique_path(backups, TS, "").name == "appliance_20260101T000000Z-999.tar.zst"
    (backups / "appliance_20260101T000000Z-999.tar.zst").touch()
    with pytest.raises(
        ArchiveError, match=r"^too many archives named appliance_20260101T000000Z\*$"
    ):
        archive._unique_path(backups, TS, "")


@pytest.mark.parametrize("label", ["Scheduled", "daily1", "a_b", "x y"])
def test_a_label_outside_lowercase_and_dashes_is_refused(tmp_path: Path, label: str) -> None:
    with pytest.raises(ValueError, match=rf"^bad archive label '{label}'$"):
        archive.create(Layout(tmp_path, tmp_path), TS, label=label)
    assert not (tmp_path / "backups").exists()


def test_the_archive_is_0640_in_a_0750_directory_owned_like_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = _state(tmp_path / "data")
    out = tmp_path / "off" / "board"  # made with its parents
    os.umask(0o022)
    with caplog.at_level(logging.INFO, logger="app.store.archive"):
        info = archive.create(layout, TS, backup_dir=out)
    assert info.path.parent == out
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o640
    assert [p.name for p in out.iterdir()] == [info.path.name]  # no scratch, no partial left
    assert not layout.backup_dir.exists()
    assert caplog.messages == [
        f"backup archive {info.path.name}: 6 members, {info.bytes} bytes, verified"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_as_root_the_archive_is_owned_like_its_directory(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data")
    layout.backup_dir.mkdir()
    os.chown(layout.backup_dir, 1234, 5678)
    info = archive.create(layout, TS)
    st = info.path.stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)


def test_the_panel_directory_is_the_data_directory_in_a_working_copy(tmp_path: Path) -> None:
    assert archive.default_panel_dir(tmp_path) == tmp_path
    layout = Layout(tmp_path / "d", tmp_path / "p")
    assert layout.backup_dir == tmp_path / "d" / "backups"
    assert layout.models_dir == tmp_path / "d" / "models"
    assert layout.keys_file == tmp_path / "d" / "secrets" / "api-keys.json"
    assert layout.databases() == {
        "trading.db": tmp_path / "d" / "trading.db",
        "orders.db": tmp_path / "d" / "orders.db",
        "panel/panel.db": tmp_path / "p" / "panel.db",
    }
    assert layout.files() == {
        "panel/admin-password.hash": tmp_path / "p" / "secrets" / "admin-password.hash"
    }


def test_the_program_version_is_the_installed_one() -> None:
    try:
        expected = metadata.version("appliance")
    except metadata.PackageNotFoundError:
        expected = "unknown"
    assert archive.app_version() == expected


# -- the manifest ----------------------------------------------------------------------------------


def test_the_manifest_is_sorted_json_and_reads_back() -> None:
    manifest = Manifest(
        1, "0.1.0", TS, "scheduled", {"a.db": Member("a.db", 3, "ab", 2)}, {"x": "why"}
    )
    raw = manifest.to_json()
    assert raw == (
        b'{\n "app_version": "0.1.0",\n "format": 1,\n "label": "scheduled",\n "left_out": {\n'
        b'  "x": "why"\n },\n "members": {\n  "a.db": {\n   "bytes": 3,\n   "schema_version": 2,'
        b'\n   "sha256": "ab"\n  }\n },\n "ts_created_ns": 1767225600000000000\n}'
    )
    assert Manifest.from_json(raw) == manifest
    bare = json.dumps({"format": 1, "app_version": "v", "ts_created_ns": 5, "members": {}}).encode()
    assert Manifest.from_json(bare) == Manifest(1, "v", 5, "", {}, {})


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"{", "Expecting property name"),
        (b"[]", "list indices must be integers"),
        (b'{"format": 1}', "'members'"),
        (b'{"format": "one", "app_version": "v", "ts_created_ns": 1, "members": {}}', "invalid"),
        (b'{"format": 1, "app_version": "v", "ts_created_ns": 1, "members": {"a": 1}}', "int"),
        (b'{"format": 1, "app_version": "v", "ts_created_ns": 1, "members": []}', "items"),
    ],
    ids=["not-json", "not-an-object", "no-members", "format-not-int", "member-not-obj", "list"],
)
def test_a_malformed_manifest_is_refused(tmp_path: Path, raw: bytes, detail: str) -> None:
    with pytest.raises(ArchiveError, match=rf"^the manifest is malformed: .*{detail}"):
        Manifest.from_json(raw)
    path = _pack(tmp_path / "a.tar.zst", [("manifest.json", raw)])
    with pytest.raises(ArchiveError, match=r"^the manifest is malformed"):
        archive.verify(path)


# -- refusals: nothing is left behind --------------------------------------------------------------


def _refused(path: Path, message: str, known: dict[str, int] | None = None) -> None:
    before = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(ArchiveError, match=message):
        archive.verify(path, known=known)
    assert sorted(p.name for p in path.parent.iterdir()) == before  # no scratch left


def test_a_forged_archive_that_tells_the_truth_verifies(tmp_path: Path) -> None:
    body = _sqlite_bytes(tmp_path, 3)
    members = {"trading.db": body, "models/m.onnx": b"m"}
    path = _forged(tmp_path / "x.tar.zst", members, trading_db=3)
    manifest = archive.verify(path, known={"trading.db": 3})
    assert manifest.members["trading.db"].schema_version == 3
    assert archive.verify(path, known={"orders.db": 1}).app_version == "9.9.9"


def test_a_newer_archive_format_is_refused(tmp_path: Path) -> None:
    raw = _manifest({}, fmt=2)
    path = _pack(tmp_path / "x.tar.zst", [("manifest.json", raw)])
    _refused(
        path,
        r"^x\.tar\.zst has archive format 2, newer than this program reads \(1\); it was made "
        r"by version 9\.9\.9$",
    )


@pytest.mark.parametrize(
    "name", ["../evil.db", "/etc/evil.db", "models//evil", "models/./../../evil"]
)
def test_a_member_outside_the_archive_is_refused_even_if_listed(tmp_path: Path, name: str) -> None:
    path = _forged(tmp_path / "x.tar.zst", {name: b"evil"})
    into = tmp_path / "into"
    with pytest.raises(ArchiveError, match=r"^x\.tar\.zst: unexpected member .*evil.* \(not in"):
        archive.verify(path, into=into)
    assert not (tmp_path / "evil.db").exists()


def test_a_member_not_in_the_manifest_a_repeated_one_and_a_directory_are_refused(
    tmp_path: Path,
) -> None:
    members = {"models/m.onnx": b"m"}
    raw = _manifest(members)
    extra = _pack(
        tmp_path / "extra.tar.zst",
        [("manifest.json", raw), ("models/m.onnx", b"m"), ("models/n.onnx", b"n")],
    )
    _refused(
        extra, r"^extra\.tar\.zst: unexpected member 'models/n\.onnx' \(not in its manifest\)$"
    )
    twice = _pack(
        tmp_path / "twice.tar.zst",
        [("manifest.json", raw), ("models/m.onnx", b"m"), ("models/m.onnx", b"m")],
    )
    _refused(twice, r"^twice\.tar\.zst: unexpected member 'models/m\.onnx'")
    folder = _pack(tmp_path / "dir.tar.zst", [("manifest.json", raw), ("models/m.onnx", None)])
    _refused(folder, r"^dir\.tar\.zst: unexpected member 'models/m\.onnx'")


def test_a_missing_member_is_refused_by_name(tmp_path: Path) -> None:
    raw = _manifest({"models/m.onnx": b"m", "orders.db": b"o", "trading.db": b"t"})
    path = _pack(tmp_path / "x.tar.zst", [("manifest.json", raw), ("orders.db", b"o")])
    _refused(path, r"^x\.tar\.zst is incomplete: models/m\.onnx, trading\.db missing$")


def test_an_empty_tar_is_refused_as_empty(tmp_path: Path) -> None:
    path = _pack(tmp_path / "x.tar.zst", [])
    _refused(path, r"^x\.tar\.zst is empty$")
    with pytest.raises(ArchiveError, match=r"^x\.tar\.zst is not an appliance backup \(no manif"):
        archive.read_manifest(path)


def test_a_manifest_that_is_a_directory_or_not_first_is_refused(tmp_path: Path) -> None:
    raw = _manifest({})
    for entries in ([("manifest.json", None)], [("orders.db", b"o"), ("manifest.json", raw)]):
        path = _pack(tmp_path / "x.tar.zst", entries)
        _refused(path, r"^x\.tar\.zst is not an appliance backup \(no manifest first\)$")
        with pytest.raises(ArchiveError, match=r"^x\.tar\.zst is not an appliance backup \(no ma"):
            archive.read_manifest(path)


def test_a_changed_member_is_refused_with_both_checksums(tmp_path: Path) -> None:
    raw = _manifest({"models/m.onnx": b"model"})
    path = _pack(tmp_path / "x.tar.zst", [("manifest.json", raw), ("models/m.onnx", b"modem")])
    got, want = hashlib.sha256(b"modem").hexdigest(), hashlib.sha256(b"model").hexdigest()
    _refused(
        path,
        rf"^x\.tar\.zst: models/m\.onnx does not match its checksum \(SHA-256 {got[:12]}…, "
        rf"manifest {want[:12]}…\): the archive was altered or damaged$",
    )


def test_a_database_whose_version_differs_from_its_manifest_is_refused(tmp_path: Path) -> None:
    path = _forged(tmp_path / "x.tar.zst", {"orders.db": _sqlite_bytes(tmp_path, 2)}, orders_db=1)
    _refused(path, r"^x\.tar\.zst: orders\.db has schema version 2, its manifest says 1$")


def test_a_database_newer_than_this_program_knows_is_refused_only_when_asked(
    tmp_path: Path,
) -> None:
    path = _forged(tmp_path / "x.tar.zst", {"orders.db": _sqlite_bytes(tmp_path, 2)}, orders_db=2)
    _refused(
        path,
        r"^x\.tar\.zst: orders\.db has schema version 2, newer than this program knows \(1\): "
        r"it was made by version 9\.9\.9; restore it with that version or a newer one$",
        known={"orders.db": 1},
    )
    archive.verify(path)  # just written by this program: not checked
    archive.verify(path, known={"orders.db": 2})
    archive.verify(path, known={"trading.db": 1})  # a database it does not know of


def test_a_damaged_database_is_refused_by_its_integrity_check(tmp_path: Path) -> None:
    body = bytearray(_sqlite_bytes(tmp_path, 1))
    body[100:4096] = b"\xff" * (4096 - 100)
    path = _forged(tmp_path / "x.tar.zst", {"trading.db": bytes(body)}, trading_db=1)
    _refused(path, r"^x\.tar\.zst: trading\.db fails integrity_check: ")


def test_a_missing_archive_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match=r"^gone\.tar\.zst cannot be read: No such file"):
        archive.read_manifest(tmp_path / "gone.tar.zst")


def test_whole_zstd_around_a_cut_tar_is_refused_as_damaged(tmp_path: Path) -> None:
    raw = _manifest({"models/m.onnx": b"m" * 5000})
    whole = _pack(tmp_path / "w.tar.zst", [("manifest.json", raw), ("models/m.onnx", b"m" * 5000)])
    tar = zstandard.ZstdDecompressor().decompress(whole.read_bytes())
    for cut, name in ((len(raw) // 2 + 512, "a.tar.zst"), (len(tar) // 2, "b.tar.zst")):
        path = tmp_path / name
        path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(tar[:cut]))
        _refused(path, rf"^{name[0]}\.tar\.zst is damaged \(it does not decompress or unpack: ")
    with pytest.raises(ArchiveError, match=r"^up is damaged \(it does not decompress or unpack: "):
        archive.read_manifest(tmp_path / "a.tar.zst", label="up")
    assert archive.read_manifest(tmp_path / "b.tar.zst").ts_created_ns == TS


# -- what may follow an archive's frame ------------------------------------------------------------


def _skippable(payload: bytes) -> bytes:
    return (0x184D2A50).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload


def test_up_to_64_bytes_of_empty_frames_after_an_archive_are_accepted(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data")
    path = archive.create(layout, TS).path
    raw = path.read_bytes()
    empty = zstandard.ZstdCompressor().compress(b"")
    assert len(empty) == 9
    path.write_bytes(raw + empty * 6 + _skippable(b"ab"))  # 64 bytes after the archive's frame
    assert archive.verify(path).ts_created_ns == TS
    path.write_bytes(raw + empty * 6 + _skippable(b"abc"))  # 65
    _refused(path, r"^appliance_20260101T000000Z\.tar\.zst is damaged: it holds data after its ")
    path.write_bytes(raw + zstandard.ZstdCompressor().compress(b"x") + empty)
    _refused(path, r"^appliance_20260101T000000Z\.tar\.zst is damaged: it holds data after its ")
    path.write_bytes(raw + empty + b"junk")
    _refused(path, r"^appliance_20260101T000000Z\.tar\.zst is damaged: 4 bytes after its end")


def test_a_damaged_frame_is_refused_as_damaged(tmp_path: Path) -> None:
    path = tmp_path / "x.tar.zst"
    raw = bytearray(zstandard.ZstdCompressor().compress(b"hello" * 100))
    raw[4] |= 0x08  # the frame header's reserved bit
    path.write_bytes(bytes(raw))
    _refused(path, r"^x\.tar\.zst is damaged: a frame header has its reserved bit set$")


# -- adopting an archive made elsewhere ------------------------------------------------------------


def test_adopt_takes_in_a_copy_verified_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    made = archive.create(_state(tmp_path / "other"), TS).path
    backups = tmp_path / "mine" / "backups"
    with caplog.at_level(logging.INFO, logger="app.store.archive"):
        info, manifest = archive.adopt(made, backups, TS + DAY)
    assert info.path == backups / "appliance_20260102T000000Z_uploaded.tar.zst"
    assert (info.ts_created_ns, info.label, manifest.ts_created_ns) == (TS + DAY, "uploaded", TS)
    assert info.bytes == made.stat().st_size
    assert info.sha256 == hashlib.sha256(made.read_bytes()).hexdigest()
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o640
    assert stat.S_IMODE(backups.stat().st_mode) == 0o750
    assert made.exists()
    assert caplog.messages[-1] == (
        f"backup archive {info.path.name} taken in from {made.name}, verified"
    )
    with caplog.at_level(logging.INFO, logger="app.store.archive"):
        again, _ = archive.adopt(made, backups, TS + DAY, shown="laptop.tar.zst")
    assert again.path.name == "appliance_20260102T000000Z-1_uploaded.tar.zst"
    assert caplog.messages[-1].endswith("taken in from laptop.tar.zst, verified")


def test_adopt_refuses_a_newer_schema_and_keeps_nothing(tmp_path: Path) -> None:
    made = _forged(tmp_path / "x.tar.zst", {"orders.db": _sqlite_bytes(tmp_path, 9)}, orders_db=9)
    backups = tmp_path / "backups"
    with pytest.raises(ArchiveError, match=r"^x\.tar\.zst: orders\.db has schema version 9, newer"):
        archive.adopt(made, backups, TS)
    assert list(backups.iterdir()) == []


# -- listing and retention -------------------------------------------------------------------------


def test_names_parse_to_their_second_and_label() -> None:
    assert archive.parse_name("appliance_20260101T000000Z.tar.zst") == (TS, "")
    assert archive.parse_name("appliance_20260102T030405Z-12_pre-restore.tar.zst") == (
        TS + DAY + (3 * 3600 + 4 * 60 + 5) * 10**9,
        "pre-restore",
    )
    for name in (
        "appliance_20260101T000000Z.tar.zst.partial",
        ".appliance_20260101T000000Z.tar.zst.partial",
        "appliance_20260101T000000Z_Upper.tar.zst",
        "appliance_20260101T000000.tar.zst",
        "appliance_20260101T000000Z.tar.gz",
        "xappliance_20260101T000000Z.tar.zst",
    ):
        assert archive.parse_name(name) is None, name


def test_the_listing_is_archives_only_newest_first(tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    assert archive.list_archives(backups) == []
    backups.mkdir()
    (backups / "appliance_20260103T000000Z.tar.zst").write_bytes(b"12345")
    (backups / "appliance_20260102T000000Z_scheduled.tar.zst").write_bytes(b"1")
    (backups / "appliance_20260102T000000Z_pre-restore.tar.zst").write_bytes(b"1")
    (backups / "appliance_20260104T000000Z.tar.zst").mkdir()  # not a file
    (backups / ".appliance_20260105T000000Z.tar.zst.partial").write_bytes(b"1")
    (backups / "market_2026_01.db.zst").write_bytes(b"1")
    listing = archive.list_archives(backups)
    assert [(a.path.name, a.bytes, a.sha256, a.ts_created_ns, a.label) for a in listing] == [
        ("appliance_20260103T000000Z.tar.zst", 5, "", TS + 2 * DAY, ""),
        ("appliance_20260102T000000Z_scheduled.tar.zst", 1, "", TS + DAY, "scheduled"),
        ("appliance_20260102T000000Z_pre-restore.tar.zst", 1, "", TS + DAY, "pre-restore"),
    ]
    assert archive.find(backups, "appliance_20260102T000000Z_scheduled.tar.zst") == (
        backups / "appliance_20260102T000000Z_scheduled.tar.zst"
    )
    for name in ("market_2026_01.db.zst", "../backups/appliance_20260103T000000Z.tar.zst"):
        with pytest.raises(ArchiveError, match=rf"^no backup archive '{name}' in {backups}$"):
            archive.find(backups, name)


def test_made_on_is_the_label_on_the_same_utc_day(tmp_path: Path) -> None:
    (tmp_path / "appliance_20260101T235959Z_scheduled.tar.zst").write_bytes(b"")
    (tmp_path / "appliance_20260102T000000Z.tar.zst").write_bytes(b"")
    assert archive.made_on(tmp_path, TS, "scheduled")
    assert archive.made_on(tmp_path, TS + DAY - 10**9, "scheduled")
    assert not archive.made_on(tmp_path, TS + DAY, "scheduled")
    assert not archive.made_on(tmp_path, TS - 10**9, "scheduled")
    assert archive.made_on(tmp_path, TS + DAY, "")
    assert not archive.made_on(tmp_path, TS, "pre-restore")


def test_prune_deletes_past_the_retention_to_the_nanosecond_keeping_the_newest(
    tmp_path: Path,
) -> None:
    names = [f"appliance_2026010{d}T000000Z.tar.zst" for d in range(1, 6)]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    # Day 1 is exactly 3 days old: kept; nothing else is old enough.
    assert archive.prune(tmp_path, TS + 3 * DAY, retention_days=3, keep_min=1) == []
    assert archive.prune(tmp_path, TS + 3 * DAY + 1, retention_days=3, keep_min=1) == [
        tmp_path / names[0]
    ]
    # Everything is old now, but the newest two are kept.
    assert archive.prune(tmp_path, TS + 99 * DAY, retention_days=3, keep_min=2) == [
        tmp_path / names[2],
        tmp_path / names[1],
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == names[3:]
    assert archive.prune(tmp_path, TS + 99 * DAY, retention_days=3, keep_min=0) == [
        tmp_path / names[4],
        tmp_path / names[3],
    ]
    assert archive.prune(tmp_path / "none", TS, 3, 0) == []


# -- what the module's own edges do ----------------------------------------------------------------


def test_the_archive_is_its_tar_compressed_at_level_10(tmp_path: Path) -> None:
    """Level 10, the one frame with its checksum: recompressing the archive's tar that way gives
    the archive back byte for byte (zstd is deterministic), and the default level would not."""
    info = archive.create(_state(tmp_path / "data"), TS)
    raw = info.path.read_bytes()
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()

    def compressed(level: int) -> bytes:
        out = io.BytesIO()
        cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
        with cctx.stream_writer(out, closefd=False) as writer:
            writer.write(plain)
        return out.getvalue()

    assert compressed(10) == raw
    assert compressed(3) != raw


def test_a_program_that_is_not_installed_says_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a source tree where no package metadata can be found: the manifest says so."""
    monkeypatch.setattr("sys.path", [str(tmp_path)])
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("appliance")
    assert archive.app_version() == "unknown"


def test_an_upload_that_is_gone_is_reported_by_its_own_name(tmp_path: Path) -> None:
    """The error names the missing source, not the temporary copy (which was never made)."""
    backups = tmp_path / "backups"
    source = tmp_path / "upload.tar.zst"
    with pytest.raises(FileNotFoundError) as err:
        archive.adopt(source, backups, TS)
    assert err.value.filename == str(source)
    assert list(backups.iterdir()) == []


def test_reading_the_manifest_of_a_zstd_file_without_a_tar_names_it(tmp_path: Path) -> None:
    path = tmp_path / "x.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(b"hello" * 200))
    with pytest.raises(ArchiveError, match=r"^up\.tar\.zst is not an appliance backup: no tar arc"):
        archive.read_manifest(path, label="up.tar.zst")
    with pytest.raises(ArchiveError, match=r"^x\.tar\.zst is not an appliance backup: no tar arch"):
        archive.read_manifest(path)


def test_a_manifest_over_one_mebibyte_is_cut_there_and_refused(tmp_path: Path) -> None:
    """Sound JSON of 1.5 MiB (a made-up archive's long "left out" list): read only up to its first
    MiB, it does not parse, so neither the listing of its manifest nor a verification goes on."""
    body = json.loads(_manifest({}))
    body["left_out"] = {f"file-{i:06d}": "x" * 100 for i in range(14_000)}
    raw = json.dumps(body).encode()
    assert 1 << 20 < len(raw) < 2 << 20
    assert Manifest.from_json(raw).left_out["file-013999"] == "x" * 100
    path = _pack(tmp_path / "x.tar.zst", [("manifest.json", raw)])
    with pytest.raises(ArchiveError, match=r"^the manifest is malformed: "):
        archive.read_manifest(path)
    _refused(path, r"^the manifest is malformed: ")


@pytest.fixture
def board_five_hours_behind_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC-5 (a POSIX TZ rule: no zone files needed)."""
    monkeypatch.setenv("TZ", "XST+5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("board_five_hours_behind_utc")
def test_names_and_days_are_utc_whatever_the_local_time_zone(tmp_path: Path) -> None:
    assert time.timezone == 5 * 3600
    assert archive.parse_name("appliance_20260101T000000Z.tar.zst") == (TS, "")
    (tmp_path / "appliance_20260102T030000Z_scheduled.tar.zst").write_bytes(b"")
    # 01:00 and 03:00 UTC on 2 January (local: 20:00 and 22:00 on 1 January).
    assert archive.made_on(tmp_path, TS + DAY + 3600 * 10**9, "scheduled")
    # 23:00 UTC on 1 January (local: 18:00, the same local day as the archive).
    assert not archive.made_on(tmp_path, TS + DAY - 3600 * 10**9, "scheduled")


def test_the_sealed_keys_wait_in_the_scratch_directory_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    layout = _state(tmp_path / "data")
    layout.keys_file.parent.mkdir(exist_ok=True)
    layout.keys_file.write_bytes(KEYS_JSON)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    copies, _, left_out = archive._collect(layout, scratch, "correct horse")
    sealed = copies[archive.KEYS]
    assert sealed == scratch / archive.KEYS
    assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
    assert KEYS_JSON not in sealed.read_bytes()
    assert archive.open_keys(sealed, "correct horse") == KEYS_JSON
    assert "secrets/api-keys.json" not in left_out


def test_a_database_that_cannot_even_be_opened_is_left_out_or_stops_the_archive(
    tmp_path: Path,
) -> None:
    """Refused at open (before any copy exists): the panel's is left out with why, an engine
    journal's stops the archive with its own error."""
    layout = _state(tmp_path / "data", tmp_path / "panel")
    (tmp_path / "panel" / "panel.db").unlink()
    (tmp_path / "panel" / "panel.db").mkdir()
    manifest = archive.read_manifest(archive.create(layout, TS).path)
    assert "panel/panel.db" not in manifest.members
    assert manifest.left_out["panel/panel.db"] == "not readable here: disk I/O error"
    (tmp_path / "data" / "orders.db").unlink()
    (tmp_path / "data" / "orders.db").mkdir()
    with pytest.raises(ArchiveError, match=r"^orders\.db cannot be copied: disk I/O error$"):
        archive.create(layout, TS + DAY)
    assert len(archive.list_archives(layout.backup_dir)) == 1


def test_making_and_proving_an_archive_never_uses_the_system_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scratch copies are made beside the archives, on the disk that holds them."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-directory"))
    layout = _state(tmp_path / "data")
    info = archive.create(layout, TS)
    assert archive.verify(info.path).members.keys() >= {"trading.db", "orders.db"}
    assert [p.name for p in layout.backup_dir.iterdir()] == [info.path.name]
    assert not (tmp_path / "no-such-directory").exists()


@pytest.mark.usefixtures("board_five_hours_behind_utc")
def test_a_new_archive_is_named_for_its_utc_second(tmp_path: Path) -> None:
    assert archive._unique_path(tmp_path, TS, "scheduled") == (
        tmp_path / "appliance_20260101T000000Z_scheduled.tar.zst"
    )


def test_model_files_two_directories_deep_are_archived(tmp_path: Path) -> None:
    layout = _state(tmp_path / "data")
    deep = layout.models_dir / "history" / "2026" / "v0.onnx"
    deep.parent.mkdir(parents=True)
    deep.write_bytes(b"v0")
    info = archive.create(layout, TS)
    assert _body(info.path, "models/history/2026/v0.onnx") == b"v0"


def test_data_after_an_empty_frame_after_the_archive_is_refused(tmp_path: Path) -> None:
    path = archive.create(_state(tmp_path / "data"), TS).path
    empty = zstandard.ZstdCompressor().compress(b"")
    path.write_bytes(path.read_bytes() + empty + zstandard.ZstdCompressor().compress(b"x"))
    _refused(path, r"^appliance_20260101T000000Z\.tar\.zst is damaged: it holds data after its ")


def test_verifying_a_zstd_file_without_a_tar_names_it_as_asked(tmp_path: Path) -> None:
    path = tmp_path / "x.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(b"hello" * 200))
    with pytest.raises(ArchiveError, match=r"^up\.tar\.zst is not an appliance backup: no tar arc"):
        archive.verify(path, label="up.tar.zst")

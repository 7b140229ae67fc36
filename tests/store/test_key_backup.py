"""API keys in backup archives: left out by default (their bytes nowhere in the archive); with a
passphrase sealed as ``keys.enc`` and restored 0600 only with the right passphrase; a changed
byte is refused by the archive's checksum, a changed header (re-checksummed) by AES-GCM; the
``appliance backup`` commands read the passphrase from stdin, never from the command line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import zstandard

from app.binance.signing import Credentials
from app.live import keys
from app.store import archive, restore, secrets_box
from app.store.archive import ArchiveError, Layout
from tests.store.test_archive import TS, _member, _rewrite, check_state, make_state, wipe

API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
API_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
OTHER_KEY, OTHER_SECRET = "otherKEY12345678", "otherSECRET12345678"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    make_state(d)
    keys.save_keys(d, API_KEY, API_SECRET, TS)  # the real writer: 0600 in a 0700 directory
    return d


def _plain(path: Path) -> bytes:
    """The whole archive decompressed: the tar stream, every member's bytes in it."""
    with path.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zin:
        return zin.read()


def _assert_no_keys_in(path: Path) -> None:
    for blob in (path.read_bytes(), _plain(path)):
        for secret in (API_KEY, API_SECRET):
            assert secret.encode() not in blob


def _refused_and_nothing_changed(data: Path, path: Path, passphrase: str, message: str) -> None:
    before = {p: p.read_bytes() for p in (data / "trading.db", keys.keys_path(data))}
    with pytest.raises(ArchiveError, match=message):
        restore.stage(Layout(data, data), path, TS + 1, passphrase)
    assert restore.pending(data) is None
    assert not (data / "restore" / "staged").exists()
    assert not list((data / "backups").glob("*pre-restore*"))
    assert {p: p.read_bytes() for p in before} == before


def test_the_keys_path_is_the_live_keys() -> None:
    assert Layout(Path("/d"), Path("/p")).keys_file == keys.keys_path(Path("/d"))


def test_without_a_passphrase_the_keys_are_left_out_and_nowhere_in_the_archive(
    data: Path,
) -> None:
    info = archive.create(Layout(data, data), TS)
    manifest = archive.verify(info.path, known=archive.SCHEMAS)
    assert archive.KEYS not in manifest.members
    assert archive.KEYS_LEFT_OUT in manifest.left_out
    assert archive.manifest_summary(manifest)["api_keys"] == "left out"
    with tarfile.open(fileobj=io.BytesIO(_plain(info.path))) as tar:
        assert not any("key" in n for n in tar.getnames())
    _assert_no_keys_in(info.path)


def test_round_trip_with_the_passphrase_gives_the_keys_back_0600(data: Path) -> None:
    original = keys.keys_path(data).read_bytes()
    info = archive.create(Layout(data, data), TS, passphrase=PASSPHRASE)
    manifest = archive.verify(info.path, known=archive.SCHEMAS, passphrase=PASSPHRASE)
    sealed = _member(info.path, archive.KEYS)
    assert sealed.startswith(secrets_box.MAGIC)
    member = manifest.members[archive.KEYS]
    assert (member.bytes, member.schema_version) == (len(sealed), None)
    assert archive.KEYS_LEFT_OUT not in manifest.left_out
    _assert_no_keys_in(info.path)  # sealed: the strings are not there in clear

    wipe(data)
    staged = restore.stage(Layout(data, data), info.path, TS + 1, PASSPHRASE)
    assert staged.keys == restore.KEYS_RESTORED
    report = restore.apply_pending_restore(data, data)
    assert report is not None and not report.problems
    assert report.keys == restore.KEYS_RESTORED
    assert restore.STAGED_KEYS in report.replaced
    check_state(data)
    path = keys.keys_path(data)
    assert path.read_bytes() == original
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert keys.load_keys(data) == Credentials(API_KEY, API_SECRET)
    assert not (data / "restore" / "staged").exists()  # the opened copy is gone


def test_restore_replaces_the_keys_and_keeps_the_old_ones_sealed_in_the_pre_restore(
    data: Path,
) -> None:
    layout = Layout(data, data)
    info = archive.create(layout, TS, passphrase=PASSPHRASE)
    keys.save_keys(data, OTHER_KEY, OTHER_SECRET, TS + 1)  # changed after the backup
    replaced = keys.keys_path(data).read_bytes()
    staged = restore.stage(layout, info.path, TS + 60_000_000_000, PASSPHRASE)
    restore.apply_pending_restore(data, data)
    assert keys.load_keys(data) == Credentials(API_KEY, API_SECRET)
    pre = data / "backups" / staged.pre_restore
    archive.verify(pre, passphrase=PASSPHRASE)
    assert secrets_box.open_sealed(_member(pre, archive.KEYS), PASSPHRASE) == replaced


def test_without_the_passphrase_the_rest_is_restored_and_the_keys_are_not(data: Path) -> None:
    layout = Layout(data, data)
    info = archive.create(layout, TS, passphrase=PASSPHRASE)
    keys.save_keys(data, OTHER_KEY, OTHER_SECRET, TS + 1)
    kept = keys.keys_path(data).read_bytes()
    staged = restore.stage(layout, info.path, TS + 1)
    assert staged.keys == restore.KEYS_NOT_RESTORED
    report = restore.apply_pending_restore(data, data)
    assert report is not None and report.keys.startswith("NOT restored")
    check_state(data)
    assert keys.keys_path(data).read_bytes() == kept
    pre = data / "backups" / staged.pre_restore
    assert archive.KEYS not in archive.read_manifest(pre).members  # no passphrase, no keys


def test_a_wrong_passphrase_is_refused_before_anything_is_replaced(data: Path) -> None:
    path = archive.create(Layout(data, data), TS, passphrase=PASSPHRASE).path
    keys.save_keys(data, OTHER_KEY, OTHER_SECRET, TS + 1)
    _refused_and_nothing_changed(data, path, "not it", "wrong passphrase or damaged key file")
    with pytest.raises(ArchiveError, match="wrong passphrase"):
        archive.verify(path, passphrase="not it")


def test_one_byte_changed_in_the_sealed_keys_is_refused_by_the_checksum(data: Path) -> None:
    path = archive.create(Layout(data, data), TS, passphrase=PASSPHRASE).path
    sealed = bytearray(_member(path, archive.KEYS))
    sealed[-1] ^= 0x01
    _rewrite(path, {archive.KEYS: bytes(sealed)})
    _refused_and_nothing_changed(data, path, PASSPHRASE, r"keys\.enc does not match its checksum")


# version, log2(n), r, p, a salt byte, a nonce byte
@pytest.mark.parametrize("offset", [4, 5, 7, 9, 10, secrets_box.HEADER_BYTES - 1])
def test_a_changed_header_checksummed_again_is_refused_by_gcm(data: Path, offset: int) -> None:
    """The archive's checksum agrees (the manifest was rewritten too): only the authenticated
    header stops it."""
    path = archive.create(Layout(data, data), TS, passphrase=PASSPHRASE).path
    sealed = bytearray(_member(path, archive.KEYS))
    sealed[offset] ^= 0x01
    body = json.loads(_member(path, archive.MANIFEST))
    body["members"][archive.KEYS]["sha256"] = hashlib.sha256(sealed).hexdigest()
    manifest = json.dumps(body, indent=1, sort_keys=True).encode()
    _rewrite(path, {archive.MANIFEST: manifest, archive.KEYS: bytes(sealed)})
    archive.verify(path, known=archive.SCHEMAS)  # a well-formed archive...
    _refused_and_nothing_changed(data, path, PASSPHRASE, "wrong passphrase or damaged key file")


def test_the_box_round_trips_and_refuses_what_it_did_not_seal() -> None:
    blob = secrets_box.seal(b"secret bytes", PASSPHRASE)
    assert blob != secrets_box.seal(b"secret bytes", PASSPHRASE)  # fresh salt and nonce
    assert secrets_box.open_sealed(blob, PASSPHRASE) == b"secret bytes"
    for bad in (blob[:-1], blob[:20], b"", b"x" * 100):
        with pytest.raises(secrets_box.SecretBoxError, match="wrong passphrase or damaged"):
            secrets_box.open_sealed(bad, PASSPHRASE)
    with pytest.raises(secrets_box.SecretBoxError, match="empty passphrase"):
        secrets_box.seal(b"x", "")


def test_a_missing_cryptography_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "cryptography.exceptions",
        "cryptography.hazmat.primitives.ciphers.aead",
        "cryptography.hazmat.primitives.kdf.scrypt",
    ):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(secrets_box.SecretBoxError, match="python3-cryptography"):
        secrets_box.seal(b"x", PASSPHRASE)


def _cli(data: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "--data-dir", str(data), "backup", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "APPLIANCE_LOG_LEVEL": "DEBUG"},
    )
    assert "Traceback" not in done.stderr
    for secret in (PASSPHRASE, API_KEY, API_SECRET):
        assert secret not in done.stdout + done.stderr
    return done


def test_cli_includes_the_keys_with_a_passphrase_from_stdin_and_restores_them(data: Path) -> None:
    assert _cli(data, "create", "--include-keys", stdin="short\n").returncode == 1
    made = _cli(data, "create", "--include-keys", stdin=PASSPHRASE + "\n")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["api_keys"].startswith("included, encrypted")
    path = Path(out["backup"])
    _assert_no_keys_in(path)
    checked = _cli(data, "verify", "--check-keys", str(path), stdin=PASSPHRASE + "\n")
    assert "the passphrase opens them" in checked.stdout

    keys.save_keys(data, OTHER_KEY, OTHER_SECRET, TS + 1)
    wrong = _cli(data, "restore", str(path), stdin="not the passphrase\n")
    assert wrong.returncode == 1
    assert "wrong passphrase or damaged key file" in wrong.stderr
    assert restore.pending(data) is None
    assert keys.load_keys(data) == Credentials(OTHER_KEY, OTHER_SECRET)

    without = _cli(data, "restore", str(path), stdin="")  # end of input: no passphrase
    assert without.returncode == 0, without.stderr
    assert "API keys were NOT restored" in without.stderr
    assert keys.load_keys(data) == Credentials(OTHER_KEY, OTHER_SECRET)

    done = _cli(data, "restore", str(path), stdin=PASSPHRASE + "\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["api_keys"] == restore.KEYS_RESTORED
    assert keys.load_keys(data) == Credentials(API_KEY, API_SECRET)
    assert keys.keys_path(data).stat().st_mode & 0o777 == 0o600


def test_cli_create_leaves_the_keys_out_by_default(data: Path) -> None:
    made = _cli(data, "create")
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["api_keys"].startswith("left out")
    _assert_no_keys_in(Path(out["backup"]))

"""Staging a bundle for the slot writer: the signed bytes, unpacked and checked, or nothing."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from app.update import bundle, stage
from app.update.bundle import BundleError


def _make(tmp: Path, root: bytes, uki: bytes = b"MZ" + bytes(5000)) -> tuple[Path, bytes]:
    (tmp / "root.img").write_bytes(root)
    (tmp / "uki.efi").write_bytes(uki)
    public = bundle.generate_key(tmp / "k.pem")
    out = tmp / "b.update"
    bundle.write_bundle(
        out,
        version="7.1",
        root_image=tmp / "root.img",
        uki=tmp / "uki.efi",
        private_key=tmp / "k.pem",
    )
    return out, public


def test_a_bundle_is_staged_as_sysupdate_names_it(tmp_path: Path) -> None:
    rng = random.Random(5)
    # 64 MiB of zeros between data: a few bytes of zstd that must not unpack in one piece.
    root = bytes(rng.getrandbits(8) for _ in range(30_000)) + bytes(64 << 20) + b"end"
    path, public = _make(tmp_path, root)
    dest = tmp_path / "staged"
    m = stage.stage(path, public, dest)
    assert m.version == "7.1"
    assert sorted(p.name for p in dest.iterdir()) == [
        "appliance_7.1.efi",
        "appliance_7.1.root.raw",
    ]
    assert (dest / "appliance_7.1.root.raw").read_bytes() == root
    assert (dest / "appliance_7.1.efi").read_bytes() == b"MZ" + bytes(5000)


def test_a_tampered_bundle_stages_nothing(tmp_path: Path) -> None:
    path, public = _make(tmp_path, os.urandom(200_000))
    m = bundle.verify_bundle(path, public)
    data = bytearray(path.read_bytes())
    data[m.uki.offset + 100] ^= 0xFF
    path.write_bytes(data)
    dest = tmp_path / "staged"
    with pytest.raises(BundleError, match=r"uki\.efi does not match its checksum"):
        stage.stage(path, public, dest)
    assert not dest.exists()  # refused before anything was made


def test_a_payload_changed_after_the_check_is_refused_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy hashes what it reads: a bundle rewritten between check and copy is caught."""
    path, public = _make(tmp_path, os.urandom(300_000))
    real = bundle.verify_bundle

    def verify_then_tamper(p: Path, key: bytes) -> bundle.Manifest:
        m = real(p, key)
        with p.open("r+b") as f:
            f.seek(m.root.offset + m.root.size - 10)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 1]))
        return m

    monkeypatch.setattr(bundle, "verify_bundle", verify_then_tamper)
    dest = tmp_path / "staged"
    with pytest.raises(BundleError, match=r"root\.raw\.zst changed while it was being copied"):
        stage.stage(path, public, dest)
    assert list(dest.iterdir()) == []


def test_a_manifest_that_lies_about_the_unpacked_image_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Signed, but the installed digest is not what the system image unpacks to."""
    root = os.urandom(100_000)
    (tmp_path / "root.img").write_bytes(root)
    (tmp_path / "uki.efi").write_bytes(b"MZ")
    public = bundle.generate_key(tmp_path / "k.pem")
    real = bundle.Manifest.to_json

    def lying(self: bundle.Manifest) -> bytes:
        doc = json.loads(real(self))
        doc["root"]["installed_sha256"] = hashlib.sha256(b"something else").hexdigest()
        return json.dumps(doc).encode()

    monkeypatch.setattr(bundle.Manifest, "to_json", lying)
    bundle.write_bundle(
        tmp_path / "b",
        version="1",
        root_image=tmp_path / "root.img",
        uki=tmp_path / "uki.efi",
        private_key=tmp_path / "k.pem",
    )
    monkeypatch.undo()
    with pytest.raises(BundleError, match="does not unpack to what its manifest says"):
        stage.stage(tmp_path / "b", public, tmp_path / "staged")
    assert list((tmp_path / "staged").iterdir()) == []


def test_not_enough_space_is_refused_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, public = _make(tmp_path, os.urandom(10_000))
    real = shutil.disk_usage
    monkeypatch.setattr(
        shutil,
        "disk_usage",
        lambda p: real(p)._replace(free=100 << 20),  # the board's data partition, nearly full
    )
    with pytest.raises(BundleError, match=r"not enough space .* 100 MiB are free"):
        stage.stage(path, public, tmp_path / "staged")
    assert list((tmp_path / "staged").iterdir()) == []

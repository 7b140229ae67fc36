"""Signed update bundles: what is accepted, and every way of refusing one, with its message."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard

from app import cli
from app.update import bundle, gpt
from app.update.bundle import BundleError


@dataclass(frozen=True)
class Built:
    path: Path
    manifest: bundle.Manifest
    public: bytes
    private: Path
    root: bytes
    uki: bytes


def _build(tmp: Path, version: str = "1.2.3", key: Path | None = None) -> Built:
    rng = random.Random(7)
    # A file system image is mostly zeros with some data: both, so compression does something.
    root = bytes(rng.getrandbits(8) for _ in range(50_000)) + bytes(300_000)
    uki = b"MZ" + bytes(rng.getrandbits(8) for _ in range(20_001))
    (tmp / "root.img").write_bytes(root)
    (tmp / "uki.efi").write_bytes(uki)
    private = key or tmp / "signing.pem"
    public = bundle.public_pem_of(private) if key else bundle.generate_key(private)
    out = tmp / f"appliance-{version}.bundle"
    manifest = bundle.write_bundle(
        out, version=version, root_image=tmp / "root.img", uki=tmp / "uki.efi", private_key=private
    )
    return Built(out, manifest, public, private, root, uki)


@pytest.fixture
def built(tmp_path: Path) -> Built:
    return _build(tmp_path)


def _refusal(path: Path, public: bytes) -> str:
    with pytest.raises(BundleError) as info:
        bundle.verify_bundle(path, public)
    return str(info.value)


def test_a_bundle_verifies_and_its_payloads_are_where_the_manifest_says(built: Built) -> None:
    m = bundle.verify_bundle(built.path, built.public)
    assert (m.version, m.key_id) == ("1.2.3", bundle.key_id(built.public))
    assert (m.built_ts_ms, m.root.sha256, m.uki.sha256) == (
        built.manifest.built_ts_ms,
        built.manifest.root.sha256,
        built.manifest.uki.sha256,
    )
    data = built.path.read_bytes()
    compressed = data[m.root.offset : m.root.offset + m.root.size]
    assert zstandard.ZstdDecompressor().decompress(compressed) == built.root
    assert hashlib.sha256(built.root).hexdigest() == m.root.installed_sha256
    assert m.root.installed_size == len(built.root) and m.root.size < len(built.root) // 4
    assert data[m.uki.offset : m.uki.offset + m.uki.size] == built.uki
    assert m.uki.installed_sha256 == hashlib.sha256(built.uki).hexdigest()
    # The members are the documented ones, in order, and the sums check with sha256sum's format.
    with tarfile.open(built.path) as tar:
        assert tar.getnames() == list(bundle.MEMBERS)
        sums = tar.extractfile(bundle.SUMS).read().decode()  # type: ignore[union-attr]
    listed = {name: digest for digest, name in (line.split("  ") for line in sums.splitlines())}
    assert listed[bundle.ROOT] == hashlib.sha256(compressed).hexdigest()
    assert set(listed) == {bundle.MANIFEST, bundle.ROOT, bundle.UKI}


def test_the_signing_key_is_private_to_its_owner(built: Built) -> None:
    assert built.private.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        bundle.generate_key(built.private)  # never overwrites a key


def test_a_bundle_signed_with_another_key_is_refused(built: Built, tmp_path: Path) -> None:
    other = bundle.generate_key(tmp_path / "other.pem")
    message = _refusal(built.path, other)
    assert "does not match this appliance's update key" in message
    assert bundle.key_id(other) in message


def _rewrite(src: Path, dst: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_an_unsigned_bundle_is_refused(built: Built, tmp_path: Path) -> None:
    members = _members(built.path)
    del members[bundle.SIG]
    _rewrite(built.path, tmp_path / "unsigned", members)
    assert _refusal(tmp_path / "unsigned", built.public) == (
        f"refused: not signed: {bundle.MANIFEST} where {bundle.SIG} must be"
    )
    _rewrite(built.path, tmp_path / "sums-only", {bundle.SUMS: members[bundle.SUMS]})
    assert "not signed: the bundle has no SHA256SUMS.sig" in _refusal(
        tmp_path / "sums-only", built.public
    )


def test_the_same_members_repacked_verify(built: Built, tmp_path: Path) -> None:
    # The container is checked for damage, not for who made it: tar's own layout verifies.
    _rewrite(built.path, tmp_path / "repacked", _members(built.path))
    assert bundle.verify_bundle(tmp_path / "repacked", built.public).version == "1.2.3"


def test_a_payload_swapped_for_another_signed_one_is_refused(built: Built, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    other = _build(second, version="9.9.9", key=built.private)
    members = _members(built.path)
    members[bundle.UKI] = _members(other.path)[bundle.UKI] + b"x"
    _rewrite(built.path, tmp_path / "mixed", members)
    assert _refusal(tmp_path / "mixed", built.public) == (
        f"refused: {bundle.UKI} does not match its checksum in {bundle.SUMS} "
        "(changed after signing, or damaged in transfer)"
    )


@pytest.mark.parametrize(
    ("member", "expect"),
    [
        (bundle.SUMS, "does not match this appliance's update key"),
        (bundle.SIG, "does not match this appliance's update key"),
        (bundle.MANIFEST, "manifest.json does not match its checksum"),
        (bundle.ROOT, "root.raw.zst does not match its checksum"),
        (bundle.UKI, "uki.efi does not match its checksum"),
    ],
)
def test_one_byte_changed_in_any_member_is_refused_naming_it(
    built: Built, tmp_path: Path, member: str, expect: str
) -> None:
    with tarfile.open(built.path) as tar:
        info = tar.getmember(member)
    data = bytearray(built.path.read_bytes())
    data[info.offset_data + info.size // 2] ^= 0x01
    (tmp_path / "tampered").write_bytes(data)
    assert expect in _refusal(tmp_path / "tampered", built.public)


def test_any_single_byte_changed_anywhere_is_refused(built: Built, tmp_path: Path) -> None:
    """Headers, data, padding and trailer: a sample of positions over the whole file."""
    data = built.path.read_bytes()
    with tarfile.open(built.path) as tar:
        infos = tar.getmembers()
    positions = {0, len(data) - 1}
    for info in infos:
        positions |= {info.offset, info.offset + 100, info.offset + 148, info.offset_data}
        positions |= {info.offset_data + info.size - 1, info.offset_data + info.size}
    positions |= set(random.Random(3).sample(range(len(data)), 150))
    tampered = tmp_path / "tampered"
    for pos in sorted(positions):
        changed = bytearray(data)
        changed[pos] ^= 0x20
        tampered.write_bytes(changed)
        with pytest.raises(BundleError, match=r"^refused: "):
            bundle.verify_bundle(tampered, built.public)


def test_cut_short_or_with_data_appended_is_refused(built: Built, tmp_path: Path) -> None:
    data = built.path.read_bytes()
    m = built.manifest
    (tmp_path / "cut").write_bytes(data[: m.uki.offset + 10])
    assert _refusal(tmp_path / "cut", built.public).startswith("refused: ")
    (tmp_path / "long").write_bytes(data + b"\0" * 512 * 30)
    assert "bytes after the last member" in _refusal(tmp_path / "long", built.public)
    (tmp_path / "tail").write_bytes(data[:-1] + b"!")
    assert "data after the end of the archive" in _refusal(tmp_path / "tail", built.public)


def test_not_a_bundle_at_all(built: Built, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(os.urandom(4096))
    assert "is not an update bundle" in _refusal(tmp_path / "model.onnx", built.public)
    (tmp_path / "empty").write_bytes(b"")
    assert "is not an update bundle" in _refusal(tmp_path / "empty", built.public)


def test_a_link_in_place_of_a_payload_is_refused(built: Built, tmp_path: Path) -> None:
    members = _members(built.path)
    with tarfile.open(tmp_path / "link", "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if name == bundle.UKI:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert _refusal(tmp_path / "link", built.public) == (
        "refused: uki.efi is not a plain file in the archive"
    )


def test_a_bad_version_is_refused_at_build(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="letters, digits"):
        _build(tmp_path, version="1.0/../../x")


def test_the_cli_verifies_and_refuses(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "key.pub").write_bytes(built.public)
    assert cli.main(["update", "verify", str(built.path), "--key", str(tmp_path / "key.pub")]) == 0
    assert "version 1.2.3" in capsys.readouterr().out
    data = bytearray(built.path.read_bytes())
    data[bundle.verify_bundle(built.path, built.public).root.offset + 5] ^= 1
    (tmp_path / "bad").write_bytes(data)
    assert (
        cli.main(["update", "verify", str(tmp_path / "bad"), "--key", str(tmp_path / "key.pub")])
        == 2
    )
    err = capsys.readouterr().err
    assert "root.raw.zst does not match its checksum" in err and "Traceback" not in err


def _gpt_image(path: Path, parts: list[tuple[uuid.UUID, int, int]]) -> None:
    """A disk image with a primary GPT (no CRCs: the reader does not check them, sfdisk would)."""
    with path.open("wb") as f:
        f.truncate(8 << 20)
        f.seek(512)
        header = bytearray(92)
        header[:8] = b"EFI PART"
        header[72:88] = struct.pack("<QII", 2, 128, 128)
        f.write(header)
        f.seek(2 * 512)
        for type_uuid, first, count in parts:
            entry = bytearray(128)
            entry[:16] = type_uuid.bytes_le
            entry[32:48] = struct.pack("<QQ", first, first + count - 1)
            f.write(entry)


def test_the_cli_bundles_the_system_partition_of_a_disk_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "disk.raw"
    esp = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
    _gpt_image(image, [(esp, 2048, 2048), (gpt.ROOT_RISCV64, 4096, 8192)])
    with image.open("r+b") as f:
        f.seek(4096 * 512)
        f.write(b"ext4-ish" * 100)
    assert gpt.find_partition(image) == gpt.Extent(4096 * 512, 8192 * 512)
    (tmp_path / "uki.efi").write_bytes(b"MZ" * 1000)
    assert (
        cli.main(["update", "keygen", str(tmp_path / "k.pem"), "--public", str(tmp_path / "k.pub")])
        == 0
    )
    args = ["update", "bundle", "--image", str(image), "--uki", str(tmp_path / "uki.efi")]
    args += ["--version", "2", "--key", str(tmp_path / "k.pem"), "-o", str(tmp_path / "b")]
    assert cli.main(args) == 0
    m = bundle.verify_bundle(tmp_path / "b", (tmp_path / "k.pub").read_bytes())
    root = image.read_bytes()[4096 * 512 : (4096 + 8192) * 512]
    assert (m.root.installed_size, m.root.installed_sha256) == (
        len(root),
        hashlib.sha256(root).hexdigest(),
    )
    with pytest.raises(gpt.GptError, match="no GPT header"):
        gpt.find_partition(tmp_path / "uki.efi")
    capsys.readouterr()

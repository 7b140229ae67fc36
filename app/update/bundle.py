"""Update bundles: a new system partition and its boot image, signed by the builder.

A bundle is an uncompressed ustar archive of exactly these members, in this order::

    SHA256SUMS        "<sha256>  <name>" for each of the three files below (sha256sum's format)
    SHA256SUMS.sig    the Ed25519 signature of SHA256SUMS (64 bytes) by the builder's key
    manifest.json     version, key id, and for each payload its size and digest once installed
    root.raw.zst      the system partition's file system image, zstd-compressed
    uki.efi           the unified kernel image that boots it

Why this shape: the signature covers one small file, so it is checked before a single byte of the
payload is read, and SHA256SUMS then pins every other member (``sha256sum -c`` works on an
unpacked bundle). The order is fixed so that a verifier never parses anything large before the
signature holds. Verification is strict about the container too: only regular ustar members with
these names, zero padding and a zero trailer, nothing after it; so changing any one byte of a
bundle, data or not, gets it refused, each time with a message that names what was wrong.

The builder's private key never enters the repository: ``just image`` makes a throwaway one in its
cache for CI, or signs with the owner's (``APPLIANCE_UPDATE_KEY``); the public key is baked into
the image (:data:`TRUSTED_KEY`), and an appliance installs only what that key signed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from app.errors import OperatorError

SUMS = "SHA256SUMS"
SIG = "SHA256SUMS.sig"
MANIFEST = "manifest.json"
ROOT = "root.raw.zst"
UKI = "uki.efi"
MEMBERS = (SUMS, SIG, MANIFEST, ROOT, UKI)
SIGNED = (MANIFEST, ROOT, UKI)
FORMAT = 1
# Where the image keeps the public half of the key its updates must be signed with.
TRUSTED_KEY = Path("/usr/lib/appliance/update-key.pem")

_BLOCK = 512
_CHUNK = 1 << 20
_SMALL_MAX = 64 * 1024  # SHA256SUMS and manifest.json: a few hundred bytes in practice
_PAYLOAD_MAX = 16 << 30  # a system partition is a few GiB at most (the slots are fixed-size)
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+~_-]{0,63}")
_SUMS_LINE = re.compile(r"([0-9a-f]{64})  ([A-Za-z0-9._-]{1,64})")


class BundleError(OperatorError):
    """The bundle is refused: unsigned, signed by another key, damaged or not a bundle."""


@dataclass(frozen=True, slots=True)
class Payload:
    """One payload member: where its bytes are in the bundle and what they are once installed."""

    name: str
    size: int  # bytes in the bundle
    sha256: str  # of the bytes in the bundle (as in SHA256SUMS)
    installed_size: int  # after decompression (root) or as is (uki)
    installed_sha256: str
    offset: int = 0  # of the member's data in the bundle file (0 until read from one)


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str
    key_id: str
    built_ts_ms: int
    root: Payload
    uki: Payload

    def to_json(self) -> bytes:
        def payload(p: Payload) -> dict[str, Any]:
            return {
                "name": p.name,
                "size": p.size,
                "sha256": p.sha256,
                "installed_size": p.installed_size,
                "installed_sha256": p.installed_sha256,
            }

        doc = {
            "format": FORMAT,
            "version": self.version,
            "key_id": self.key_id,
            "built_ts_ms": self.built_ts_ms,
            "root": payload(self.root),
            "uki": payload(self.uki),
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"


# --- keys -------------------------------------------------------------------------------------


def key_id(public_pem: bytes) -> str:
    """16 hex digits naming a public key: shown by the panel, written in every manifest."""
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(public_pem)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_key(private_path: Path) -> bytes:
    """A new Ed25519 signing key in ``private_path`` (mode 0600); returns the public key's PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_pem_of(private_path)


def public_pem_of(private_path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = _load_private(private_path)
    pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


def _load_private(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"{path}: not an Ed25519 private key")
    return key


def _verify_signature(public_pem: bytes, signature: bytes, data: bytes) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError("the appliance's update key is not an Ed25519 public key")
    try:
        key.verify(signature, data)
    except InvalidSignature:
        raise BundleError(
            f"refused: the signature does not match this appliance's update key "
            f"{key_id(public_pem)} (signed with another key, or {SUMS} was changed after signing)"
        ) from None


# --- writing ----------------------------------------------------------------------------------


def _digest(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _compress(src: Path, dst: Path, level: int) -> tuple[int, str]:
    """zstd-compress ``src`` into ``dst``; returns the size and digest of ``src``."""
    import zstandard

    h = hashlib.sha256()
    size = 0
    cctx = zstandard.ZstdCompressor(level=level, threads=-1, write_content_size=True)
    with (
        src.open("rb") as fin,
        dst.open("wb") as fout,
        cctx.stream_writer(fout, size=src.stat().st_size, closefd=False) as writer,
    ):
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
            writer.write(chunk)
    return size, h.hexdigest()


def write_bundle(
    out: Path,
    *,
    version: str,
    root_image: Path,
    uki: Path,
    private_key: Path,
    level: int = 6,
    ts_ms: int | None = None,
) -> Manifest:
    """Write a signed bundle of ``root_image`` (a file system image) and ``uki`` to ``out``."""
    if not _VERSION.fullmatch(version):
        raise BundleError(f"version {version!r}: letters, digits and . + ~ _ - only")
    key = _load_private(private_key)
    pub = public_pem_of(private_key)
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=out.parent) as tmp:
        work = Path(tmp)
        raw_size, raw_sha = _compress(root_image, work / ROOT, level)
        root_size, root_sha = _digest(work / ROOT)
        uki_size, uki_sha = _digest(uki)
        manifest = Manifest(
            version=version,
            key_id=key_id(pub),
            built_ts_ms=ts_ms if ts_ms is not None else time.time_ns() // 1_000_000,
            root=Payload(ROOT, root_size, root_sha, raw_size, raw_sha),
            uki=Payload(UKI, uki_size, uki_sha, uki_size, uki_sha),
        )
        (work / MANIFEST).write_bytes(manifest.to_json())
        digests = {MANIFEST: _digest(work / MANIFEST)[1], ROOT: root_sha, UKI: uki_sha}
        sums = "".join(f"{digests[n]}  {n}\n" for n in SIGNED)
        (work / SUMS).write_text(sums)
        (work / SIG).write_bytes(key.sign(sums.encode()))
        sources = {n: work / n for n in (SUMS, SIG, MANIFEST, ROOT)} | {UKI: uki}
        partial = work / "bundle.tar"
        with tarfile.open(partial, "w", format=tarfile.USTAR_FORMAT) as tar:
            for name in MEMBERS:
                info = tarfile.TarInfo(name)
                info.size = sources[name].stat().st_size
                info.mode = 0o644
                info.mtime = manifest.built_ts_ms // 1000
                with sources[name].open("rb") as f:
                    tar.addfile(info, f)
        os.replace(partial, out)
    return manifest


# --- verifying --------------------------------------------------------------------------------


def _members(f: IO[bytes], path: Path) -> Iterator[tarfile.TarInfo]:
    """The archive's members, refusing anything but plain ustar files with expected names."""
    try:
        tar = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115 - closed with ``f``
    except tarfile.TarError as exc:
        raise BundleError(f"refused: {path.name} is not an update bundle ({exc})") from None
    for i, expected in enumerate(MEMBERS):
        try:
            info = tar.next()
        except tarfile.TarError as exc:
            raise BundleError(f"refused: damaged bundle: member {i + 1} ({exc})") from None
        if info is None:
            what = "not signed" if expected == SIG else "incomplete"
            raise BundleError(f"refused: {what}: the bundle has no {expected}")
        if info.name != expected:
            if expected == SIG:
                raise BundleError(f"refused: not signed: {info.name} where {SIG} must be")
            raise BundleError(f"refused: member {i + 1} is {info.name!r}, expected {expected}")
        if not info.isreg() or info.pax_headers:
            raise BundleError(f"refused: {info.name} is not a plain file in the archive")
        yield info


def _read_member(f: IO[bytes], info: tarfile.TarInfo, limit: int) -> bytes:
    if info.size > limit:
        raise BundleError(f"refused: {info.name} is {info.size} bytes (at most {limit})")
    f.seek(info.offset_data)
    data = f.read(info.size)
    if len(data) != info.size:
        raise BundleError(f"refused: {info.name} is cut short")
    return data


def _hash_member(f: IO[bytes], info: tarfile.TarInfo) -> str:
    if info.size > _PAYLOAD_MAX:
        raise BundleError(f"refused: {info.name} is {info.size} bytes (at most {_PAYLOAD_MAX})")
    f.seek(info.offset_data)
    h = hashlib.sha256()
    left = info.size
    while left:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            raise BundleError(f"refused: {info.name} is cut short")
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def _check_padding(f: IO[bytes], infos: list[tarfile.TarInfo], size: int) -> None:
    """Bytes that belong to no member must be zero, and the archive must end at its trailer."""
    for info in infos:
        end = info.offset_data + info.size
        pad = -info.size % _BLOCK
        f.seek(end)
        if f.read(pad).strip(b"\0"):
            raise BundleError(f"refused: damaged bundle: bytes after {info.name} are not zero")
    end = infos[-1].offset_data + infos[-1].size + (-infos[-1].size % _BLOCK)
    trailer = size - end
    if trailer < 2 * _BLOCK or trailer > 2 * _BLOCK + tarfile.RECORDSIZE:
        raise BundleError(f"refused: damaged bundle: {trailer} bytes after the last member")
    f.seek(end)
    while chunk := f.read(_CHUNK):
        if chunk.strip(b"\0"):
            raise BundleError("refused: damaged bundle: data after the end of the archive")


def _parse_sums(data: bytes) -> dict[str, str]:
    sums: dict[str, str] = {}
    try:
        lines = data.decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise BundleError(f"refused: {SUMS} is not text") from None
    for line in lines:
        m = _SUMS_LINE.fullmatch(line)
        if not m or m[2] in sums:
            raise BundleError(f"refused: {SUMS}: bad line {line[:80]!r}")
        sums[m[2]] = m[1]
    if set(sums) != set(SIGNED):
        raise BundleError(f"refused: {SUMS} lists {sorted(sums)}, expected {list(SIGNED)}")
    return sums


def _parse_manifest(data: bytes, offsets: dict[str, int]) -> Manifest:
    try:
        doc = json.loads(data)
        if doc["format"] != FORMAT:
            raise BundleError(f"refused: bundle format {doc['format']} (this appliance reads 1)")

        def payload(d: dict[str, Any], name: str) -> Payload:
            if d["name"] != name:
                raise ValueError(f"payload {d['name']!r} where {name} must be")
            p = Payload(
                name=name,
                size=int(d["size"]),
                sha256=str(d["sha256"]),
                installed_size=int(d["installed_size"]),
                installed_sha256=str(d["installed_sha256"]),
                offset=offsets[name],
            )
            if not re.fullmatch(r"[0-9a-f]{64}", p.installed_sha256) or p.installed_size <= 0:
                raise ValueError(f"{name}: bad installed size or digest")
            return p

        manifest = Manifest(
            version=str(doc["version"]),
            key_id=str(doc["key_id"]),
            built_ts_ms=int(doc["built_ts_ms"]),
            root=payload(doc["root"], ROOT),
            uki=payload(doc["uki"], UKI),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"refused: {MANIFEST} is malformed ({exc})") from None
    if not _VERSION.fullmatch(manifest.version):
        raise BundleError(f"refused: {MANIFEST}: bad version {manifest.version!r}")
    return manifest


def verify_bundle(path: Path, trusted_pem: bytes) -> Manifest:
    """Check ``path`` against the public key ``trusted_pem``; writes nothing.

    In order: the archive's first two members, the signature of SHA256SUMS, then every listed
    member's digest, the manifest against the members, and the container's padding. The
    returned manifest carries each payload's offset in the file, for the writer that installs it
    (which hashes what it reads again: the file may change between this check and that copy).
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        members = _members(f, path)
        sums_info = next(members)
        sums_bytes = _read_member(f, sums_info, _SMALL_MAX)
        sig_info = next(members)
        signature = _read_member(f, sig_info, 64)
        _verify_signature(trusted_pem, signature, sums_bytes)
        sums = _parse_sums(sums_bytes)
        infos = [sums_info, sig_info]
        manifest_bytes = b""
        for info in members:
            infos.append(info)
            if info.name == MANIFEST:
                manifest_bytes = _read_member(f, info, _SMALL_MAX)
                digest = hashlib.sha256(manifest_bytes).hexdigest()
            else:
                digest = _hash_member(f, info)
            if digest != sums[info.name]:
                raise BundleError(
                    f"refused: {info.name} does not match its checksum in {SUMS} "
                    "(changed after signing, or damaged in transfer)"
                )
        _check_padding(f, infos, size)
    by_name = {i.name: i for i in infos}
    manifest = _parse_manifest(manifest_bytes, {n: by_name[n].offset_data for n in (ROOT, UKI)})
    for p in (manifest.root, manifest.uki):
        if (p.size, p.sha256) != (by_name[p.name].size, sums[p.name]):
            raise BundleError(f"refused: {MANIFEST} disagrees with {p.name}'s size or checksum")
    if manifest.uki.installed_sha256 != manifest.uki.sha256:
        raise BundleError(f"refused: {MANIFEST}: {UKI} is installed as it is")
    return manifest

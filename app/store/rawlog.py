"""Raw frames, the recording's source of truth: encoding, and reading them back in order.

A block is one writer batch: records ``<ts_recv_ns: int64 LE><length: uint32 LE><frame bytes>``
concatenated and compressed as one zstd frame. Length-prefixing (rather than one frame a line)
keeps malformed frames, which may contain anything, recoverable byte for byte.

Files are the weekly market databases (``market_<year>_<week>.db``) or their verified backups
(``.db.zst``); :func:`iter_frames` reads both, so replay, datasets and backtests see exactly what
the engine saw.
"""

from __future__ import annotations

import sqlite3
import struct
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import zstandard

CODEC = "zstd-lp1"
_HEADER = struct.Struct("<qI")
# Level 3 is zstd's default: ~0.1 ms per 2,000-frame block here, well off the hot path.
_LEVEL = 3


def encode_block(frames: Sequence[tuple[int, bytes]]) -> bytes:
    """Compress (ts_recv_ns, frame) records into one block body."""
    parts: list[bytes] = []
    pack = _HEADER.pack
    for ts_ns, frame in frames:
        parts.append(pack(ts_ns, len(frame)))
        parts.append(frame)
    return zstandard.ZstdCompressor(level=_LEVEL).compress(b"".join(parts))


def decode_block(body: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield the (ts_recv_ns, frame) records of one block body."""
    data = zstandard.ZstdDecompressor().decompress(body)
    view = memoryview(data)
    offset, end, size = 0, len(data), _HEADER.size
    while offset < end:
        if offset + size > end:
            raise ValueError(f"truncated raw block: header at byte {offset} of {end}")
        ts_ns, length = _HEADER.unpack_from(view, offset)
        offset += size
        if offset + length > end:
            raise ValueError(f"truncated raw block: frame at byte {offset} of {end}")
        yield ts_ns, bytes(view[offset : offset + length])
        offset += length


def iter_frames(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield every recorded (ts_recv_ns, raw frame) of a market database or its ``.zst`` backup."""
    if path.name.endswith(".zst"):
        with tempfile.TemporaryDirectory(prefix="rawlog-") as tmp:
            plain = Path(tmp) / path.name.removesuffix(".zst")
            decompress_file(path, plain)
            yield from iter_frames(plain)
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        # By time, then as written: the recorder writes blocks in time order, and history that
        # ``appliance download`` imported later (app/store/imports.py, never overlapping other
        # frames) takes its place in time rather than after them.
        rows = conn.execute("SELECT codec, body FROM raw_blocks ORDER BY ts_first_ns, id")
        for codec, body in rows:
            if codec != CODEC:
                raise ValueError(f"{path}: unknown raw block codec {codec!r}")
            yield from decode_block(body)
    finally:
        conn.close()


def compress_file(src: Path, dst: Path) -> None:
    """Stream-compress ``src`` to ``dst`` with zstd (multi-GB weeks never sit in memory)."""
    cctx = zstandard.ZstdCompressor(level=_LEVEL, threads=-1)
    with src.open("rb") as fin, dst.open("wb") as fout:
        cctx.copy_stream(fin, fout)


def decompress_file(src: Path, dst: Path) -> None:
    """Stream-decompress a zstd file."""
    with src.open("rb") as fin, dst.open("wb") as fout:
        zstandard.ZstdDecompressor().copy_stream(fin, fout)

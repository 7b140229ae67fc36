"""Is a zstd file whole? Its frames walked end to end by their headers, nothing decompressed.

python-zstandard's streaming readers (``stream_reader``, ``copy_stream``) return a short read, not
an error, when a file stops inside a frame: an archive cut off in its last few kilobytes would
unpack member after member and only the final bytes would be missing, unnoticed. Walking the frame
format (RFC 8878, section 3.1) costs one seek per 128 KiB block and tells a truncated file, a file
with bytes after its end and a file that is not zstd at all apart, each with its own message.
The content itself (and the frame's checksum) is checked by the reader that decompresses it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

MAGIC = b"\x28\xb5\x2f\xfd"
_SKIPPABLE_LOW, _SKIPPABLE_HIGH = 0x184D2A50, 0x184D2A5F
_FCS_BYTES = (0, 2, 4, 8)  # by Frame_Content_Size_flag (0 means 1 byte in a single segment)
_DICT_BYTES = (0, 1, 2, 4)
_RESERVED_BLOCK = 3


class FrameError(ValueError):
    """The file is not made of whole zstd frames; ``kind`` is ``foreign``, ``truncated`` or
    ``damaged``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass(frozen=True)
class Frames:
    """What the walk found: how many zstd frames (skippable ones not counted), where the first
    ends."""

    count: int
    first_end: int


def _read(handle: BinaryIO, n: int, what: str) -> bytes:
    data = handle.read(n)
    if len(data) < n:
        raise FrameError("truncated", f"it ends inside {what}")
    return data


def _skip(handle: BinaryIO, n: int, size: int, what: str) -> None:
    end = handle.tell() + n
    if end > size:
        raise FrameError("truncated", f"it ends inside {what}")
    handle.seek(end)


def _frame(handle: BinaryIO, size: int) -> None:
    """One zstd frame after its magic number: header, blocks up to the last, checksum."""
    (descriptor,) = _read(handle, 1, "a frame header")
    if descriptor & 0x08:
        raise FrameError("damaged", "a frame header has its reserved bit set")
    single_segment = bool(descriptor & 0x20)
    fcs = _FCS_BYTES[descriptor >> 6] or (1 if single_segment else 0)
    header = (0 if single_segment else 1) + _DICT_BYTES[descriptor & 0x03] + fcs
    _skip(handle, header, size, "a frame header")
    last = False
    while not last:
        block = int.from_bytes(_read(handle, 3, "a block header"), "little")
        last, kind, length = bool(block & 1), (block >> 1) & 0x03, block >> 3
        if kind == _RESERVED_BLOCK:
            raise FrameError("damaged", "a block has the reserved type")
        _skip(handle, 1 if kind == 1 else length, size, "a block")
    if descriptor & 0x04:
        _skip(handle, 4, size, "the frame's checksum")


def walk(path: os.PathLike[str] | str) -> Frames:
    """Walk every frame of ``path``; raise :class:`FrameError` unless the file is whole zstd."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            raise FrameError("foreign", "it is empty")
        count, first_end = 0, 0
        while handle.tell() < size:
            magic = handle.read(4)
            number = int.from_bytes(magic.ljust(4, b"\0"), "little")
            if magic == MAGIC:
                _frame(handle, size)
                count += 1
                first_end = first_end or handle.tell()
            elif len(magic) == 4 and _SKIPPABLE_LOW <= number <= _SKIPPABLE_HIGH:
                length = int.from_bytes(_read(handle, 4, "a skippable frame"), "little")
                _skip(handle, length, size, "a skippable frame")
            elif count == 0:
                raise FrameError("foreign", "it is not zstd-compressed")
            else:
                at = handle.tell() - len(magic)
                raise FrameError("damaged", f"{size - at} bytes after its end are not zstd")
    if count == 0:
        raise FrameError("foreign", "it holds no zstd frame")
    return Frames(count, first_end)

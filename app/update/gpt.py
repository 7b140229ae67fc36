"""Find a partition in a GPT disk image: where the build's system partition starts and ends.

Only the primary header and entry array are read (the backup copy at the disk's end is the
partitioning tool's business). Offsets are bytes, for ``dd`` and for slicing the image.
"""

from __future__ import annotations

import struct
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

# The Discoverable Partitions Specification's root type for riscv64 (mkosi.repart's Type=root).
ROOT_RISCV64 = uuid.UUID("72ec70a6-cf74-40e6-bd49-4bda08e8f224")
SECTOR = 512  # image/mkosi.conf: SectorSize=512


class GptError(ValueError):
    """The file is not a GPT disk image, or has no partition of the type asked for."""


@dataclass(frozen=True, slots=True)
class Extent:
    offset: int
    length: int


def find_partition(image: Path, type_uuid: uuid.UUID = ROOT_RISCV64) -> Extent:
    """The first partition of ``type_uuid`` in ``image``."""
    with image.open("rb") as f:
        f.seek(SECTOR)
        header = f.read(92)
        if len(header) < 92 or header[:8] != b"EFI PART":
            raise GptError(f"{image}: no GPT header at byte {SECTOR}")
        entries_lba, count, entry_size = struct.unpack("<QII", header[72:88])
        if not 128 <= entry_size <= 4096 or count > 1024:
            raise GptError(f"{image}: implausible GPT ({count} entries of {entry_size} bytes)")
        f.seek(entries_lba * SECTOR)
        for _ in range(count):
            entry = f.read(entry_size)
            if len(entry) < entry_size:
                break
            if uuid.UUID(bytes_le=entry[:16]) == type_uuid:
                first, last = struct.unpack("<QQ", entry[32:48])
                return Extent(first * SECTOR, (last - first + 1) * SECTOR)
    raise GptError(f"{image}: no partition of type {type_uuid}")


def extract_partition(image: Path, dest: Path, type_uuid: uuid.UUID = ROOT_RISCV64) -> Extent:
    """Copy the first partition of ``type_uuid`` out of ``image`` into the file ``dest``."""
    extent = find_partition(image, type_uuid)
    with image.open("rb") as src, dest.open("wb") as dst:
        src.seek(extent.offset)
        left = extent.length
        while left:
            chunk = src.read(min(1 << 20, left))
            if not chunk:
                raise GptError(f"{image}: the partition runs past the end of the file")
            dst.write(chunk)
            left -= len(chunk)
    return extent


if __name__ == "__main__":
    # `python -m app.update.gpt IMAGE`: "offset length" of its system partition, for shell scripts.
    extent = find_partition(Path(sys.argv[1]))
    print(extent.offset, extent.length)

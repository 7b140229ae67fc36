"""Loaders for the reference data in ``shared/reference`` (never edited; see its README)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from app.binance.public import DepthSnapshot
from app.engine.decode import decode_depth_snapshot
from tests.paths import REFERENCE

STREAMS = REFERENCE / "binance" / "streams"
MARKET = REFERENCE / "market-data"

_RECV_TS = re.compile(rb'^\{"recv_ts":[0-9.]+,')


@dataclass(frozen=True)
class RecordedFrame:
    """One line of the recording: receive time and the frame bytes as Binance sent them."""

    ts_recv_ns: int
    raw: bytes


@dataclass(frozen=True)
class RecordedSnapshot:
    symbol: str
    ts_recv_ns: int
    snapshot: DepthSnapshot


def recorded_frames() -> list[RecordedFrame]:
    """The 1,535 combined-stream frames, with the recorder's ``recv_ts`` cut out of the bytes."""
    frames = []
    for line in (MARKET / "usdm_2021-07-22_ws.jsonl").read_bytes().splitlines():
        if line:
            recv_s = json.loads(line)["recv_ts"]
            frames.append(RecordedFrame(round(recv_s * 1e9), _RECV_TS.sub(b"{", line)))
    return frames


def recorded_snapshots() -> dict[str, RecordedSnapshot]:
    """The REST depth snapshots taken at the start of the recording, by symbol."""
    result = {}
    for line in (MARKET / "usdm_2021-07-22_rest_depth_snapshots.txt").read_text().splitlines():
        if not line:
            continue
        match = re.match(r"\S+symbol=(\w+)&limit=\d+ -> ([0-9.]+): (.*)$", line)
        assert match is not None, line[:120]
        result[match[1]] = RecordedSnapshot(
            match[1], round(float(match[2]) * 1e9), decode_depth_snapshot(match[3])
        )
    return result

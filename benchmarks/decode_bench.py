"""Decode cost per market-data message, for each candidate decoder, over the reference recording.

Run from the repository root::

    .venv/bin/python benchmarks/decode_bench.py [--repeat 7] [--loops 20]

Every candidate decodes all 1,535 frames of ``usdm_2021-07-22_ws.jsonl`` (exactly the frame bytes
Binance sent: the recording's ``recv_ts`` key is cut out) and dispatches on the event type. Those
that stop at a ``dict`` do less work than the typed ones (no validation, no typed result); the
``→ convert`` rows add msgspec's conversion of that dict to the same typed events, the fair
comparison. Prints microseconds per message (best of ``--repeat`` runs) and, for reference, the
cost of applying the diff-depth events to synced order books.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine.book import DiffDepthSync, OrderBook  # noqa: E402
from app.engine.decode import decode_depth_snapshot, decode_frame  # noqa: E402
from app.engine.events import DepthUpdate, Frame  # noqa: E402

REFERENCE = ROOT / ".." / "shared" / "reference" / "market-data"
_RECV_TS = re.compile(rb'^\{"recv_ts":[0-9.]+,')


def load_frames(reference: Path) -> list[bytes]:
    """The recording's frames, byte for byte as received (minus the recorder's ``recv_ts``)."""
    lines = (reference / "usdm_2021-07-22_ws.jsonl").read_bytes().splitlines()
    return [_RECV_TS.sub(b"{", line) for line in lines if line]


def candidates() -> dict[str, Callable[[bytes], object]]:
    """Name → function decoding one frame and returning something dispatched on its type."""
    to_frame = msgspec.convert
    found: dict[str, Callable[[bytes], object]] = {}

    def stdlib(raw: bytes) -> object:
        doc = json.loads(raw)
        return doc["data"]["e"], doc

    def stdlib_typed(raw: bytes) -> object:
        return to_frame(json.loads(raw), Frame)

    found["stdlib json → dict"] = stdlib
    found["stdlib json → dict → convert"] = stdlib_typed
    try:
        import orjson
    except ImportError:
        print("orjson: not installed, skipped")
    else:
        loads = orjson.loads

        def orjson_dict(raw: bytes) -> object:
            doc = loads(raw)
            return doc["data"]["e"], doc

        def orjson_typed(raw: bytes) -> object:
            return to_frame(loads(raw), Frame)

        found[f"orjson {orjson.__version__} → dict"] = orjson_dict
        found[f"orjson {orjson.__version__} → dict → convert"] = orjson_typed

    untyped = msgspec.json.Decoder()

    def msgspec_dict(raw: bytes) -> object:
        doc: Any = untyped.decode(raw)
        return doc["data"]["e"], doc

    found[f"msgspec {msgspec.__version__} → dict"] = msgspec_dict
    found[f"msgspec {msgspec.__version__} typed structs (chosen)"] = decode_frame
    return found


def measure(fn: Callable[[bytes], object], frames: list[bytes], repeat: int, loops: int) -> float:
    """Best-of-``repeat`` microseconds per message."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(loops):
            for raw in frames:
                fn(raw)
        elapsed = time.perf_counter_ns() - start
        best = min(best, elapsed / (loops * len(frames)) / 1000)
    return best


def measure_books(frames: list[bytes], reference: Path, repeat: int) -> tuple[float, int]:
    """Microseconds per diff-depth event fed to synced books, and how many were applied."""
    snapshots = {}
    for line in (reference / "usdm_2021-07-22_rest_depth_snapshots.txt").read_text().splitlines():
        if line:
            snap = decode_depth_snapshot(line.split(": ", 1)[1])
            found = re.search(r"symbol=(\w+)", line)
            assert found is not None
            snapshots[found[1]] = snap
    events = [e for e in (decode_frame(f).data for f in frames) if type(e) is DepthUpdate]
    best = float("inf")
    applied = 0
    for _ in range(repeat):
        syncs = {s: DiffDepthSync(OrderBook(s)) for s in snapshots}
        for symbol, sync in syncs.items():
            sync.apply_snapshot(snapshots[symbol])  # nothing buffered: live events bridge it
        applied = 0
        start = time.perf_counter_ns()
        for event in events:
            applied += syncs[event.symbol].on_event(event)
        elapsed = time.perf_counter_ns() - start
        best = min(best, elapsed / len(events) / 1000)
    return best, applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--loops", type=int, default=20)
    args = parser.parse_args()
    frames = load_frames(args.reference)
    print(
        f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}; "
        f"{len(frames)} frames, mean {sum(map(len, frames)) / len(frames):.0f} bytes"
    )
    results = {
        name: measure(fn, frames, args.repeat, args.loops) for name, fn in candidates().items()
    }
    for name, us in sorted(results.items(), key=lambda item: item[1]):
        print(f"{us:8.2f} µs/msg  {name}")
    book_us, n = measure_books(frames, args.reference, args.repeat)
    print(f"{book_us:8.2f} µs/event  order-book update, diff depth ({n} events applied)")


if __name__ == "__main__":
    main()

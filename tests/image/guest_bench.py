"""The decision loop measured inside the booted image: run there by ``image_checks.py``.

Not a pytest module: the image check copies this file and the reference recording into the guest
(riscv64, QEMU TCG) and runs it with the image's own python3 and app. Each round runs, one after
the other, a bare ``json.loads`` of the frames ``appliance bench`` replays, then ``appliance bench``
compiled (the image's mypyc build), then ``json.loads`` again and ``appliance bench`` as Python
(``APPLIANCE_NATIVE=0``): each bench run beside its own baseline, so a ratio compares two figures
taken a few seconds apart on the same emulated CPU. One JSON object a line on stdout.

``json.loads`` is timed as the bench times a message: the frame already rendered, a
``perf_counter_ns`` on either side of the call, the sum of those intervals; the frames are the
bench's own (:func:`app.node.bench.load_recording`, its mark-price filler and per-pass time shift),
cycled until as many have been parsed as the bench measures, after one untimed pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def loads_rate(replay: Path, messages: int) -> dict[str, Any]:
    """``json.loads`` per frame over the bench's frames: messages per second."""
    from app.node import bench

    frames, _ = bench.with_mark_prices(bench.load_recording(replay))
    span_ms = (frames[-1].ts_ns - frames[0].ts_ns) // 1_000_000 + 1_000
    loads, perf = json.loads, time.perf_counter_ns
    for _, raw in bench._shifted(frames, 0):  # warm-up, as the bench's messages before a decision
        loads(raw)
    elapsed = done = 0
    passes = 1
    while done < messages:
        for _, raw in bench._shifted(frames, passes * span_ms):
            t0 = perf()
            loads(raw)
            elapsed += perf() - t0
            done += 1
            if done == messages:
                break
        passes += 1
    return {"kind": "json.loads", "messages": done, "msgs_per_s": round(done / (elapsed / 1e9))}


def bench_run(ns: argparse.Namespace, compiled: bool, decide: str) -> dict[str, Any]:
    """``appliance bench --json`` in a fresh process, compiled or as Python."""
    env = dict(os.environ)
    if not compiled:
        env["APPLIANCE_NATIVE"] = "0"
    ref = ns.dir
    cmd = [
        "appliance", "bench", "--json", "--messages", str(ns.messages), "--decide", decide,
        "--replay", str(ref / ns.replay), "--snapshots", str(ref / ns.snapshots),
        "--exchange-info", str(ref / ns.exchange_info),
    ]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-600:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(kind="bench", compiled=compiled, wall_s=round(time.monotonic() - start, 1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="where the recording was copied")
    parser.add_argument("--replay", required=True)
    parser.add_argument("--snapshots", required=True)
    parser.add_argument("--exchange-info", required=True)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--decide", default="bar", help="comma-separated: bar, event")
    ns = parser.parse_args(argv)
    for round_ in range(ns.rounds):
        for decide in ns.decide.split(","):
            for compiled in (True, False):
                base = loads_rate(ns.dir / ns.replay, ns.messages)
                run = bench_run(ns, compiled, decide)
                for row in (base, run):
                    row.update(round=round_, decide=decide, compiled=compiled)
                    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ingestion + recording throughput, printed as figures (not a pass/fail test).

Two measurements on the reference recording (30 s of four real USD-M symbols, 1,535 frames):

1. **in-process**: frames looped through the engine's own hot path, ``MarketData.handle_frame``
   (decode → book → health) and the recording sink, with the recorder's writer thread committing
   to a real SQLite file; the clock stops after the last commit, so it is what ingestion *and*
   recording sustain together.
2. **end to end**: the simulator process replays the recording at full speed (``--speed 0
   --loop``) over a real WebSocket to a real engine process in diff-depth mode (books synced from
   the replay's REST snapshots); messages/s and frames recorded/s are read from ``ctl status``.

Usage: ``python benchmarks/ingest_bench.py [--frames N] [--seconds S] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import ctl  # noqa: E402
from app.binance.public import DepthSnapshot  # noqa: E402
from app.clock import SystemClock  # noqa: E402
from app.config import ExchangeConfig, FeedConfig, StoreConfig  # noqa: E402
from app.engine.decode import decode_depth_snapshot  # noqa: E402
from app.engine.market_data import MarketData  # noqa: E402
from app.engine.recording import RecordingSink  # noqa: E402
from app.errors import ControlError  # noqa: E402
from app.sim.recordings import load_snapshots  # noqa: E402
from app.store.recorder import Recorder  # noqa: E402

REFERENCE = REPO.parent / "shared" / "reference" / "market-data"
RECORDING = REFERENCE / "usdm_2021-07-22_ws.jsonl"
SNAPSHOTS = REFERENCE / "usdm_2021-07-22_rest_depth_snapshots.txt"
SYMBOLS = ("sushiusdt", "akrousdt", "keepusdt", "ctkusdt")


def _frames() -> list[bytes]:
    out = []
    for line in RECORDING.read_text().splitlines():
        obj = json.loads(line)
        out.append(
            json.dumps(
                {"stream": obj["stream"], "data": obj["data"]}, separators=(",", ":")
            ).encode()
        )
    return out


class _FileSnapshots:
    """The recording's REST snapshots, served as the engine's PublicRest would."""

    def __init__(self) -> None:
        self._bodies = {
            symbol.upper(): msgspec.json.encode(body)
            for symbol, body in load_snapshots(SNAPSHOTS).items()
        }

    async def depth(self, symbol: str, limit: int = 1000) -> DepthSnapshot:
        return decode_depth_snapshot(self._bodies[symbol.upper()])


async def in_process(total: int) -> dict[str, Any]:
    """Diff-depth books synced from the snapshots; state reset for each pass over the recording."""
    frames = _frames()
    snapshots = _FileSnapshots()
    feed = FeedConfig(symbols=SYMBOLS, depth_mode="diff")
    with tempfile.TemporaryDirectory() as tmp:
        clock = SystemClock()
        store = StoreConfig()
        recorder = Recorder(store, Path(tmp), clock)
        recorder.start()
        flush_every = store.batch_max
        n = gaps = 0
        elapsed = 0.0
        ts = clock.time_ns()
        while n < total:
            views: list[MarketData] = []
            sink = RecordingSink(
                recorder, store, lambda symbol, k, v=views: v[0].book_view(symbol, k)
            )
            market = MarketData(feed, ExchangeConfig(), clock, sink, rest=snapshots)
            views.append(market)
            handle = market.handle_frame
            started = time.perf_counter()
            async with market.replaying():
                for i, raw in enumerate(frames):
                    handle(ts + n, raw)
                    n += 1
                    if n % flush_every == 0:
                        recorder.flush()
                    if i % 64 == 0:
                        await asyncio.sleep(0)  # the snapshot tasks run here, as on the loop
            elapsed += time.perf_counter() - started
            health = market.health_snapshot()
            gaps += sum(s["gaps"] for s in health["streams"].values())  # type: ignore[index, union-attr]
            await market.close()
        started = time.perf_counter()
        recorder.stop(timeout=300)
        drain = time.perf_counter() - started
        stats = recorder.stats
        return {
            "frames": n,
            "sequence_gaps": gaps,
            "recorded_frames": stats.frames,
            "derived_rows": stats.rows,
            "hot_path_msgs_per_s": round(n / elapsed),
            "hot_path_us_per_msg": round(elapsed / n * 1e6, 2),
            "with_recording_msgs_per_s": round(n / (elapsed + drain)),
            "db_mb": round(sum(p.stat().st_size for p in Path(tmp).glob("*")) / 1e6, 1),  # noqa: ASYNC240
        }


def _status(sock: Path) -> dict[str, Any]:
    reply = ctl.request(sock, "status", actor="bench")
    result: dict[str, Any] = reply["result"]
    return result


def end_to_end(seconds: float) -> dict[str, Any]:
    py = [sys.executable, "-m", "app.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        sim_log = (Path(tmp) / "sim.log").open("w+")
        sim = subprocess.Popen(
            [
                *py,
                "--data-dir",
                str(data),
                "sim",
                "--port",
                "0",
                "--replay",
                str(RECORDING),
                "--snapshots",
                str(SNAPSHOTS),
                "--speed",
                "0",
                "--loop",
            ],
            cwd=REPO,
            stdout=sim_log,
            stderr=subprocess.STDOUT,
        )
        engine = None
        try:
            port = None
            for _ in range(200):
                sim_log.seek(0)
                match = re.search(r"sim listening on http://[\d.]+:(\d+)", sim_log.read())
                if match:
                    port = int(match[1])
                    break
                time.sleep(0.1)
            if port is None:
                raise SystemExit("simulator did not start")
            env = {
                **os.environ,
                "APPLIANCE_FEED_DEPTH_MODE": "diff",
                "APPLIANCE_LOG_LEVEL": "WARNING",
            }
            engine = subprocess.Popen(
                [
                    *py,
                    "--data-dir",
                    str(data),
                    "engine",
                    "--symbols",
                    ",".join(SYMBOLS),
                    "--rest-url",
                    f"http://127.0.0.1:{port}",
                    "--ws-url",
                    f"ws://127.0.0.1:{port}",
                ],
                cwd=REPO,
                env=env,
                stderr=subprocess.DEVNULL,
            )
            sock = data / "control.sock"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if _status(sock)["messages"] > 0:
                        break
                except (ControlError, OSError, KeyError):
                    pass  # not up yet
                time.sleep(0.2)
            time.sleep(2)  # past connection set-up and the first snapshots
            a, ta = _status(sock), time.monotonic()
            time.sleep(seconds)
            b, tb = _status(sock), time.monotonic()
            span = tb - ta
            health = ctl.request(sock, "health", actor="bench")["result"]
            return {
                "seconds": round(span, 1),
                "msgs_per_s": round((b["messages"] - a["messages"]) / span),
                "recorded_frames_per_s": round(
                    (b["recorder"]["frames"] - a["recorder"]["frames"]) / span
                ),
                "dropped_records": b["recorder"]["dropped_records"],
                "books_synced_now": sum(1 for v in health["books"].values() if v["synced"]),
                "book_snapshots_applied": sum(v["snapshots"] for v in health["books"].values()),
                "depth_gaps": sum(s["gaps"] for s in health["streams"].values()),
            }
        finally:
            for proc in (engine, sim):
                if proc is not None:
                    proc.terminate()
                    proc.wait(20)
            sim_log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    result = {
        "in_process": asyncio.run(in_process(ns.frames)),
        "end_to_end": end_to_end(ns.seconds),
    }
    if ns.json:
        print(json.dumps(result))
        return
    for section, figures in result.items():
        print(f"{section}:")
        for key, value in figures.items():
            print(f"  {key:28s} {value}")


if __name__ == "__main__":
    main()

"""``appliance download`` against the simulator: 6 hours of two symbols, killed mid-way, resumed.

The finished store must hold every aggregated trade of the range exactly once (consecutive ids,
the trades just outside the range on the exchange lie outside it), every 1-minute kline and mark,
frames in time order, and read back through the recording readers.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from app.engine.decode import decode_event
from app.engine.events import AggTrade, Kline, MarkPriceUpdate
from app.models.download import WeightBudget
from app.sim.recordings import iter_recording
from tests.simproc import REPO, running_sim

SYMBOLS = ("BTCUSDT", "ETHUSDT")
HOURS = 6


def _download(url: str, out: Path, start: int, end: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "app.cli", "download", "--rest-url", url,
           "--symbols", ",".join(SYMBOLS), "--start", str(start), "--end", str(end),
           "--out", str(out), "--page-limit", "200"]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def _staged_rows(staging: Path) -> int:
    if not staging.exists():
        return 0
    conn = sqlite3.connect(f"file:{staging}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT COALESCE(SUM(rows), 0) FROM cursors").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


@pytest.mark.timeout(300)
def test_download_interrupted_and_resumed(tmp_path: Path) -> None:
    out = tmp_path / "market"
    # A weight limit above the test's needs: the budget itself is tested below, without waiting.
    with running_sim("--seed", "5", "--weight-limit", "100000") as sim:
        now = sim.get("/fapi/v1/time")["serverTime"]
        end = now // 60_000 * 60_000 - 3_600_000
        start = end - HOURS * 3_600_000
        t0 = time.monotonic()
        first = _download(sim.rest_url, out, start, end)
        staging = out / "download" / "staging.db"
        while _staged_rows(staging) < 8_000:
            assert first.poll() is None, first.communicate()[1].decode()
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        killed_at = _staged_rows(staging)
        second = _download(sim.rest_url, out, start, end)
        stdout, stderr = second.communicate(timeout=240)
        wall = time.monotonic() - t0
        assert second.returncode == 0, stderr.decode()
        summary = json.loads(stdout)

        files = sorted(out.glob("market_*.db"))
        assert files, list(out.iterdir())
        trades: dict[str, list[AggTrade]] = collections.defaultdict(list)
        klines: dict[str, list[int]] = collections.defaultdict(list)
        marks: dict[str, list[int]] = collections.defaultdict(list)
        frames = 0
        last_ts = 0
        for path in files:
            for frame in iter_recording(path):
                frames += 1
                assert frame.ts_ns >= last_ts, "frames out of time order"
                last_ts = frame.ts_ns
                ev = decode_event(frame.data)
                if isinstance(ev, AggTrade):
                    trades[ev.symbol].append(ev)
                elif isinstance(ev, Kline):
                    klines[ev.symbol].append(ev.bar.ts_open_ms)
                elif isinstance(ev, MarkPriceUpdate):
                    marks[ev.symbol].append(ev.ts_event_ms)
        duplicates = gaps = 0
        for sym in SYMBOLS:
            ids = [t.agg_trade_id for t in trades[sym]]
            duplicates += len(ids) - len(set(ids))
            gaps += sum(b - a - 1 for a, b in itertools.pairwise(sorted(set(ids))))
            assert all(start <= t.ts_trade_ms < end for t in trades[sym])
            # The exchange's neighbours of the first and last trade lie outside the range.
            before = sim.get(f"/fapi/v1/aggTrades?symbol={sym}&fromId={min(ids) - 1}&limit=1")
            after = sim.get(f"/fapi/v1/aggTrades?symbol={sym}&fromId={max(ids) + 1}&limit=1")
            assert before[0]["T"] < start
            assert after[0]["T"] >= end
            assert klines[sym] == list(range(start, end, 60_000))
            assert marks[sym] == list(range(start + 59_999, end, 60_000))
            # The derived table agrees with the frames, once each.
            conn = sqlite3.connect(files[0])
            n, distinct = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT agg_id) FROM trades WHERE symbol = ?", (sym,)
            ).fetchone()
            conn.close()
            assert n == distinct == len(ids)
        assert duplicates == 0
        assert gaps == 0
        rows = {sym: len(trades[sym]) for sym in SYMBOLS}
        print(
            f"download: {HOURS} h x {len(SYMBOLS)} symbols, killed at {killed_at} staged rows, "
            f"resumed; {wall:.1f} s in all; trades {rows}; frames {frames}; "
            f"duplicates {duplicates}; gaps {gaps}; requests (2nd run) {summary['requests']}"
        )
        # Running it again changes nothing.
        again = _download(sim.rest_url, out, start, end)
        stdout, stderr = again.communicate(timeout=120)
        assert again.returncode == 0, stderr.decode()
        assert set(json.loads(stdout)["files"].values()) == {0}


def test_trades_agree_with_klines() -> None:
    """The simulator's historical aggTrades rebuild its historical 1-minute klines."""
    with running_sim("--seed", "9") as sim:
        bars = sim.get("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=30")[:5]
        for bar in bars:
            page = sim.get(
                f"/fapi/v1/aggTrades?symbol=BTCUSDT&startTime={bar[0]}&endTime={bar[6]}&limit=1000"
            )
            prices = [p["p"] for p in page]
            assert (prices[0], max(prices, key=float), min(prices, key=float), prices[-1]) == (
                bar[1],
                bar[2],
                bar[3],
                bar[4],
            )
            assert sum(p["l"] - p["f"] + 1 for p in page) == bar[8]
            ids = [p["a"] for p in page]
            assert ids == list(range(ids[0], ids[0] + len(ids)))
        with httpx.Client(base_url=sim.rest_url) as client:
            weights = [
                int(
                    client.get(
                        "/fapi/v1/aggTrades", params={"symbol": "BTCUSDT", "limit": 5}
                    ).headers["x-mbx-used-weight-1m"]
                )
                for _ in range(2)
            ]
            assert weights[1] - weights[0] == 20  # Binance's weight for aggTrades
            resp = client.get(
                "/fapi/v1/aggTrades",
                params={"symbol": "BTCUSDT", "startTime": 0, "endTime": 3_600_001},
            )
            assert resp.json()["code"] == -1127
            funding = client.get("/fapi/v1/fundingRate", params={"symbol": "ETHUSDT"}).json()
            assert len(funding) == 100
            assert [f["fundingTime"] for f in funding] == sorted(f["fundingTime"] for f in funding)
            marks = client.get(
                "/fapi/v1/markPriceKlines",
                params={"symbol": "ETHUSDT", "interval": "1m", "limit": 3},
            ).json()
            assert len(marks) == 3 and all(len(r) == 12 for r in marks)
            info = client.get("/fapi/v1/exchangeInfo").json()
            assert info["rateLimits"][0]["limit"] == 2400


def test_weight_budget_waits_for_the_next_minute() -> None:
    now = [60_000 * 100 + 30_000]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += int(s * 1000)

    budget = WeightBudget(limit=100, share=0.8, sleep=sleep, now_ms=lambda: now[0])
    for _ in range(4):
        budget.before(20)
        budget.after(httpx.Headers({"x-mbx-used-weight-1m": str(budget.used + 20)}), 20)
    assert slept == []
    budget.before(20)  # 80 + 20 > 80: wait for the minute to turn
    assert len(slept) == 1 and 30.0 <= slept[0] <= 30.1
    assert budget.used == 0

"""``appliance bench`` as a user runs it: the whole loop over the reference recording, with books in
sync from the recording's snapshots and the paper venue filling real orders."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.engine.reference import MARKET

KEYS = ("messages", "decisions", "msgs_per_s", "decisions_per_s", "p50_us", "p99_us", "p999_us",
        "rss_mb")  # fmt: skip


def _bench(*args: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "bench", "--json",
         "--replay", str(MARKET / "usdm_2021-07-22_ws.jsonl"),
         "--snapshots", str(MARKET / "usdm_2021-07-22_rest_depth_snapshots.txt"),
         "--exchange-info", str(MARKET / "usdm_2021-07-22_exchangeInfo.txt"), *args],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_bench_at_bar_closes_runs_the_whole_loop() -> None:
    r = _bench("--messages", "60000")
    assert all(isinstance(r[k], int | float) and r[k] > 0 for k in KEYS)  # type: ignore[operator]
    assert r["messages"] == 60_000
    assert r["decide"] == "bar"
    # Every pass ended with all four books in sync (rebuilt from the REST snapshots).
    assert r["passes"] == r["passes_books_synced"] and r["symbols"] == [
        "AKROUSDT", "CTKUSDT", "KEEPUSDT", "SUSHIUSDT"
    ]  # fmt: skip
    # One decision per symbol per 1-second bar close: a few percent of the messages.
    assert 0 < r["decisions"] < r["messages"] / 5  # type: ignore[operator]
    # Once the 1-minute ATR has warmed (15 shifted minutes), the paper venue fills orders.
    assert r["orders"] > 0  # type: ignore[operator]
    assert r["p50_us"] <= r["p99_us"] <= r["p999_us"] <= r["max_us"]  # type: ignore[operator]


@pytest.mark.parametrize("decide", ["event"])
def test_bench_on_every_message(decide: str) -> None:
    r = _bench("--messages", "5000", "--decide", decide)
    assert r["decide"] == decide
    # Inference on every message of every symbol whose window is full (the quieter symbols'
    # windows fill a little after the first): at most one decision per measured message.
    assert r["messages"] == 5000
    assert 0.9 * 5000 <= r["decisions"] <= 5000  # type: ignore[operator]

"""``appliance bench`` as a user runs it: the whole loop over the reference recording, with books in
sync from the recording's snapshots and the paper venue filling real orders."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.node.bench import _percentile
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
    assert 0 < r["p50_us"] <= r["max_us"]  # type: ignore[operator]


def test_percentiles_are_nearest_ranks_of_the_latencies() -> None:
    # 1..1,000 us, in ns, sorted as the bench passes them.
    ordered = [i * 1000 for i in range(1, 1001)]
    assert _percentile(ordered, 0.5) == 501.0
    assert _percentile(ordered, 0.99) == 991.0
    assert _percentile(ordered, 0.999) == 1000.0
    assert _percentile([5_000, 9_000_000], 0.999) == 9000.0  # the top sample, not past the end
    assert _percentile([1_234], 0.5) == 1.2  # rounded to 0.1 us


@pytest.mark.parametrize("decide", ["event"])
def test_bench_on_every_message(decide: str) -> None:
    r = _bench("--messages", "5000", "--decide", decide)
    assert r["decide"] == decide
    # Inference on every message of every symbol whose window is full (the quieter symbols'
    # windows fill a little after the first): at most one decision per measured message.
    assert r["messages"] == 5000
    assert 0.9 * 5000 <= r["decisions"] <= 5000  # type: ignore[operator]

"""REST endpoints of the running simulator against Binance's shapes (reference payloads)."""

from __future__ import annotations

import itertools
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.paths import REFERENCE
from tests.simproc import SimHandle, running_sim

MARKET_DATA = REFERENCE / "market-data"


def _types(obj: dict[str, Any]) -> dict[str, type]:
    return {k: type(v) for k, v in obj.items()}


def _reference_exchange_info() -> dict[str, Any]:
    line = (MARKET_DATA / "usdm_2021-07-22_exchangeInfo.txt").read_text().splitlines()[0]
    body: dict[str, Any] = json.loads(line.split(" -> ", 1)[1].split(": ", 1)[1])
    return body


def _error(sim: SimHandle, path: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(sim.rest_url + path, timeout=10)
    return info.value.code, json.loads(info.value.read())


def test_ping_and_time(shared_sim: SimHandle) -> None:
    assert shared_sim.get("/fapi/v1/ping") == {}
    body = shared_sim.get("/fapi/v1/time")
    assert list(body) == ["serverTime"]
    assert isinstance(body["serverTime"], int)
    assert body["serverTime"] > 1_600_000_000_000


def test_exchange_info_matches_reference_shape(shared_sim: SimHandle) -> None:
    ref = _reference_exchange_info()
    body = shared_sim.get("/fapi/v1/exchangeInfo")
    assert _types(body) == _types(ref)
    assert body["rateLimits"]
    assert _types(body["rateLimits"][0]) == _types(ref["rateLimits"][0])
    ref_symbol = ref["symbols"][0]
    by_name = {s["symbol"]: s for s in body["symbols"]}
    assert set(by_name) == {"BTCUSDT", "ETHUSDT"}
    for entry in by_name.values():
        assert _types(entry) == _types(ref_symbol)
        ref_filters = {f["filterType"]: f for f in ref_symbol["filters"]}
        filters = {f["filterType"]: f for f in entry["filters"]}
        for kind in ("PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "MIN_NOTIONAL"):
            assert _types(filters[kind]) == _types(ref_filters[kind]), kind
    btc = {f["filterType"]: f for f in by_name["BTCUSDT"]["filters"]}
    eth = {f["filterType"]: f for f in by_name["ETHUSDT"]["filters"]}
    assert btc["PRICE_FILTER"]["tickSize"] == "0.10"
    assert btc["LOT_SIZE"]["stepSize"] == "0.001"
    assert eth["PRICE_FILTER"]["tickSize"] == "0.01"
    assert eth["LOT_SIZE"]["stepSize"] == "0.001"
    assert by_name["BTCUSDT"]["pricePrecision"] == 2
    assert by_name["BTCUSDT"]["quantityPrecision"] == 3


def test_depth_shape_and_limits(shared_sim: SimHandle) -> None:
    ref_line = (MARKET_DATA / "usdm_2021-07-22_rest_depth_snapshots.txt").read_text()
    ref = json.loads(ref_line.splitlines()[0].split(": ", 1)[1])
    for limit in (5, 20, 1000):
        body = shared_sim.get(f"/fapi/v1/depth?symbol=BTCUSDT&limit={limit}")
        assert list(body) == list(ref)
        assert _types(body) == _types(ref)
        assert 0 < len(body["bids"]) <= limit
        assert 0 < len(body["asks"]) <= limit
        assert len(body["bids"]) >= min(limit, 20)
        assert len(body["asks"]) >= min(limit, 20)
        bids = [float(p) for p, _ in body["bids"]]
        asks = [float(p) for p, _ in body["asks"]]
        assert bids == sorted(bids, reverse=True)
        assert asks == sorted(asks)
        assert bids[0] < asks[0]
        for price, qty in body["bids"] + body["asks"]:
            assert isinstance(price, str)
            assert isinstance(qty, str)
            assert len(price.split(".")[1]) == 2
            assert len(qty.split(".")[1]) == 3
            assert int(price.replace(".", "")) % 10 == 0, "BTC tick is 0.10"
            assert float(qty) > 0


def test_klines_shape_and_history(shared_sim: SimHandle) -> None:
    rows = shared_sim.get("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=500")
    assert len(rows) == 500
    kinds = [int, str, str, str, str, str, int, str, int, str, str, str]
    for row in rows:
        assert [type(v) for v in row] == kinds
        assert row[6] == row[0] + 60_000 - 1
        o, h, low, c = (float(v) for v in row[1:5])
        assert low <= min(o, c) <= max(o, c) <= h
    opens = [r[0] for r in rows]
    assert opens == list(range(opens[0], opens[0] + 500 * 60_000, 60_000))
    now = shared_sim.get("/fapi/v1/time")["serverTime"]
    assert opens[-1] <= now < opens[-1] + 60_000
    for interval, ms in (("1h", 3_600_000), ("4h", 14_400_000), ("1d", 86_400_000)):
        rows = shared_sim.get(f"/fapi/v1/klines?symbol=ETHUSDT&interval={interval}&limit=500")
        assert len(rows) == 500
        assert all(b[0] - a[0] == ms for a, b in itertools.pairwise(rows))


def test_klines_time_selection(shared_sim: SimHandle) -> None:
    rows = shared_sim.get("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=100")
    start, end = rows[10][0], rows[19][0]
    window = shared_sim.get(
        f"/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime={start}&endTime={end}"
    )
    assert [r[0] for r in window] == [r[0] for r in rows[10:20]]
    assert window == rows[10:20]
    first = shared_sim.get(f"/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime={start}&limit=3")
    assert [r[0] for r in first] == [r[0] for r in rows[10:13]]
    last = shared_sim.get(f"/fapi/v1/klines?symbol=BTCUSDT&interval=1m&endTime={end}&limit=3")
    assert [r[0] for r in last] == [r[0] for r in rows[17:20]]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/fapi/v1/depth?symbol=NOPEUSDT", -1121),
        ("/fapi/v1/depth", -1102),
        ("/fapi/v1/depth?symbol=BTCUSDT&limit=abc", -1100),
        ("/fapi/v1/depth?symbol=BTCUSDT&limit=7", -1130),
        ("/fapi/v1/klines?symbol=BTCUSDT", -1102),
        ("/fapi/v1/klines?symbol=BTCUSDT&interval=7x", -1120),
        ("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&limit=5000", -1130),
        ("/fapi/v1/klines?symbol=BTCUSDT&interval=1m&startTime=-5", -1100),
        ("/fapi/v1/klines?symbol=XXX&interval=1m", -1121),
    ],
)
def test_errors_in_binance_shape(shared_sim: SimHandle, path: str, code: int) -> None:
    status, body = _error(shared_sim, path)
    assert status == 400
    assert list(body) == ["code", "msg"]
    assert body["code"] == code
    assert isinstance(body["msg"], str)
    assert body["msg"]


def test_fault_endpoint_rejects_bad_values(shared_sim: SimHandle) -> None:
    before = shared_sim.get("/_sim/faults")
    assert before == {
        "drop_after_s": None,
        "stall": False,
        "stall_for_s": None,
        "malformed_every": 0,
        "pong_delay_s": 0.0,
        "order_unknown_503": False,
        "order_timeout_s": None,
        "drop_user_stream": False,
        "clock_offset_ms": 0,
    }
    for bad in ({"nope": 1}, {"malformed_every": -1}, {"drop_after_s": "x"}, {"stall": 3}):
        with pytest.raises(urllib.error.HTTPError) as info:
            shared_sim.set_faults(**bad)
        assert info.value.code == 400
        assert json.loads(info.value.read())["code"] == -1130
    assert shared_sim.get("/_sim/faults") == before


def test_any_symbol_gets_a_derived_market() -> None:
    with running_sim("--symbols", "solusdt,dogeusdt") as sim:
        info = sim.get("/fapi/v1/exchangeInfo")
        assert {s["symbol"] for s in info["symbols"]} == {"SOLUSDT", "DOGEUSDT"}
        for symbol in ("SOLUSDT", "DOGEUSDT"):
            spec = next(s for s in info["symbols"] if s["symbol"] == symbol)
            depth = sim.get(f"/fapi/v1/depth?symbol={symbol}&limit=5")
            decimals = len(depth["bids"][0][0].split(".")[1])
            assert decimals == spec["pricePrecision"]
        status, body = _error(sim, "/fapi/v1/depth?symbol=BTCUSDT")
        assert (status, body["code"]) == (400, -1121)

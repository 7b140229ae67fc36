"""The simulator's margin: leverage brackets, liquidation price, margin checks, liquidation.

The expected figures come from :mod:`app.engine.margin`, itself checked against Binance's worked
examples (tests/engine/test_margin.py), and from the closed form of the isolated formula.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.binance import margin
from tests.engine.test_paper import paper_liquidation
from tests.sim.signing import SIM_ARGS, Signed
from tests.sim.wsclient import open_ws
from tests.simproc import SimHandle, running_sim

D = Decimal
E8 = D("0.00000001")


@pytest.fixture(scope="module")
def margin_sim() -> Iterator[SimHandle]:
    with running_sim("--seed", "23", *SIM_ARGS) as handle:
        yield handle


@pytest.fixture
def client(margin_sim: SimHandle) -> Iterator[Signed]:
    c = Signed(margin_sim.rest_url)
    yield c
    c.close()


def pin_mark(sim: SimHandle, symbol: str, price: str | None) -> dict[str, Any]:
    reply = httpx.post(f"{sim.rest_url}/_sim/mark", json={"symbol": symbol, "price": price})
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    return body


def _row(client: Signed, symbol: str) -> dict[str, Any]:
    rows = client.ok("GET", "/fapi/v2/positionRisk", {"symbol": symbol})
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def test_leverage_bracket_is_signed_and_per_symbol(client: Signed) -> None:
    one = client.ok("GET", "/fapi/v1/leverageBracket", {"symbol": "BTCUSDT"})
    assert one["symbol"] == "BTCUSDT"
    assert margin.parse_brackets(one)["BTCUSDT"] == margin.BTCUSDT_BRACKETS
    assert one["brackets"][0] == {
        "bracket": 1,
        "initialLeverage": 125,
        "notionalCap": 50000,
        "notionalFloor": 0,
        "maintMarginRatio": 0.004,
        "cum": 0,
    }
    every = margin.parse_brackets(client.ok("GET", "/fapi/v1/leverageBracket"))
    assert set(every) == {"BTCUSDT", "ETHUSDT"}
    assert every["ETHUSDT"][0].initial_leverage == 75
    unsigned = client.call("GET", "/fapi/v1/leverageBracket", signed=False)
    assert unsigned.status == 400 and unsigned.code is not None


def test_leverage_and_notional_limits_follow_the_brackets(client: Signed) -> None:
    assert client.call("POST", "/fapi/v1/leverage", {"symbol": "ETHUSDT", "leverage": 76}).code == (
        -4028
    )
    try:
        lev = client.ok("POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 125})
        assert lev["maxNotionalValue"] == "50000"
        # 1 BTC (~65,000 USDT) is beyond the 50,000 that 125x allows.
        order = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}
        assert client.call("POST", "/fapi/v1/order", order).body == {
            "code": -2027,
            "msg": "Exceeded the maximum allowable position at current leverage.",
        }
        client.ok("POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 10})
        # 2 BTC at 10x needs ~13,000 USDT of initial margin; the wallet holds 10,000.
        order["quantity"] = "2"
        assert client.call("POST", "/fapi/v1/order", order).body == {
            "code": -2019,
            "msg": "Margin is insufficient.",
        }
    finally:
        client.ok("POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 20})
    assert client.call(
        "POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 126}
    ).code == (-4028)


async def test_isolated_10x_liquidation_price_and_liquidation(
    margin_sim: SimHandle, client: Signed
) -> None:
    sym = "BTCUSDT"
    client.ok("POST", "/fapi/v1/marginType", {"symbol": sym, "marginType": "ISOLATED"})
    client.ok("POST", "/fapi/v1/leverage", {"symbol": sym, "leverage": 10})
    wallet0 = D(client.ok("GET", "/fapi/v2/balance")[0]["balance"])
    key = client.ok("POST", "/fapi/v1/listenKey", signed=False)["listenKey"]
    async with open_ws(f"{margin_sim.ws_url}/ws/{key}") as ws:
        client.ok(
            "POST",
            "/fapi/v1/order",
            {"symbol": sym, "side": "BUY", "type": "MARKET", "quantity": "0.100"},
        )
        row = _row(client, sym)
        qty, entry = D(row["positionAmt"]), D(row["entryPrice"])
        assert qty == D("0.100")
        assert row["marginType"] == "isolated"
        iso = D(row["isolatedWallet"])
        assert iso == (qty * entry / 10).quantize(E8)
        # Binance's formula, isolated (WB = isolated wallet, TMM = UPNL = 0), tier 1:
        # (WB + 0 − qty × EP) / (qty × 0.004 − qty) = EP × 0.9 / 0.996 at 10x.
        lp = D(row["liquidationPrice"])
        assert lp == pytest.approx(entry * D("0.9") / D("0.996"), abs=D("0.000001"))
        assert lp == pytest.approx(
            margin.isolated_liquidation_price(qty, entry, iso, margin.BTCUSDT_BRACKETS),
            abs=D("0.000001"),
        )
        mark = D(row["markPrice"])
        assert D(row["maintMargin"]) == (qty * mark * D("0.004")).quantize(E8)
        assert D(row["isolatedMargin"]) == (iso + D(row["unRealizedProfit"])).quantize(E8)
        account = client.ok("GET", "/fapi/v2/account")
        assert D(account["totalMaintMargin"]) == D(row["maintMargin"])

        # Just above the liquidation price nothing happens ...
        above = (lp + 1).quantize(D("0.1"))
        pin_mark(margin_sim, sym, str(above))
        assert D(_row(client, sym)["positionAmt"]) == qty
        # ... at a tick under it the position is liquidated at that mark price.
        under = (lp - D("0.05")).quantize(D("0.1"))
        assert pin_mark(margin_sim, sym, str(under))["markPrice"] == f"{under:.8f}"
        assert D(_row(client, sym)["positionAmt"]) == 0

        def liquidated(events: list[dict[str, Any]]) -> bool:
            return any(
                e["e"] == "ORDER_TRADE_UPDATE"
                and e["o"]["x"] == "TRADE"
                and e["o"]["o"] == "LIQUIDATION"
                for e in events
            )

        events: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while not liquidated(events):
                events.append(json.loads(await ws.recv()))
    pin_mark(margin_sim, sym, None)
    liq = [
        e["o"] for e in events if e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["o"] == "LIQUIDATION"
    ]
    assert [o["x"] for o in liq] == ["NEW", "TRADE"]
    trade = liq[-1]
    assert trade["c"].startswith("autoclose-")
    assert (trade["S"], trade["X"], trade["ot"], trade["R"]) == (
        "SELL",
        "FILLED",
        "LIQUIDATION",
        True,
    )
    assert D(trade["L"]) == under
    assert D(trade["l"]) == qty
    realized = qty * (under - entry)
    expected_fee = margin.liquidation_fee(
        qty * under, margin.DEFAULT_LIQUIDATION_FEE, iso + realized
    )
    assert D(trade["n"]) == expected_fee.quantize(E8)
    assert D("0") < expected_fee < qty * under * D("0.012")  # capped by what margin was left
    income = client.ok("GET", "/fapi/v1/income", {"incomeType": "INSURANCE_CLEAR"})
    assert [D(i["income"]) for i in income] == [-expected_fee.quantize(E8)]
    wallet1 = D(client.ok("GET", "/fapi/v2/balance")[0]["balance"])
    opening_fees = sum(
        (
            D(f["commission"])
            for f in margin_sim.get("/_sim/fills")
            if not f["clientOrderId"].startswith("autoclose-")
        ),
        D(0),
    )
    assert wallet1 == wallet0 - opening_fees + D(trade["rp"]) - D(trade["n"])
    # The whole isolated margin is gone, and not more.
    assert wallet0 - opening_fees - wallet1 == pytest.approx(iso, abs=D("0.00001"))
    # Paper, fed the same position and the same marks, liquidates at the same price, same fee.
    _, reports = paper_liquidation(entry, qty, 10, [mark, above, under])
    paper_fills = [f for r in reports.reports for f in r.fills]
    assert [(f.price, f.qty, f.fee.quantize(E8)) for f in paper_fills] == [
        (D(trade["L"]), D(trade["l"]), D(trade["n"]))
    ]

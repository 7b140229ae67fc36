"""Orders against the simulator's book: lifecycle, fills, positions, filters, faults, stops."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
import pytest

from app.config import DEFAULT_SIM_PORT  # noqa: F401  (the sim's config module must import)
from app.sim.account import Account
from app.sim.config import TradingSettings
from app.sim.symbols import KNOWN
from tests.paths import REFERENCE
from tests.sim.signing import SIM_ARGS, Signed
from tests.simproc import SimHandle, running_sim

RESPONSES = REFERENCE / "binance" / "responses"
TAKER = Decimal("0.0004")
E8 = Decimal("0.00000001")


@pytest.fixture(scope="module")
def trade_sim() -> Iterator[SimHandle]:
    with running_sim("--seed", "11", *SIM_ARGS) as handle:
        yield handle


@pytest.fixture
def client(trade_sim: SimHandle) -> Iterator[Signed]:
    trade_sim.set_faults(order_unknown_503=False, order_timeout_s=None)
    c = Signed(trade_sim.rest_url)
    yield c
    c.close()


def _book(sim: SimHandle, symbol: str) -> dict[str, Any]:
    body: dict[str, Any] = sim.get(f"/fapi/v1/depth?symbol={symbol}&limit=50")
    return body


def _far_bid(sim: SimHandle, symbol: str, tick: str) -> str:
    """A buy price 10 % under the best bid, on the tick grid: rests and never fills here."""
    best = Decimal(_book(sim, symbol)["bids"][0][0])
    return str((best * Decimal("0.9") / Decimal(tick)).to_integral_value() * Decimal(tick))


def _position(client: Signed, symbol: str) -> dict[str, Any]:
    rows = client.ok("GET", "/fapi/v2/positionRisk", {"symbol": symbol})
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


def test_limit_order_place_query_cancel(trade_sim: SimHandle, client: Signed) -> None:
    price = _far_bid(trade_sim, "BTCUSDT", "0.10")
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.010",
        "price": price,
        "newClientOrderId": "limit-1",
    }
    placed = client.ok("POST", "/fapi/v1/order", params)
    reference = json.loads((RESPONSES / "usdm_post_fapi_v1_order.json").read_text())
    assert set(reference) - {"activatePrice", "priceRate"} <= set(placed)
    assert (placed["status"], placed["clientOrderId"], placed["type"]) == (
        "NEW",
        "limit-1",
        "LIMIT",
    )
    assert Decimal(placed["price"]) == Decimal(price)
    oid = placed["orderId"]
    by_id = client.ok("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": oid})
    by_cid = client.ok(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "limit-1"}
    )
    assert by_id == by_cid
    assert by_id["status"] == "NEW"
    assert isinstance(by_id["time"], int)
    opened = client.ok("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"})
    assert [o["orderId"] for o in opened] == [oid]
    duplicate = client.call("POST", "/fapi/v1/order", params)
    assert (duplicate.status, duplicate.code) == (400, -4116)
    assert duplicate.body["msg"] == "ClientOrderId is duplicated."
    canceled = client.ok("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": oid})
    assert canceled["status"] == "CANCELED"
    after = client.ok("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": oid})
    assert after["status"] == "CANCELED"
    assert client.ok("GET", "/fapi/v1/openOrders", {"symbol": "BTCUSDT"}) == []
    again = client.call("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": oid})
    assert again.body == {"code": -2011, "msg": "Unknown order sent."}
    unknown = client.call("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": 1})
    assert unknown.body == {"code": -2013, "msg": "Order does not exist."}
    # Once closed, the client order id may be used again.
    reused = client.ok("POST", "/fapi/v1/order", params)
    assert reused["orderId"] != oid
    done = client.ok("DELETE", "/fapi/v1/allOpenOrders", {"symbol": "BTCUSDT"})
    assert done["code"] == 200
    assert client.ok("GET", "/fapi/v1/openOrders") == []


def _walk(levels: list[list[str]], qty: Decimal) -> list[tuple[Decimal, Decimal]]:
    fills = []
    for price, size in levels:
        take = min(qty, Decimal(size))
        fills.append((Decimal(price), take))
        qty -= take
        if qty <= 0:
            break
    return fills


def test_market_order_walks_the_book_with_taker_commission(
    trade_sim: SimHandle, client: Signed
) -> None:
    compared = False
    for attempt in range(10):
        side = "BUY" if attempt % 2 == 0 else "SELL"
        before = _book(trade_sim, "ETHUSDT")
        levels = before["asks"] if side == "BUY" else before["bids"]
        qty = Decimal(levels[0][1]) + Decimal(levels[1][1]) + Decimal("0.001")
        placed = client.ok(
            "POST",
            "/fapi/v1/order",
            {
                "symbol": "ETHUSDT",
                "side": side,
                "type": "MARKET",
                "quantity": str(qty),
                "newOrderRespType": "RESULT",
            },
        )
        after = _book(trade_sim, "ETHUSDT")
        assert placed["status"] == "FILLED"
        assert Decimal(placed["executedQty"]) == qty
        if before["lastUpdateId"] != after["lastUpdateId"]:
            continue  # the market stepped in between: this attempt saw another book
        fills = [f for f in trade_sim.get("/_sim/fills") if f["orderId"] == placed["orderId"]]
        expected = _walk(levels, qty)
        assert [(Decimal(f["price"]), Decimal(f["qty"])) for f in fills] == expected
        for fill in fills:
            notional = Decimal(fill["price"]) * Decimal(fill["qty"])
            fee = (notional * TAKER).quantize(E8, rounding=ROUND_HALF_UP)
            assert Decimal(fill["commission"]) == fee
            assert fill["maker"] is False
            assert fill["clientOrderId"] == placed["clientOrderId"]
        quote = sum((p * q for p, q in expected), Decimal(0))
        assert Decimal(placed["cumQuote"]) == quote
        assert Decimal(placed["avgPrice"]) == (quote / qty).quantize(Decimal("0.00001"))
        compared = True
        break
    assert compared, "the market stepped during every attempt"
    net = sum(
        (
            Decimal(t["qty"]) * (1 if t["side"] == "BUY" else -1)
            for t in client.ok("GET", "/fapi/v1/userTrades", {"symbol": "ETHUSDT"})
        ),
        Decimal(0),
    )
    position = _position(client, "ETHUSDT")
    assert Decimal(position["positionAmt"]) == net
    account = client.ok("GET", "/fapi/v2/account")
    eth = next(p for p in account["positions"] if p["symbol"] == "ETHUSDT")
    assert Decimal(eth["positionAmt"]) == net
    reference = json.loads(
        (RESPONSES / "usdm_get_fapi_v2_account_single_asset.REPAIRED.json").read_text()
    )
    assert set(reference) <= set(account)
    assert set(reference["assets"][0]) <= set(account["assets"][0])
    assert set(reference["positions"][0]) <= set(eth)
    balance = client.ok("GET", "/fapi/v2/balance")
    assert set(json.loads((RESPONSES / "usdm_get_fapi_v2_balance.json").read_text())[0]) == set(
        balance[0]
    )
    fees = sum(
        (
            Decimal(i["income"])
            for i in client.ok("GET", "/fapi/v1/income", {"incomeType": "COMMISSION"})
        ),
        Decimal(0),
    )
    assert fees < 0


def test_filters_and_margin(trade_sim: SimHandle, client: Signed) -> None:
    base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    price = _far_bid(trade_sim, "BTCUSDT", "0.10")

    def refuse(**extra: str) -> tuple[int | None, str]:
        reply = client.call("POST", "/fapi/v1/order", {**base, **extra})
        assert reply.status == 400, reply.body
        return reply.code, reply.body["msg"]

    code, msg = refuse(quantity="0.001", price=price)
    assert code == -4164
    assert msg == "Order's notional must be no smaller than 100 (unless you choose reduce only)."
    assert refuse(quantity="0.010", price="60000.05") == (
        -4014,
        "Price not increased by tick size.",
    )
    assert refuse(quantity="0.0105", price=price)[0] == -1111
    assert refuse(quantity="0", price=price) == (-4003, "Quantity less than or equal to zero.")
    stop = {"type": "STOP_MARKET", "side": "SELL", "quantity": "0.010", "reduceOnly": "false"}
    high = str(Decimal(_book(trade_sim, "BTCUSDT")["asks"][0][0]) * 2)
    code, msg = refuse(**stop, stopPrice=high)
    assert (code, msg) == (-2021, "Order would immediately trigger.")
    # With 1x leverage a 20 ETH order (~7,000 USDT a coin) needs far more than 10,000 USDT.
    lev = client.ok("POST", "/fapi/v1/leverage", {"symbol": "ETHUSDT", "leverage": 1})
    assert lev["leverage"] == 1
    try:
        eth_price = _far_bid(trade_sim, "ETHUSDT", "0.01")
        reply = client.call(
            "POST",
            "/fapi/v1/order",
            {**base, "symbol": "ETHUSDT", "quantity": "20", "price": eth_price},
        )
        assert reply.body == {"code": -2019, "msg": "Margin is insufficient."}
    finally:
        client.ok("POST", "/fapi/v1/leverage", {"symbol": "ETHUSDT", "leverage": 20})
    bad_leverage = client.call("POST", "/fapi/v1/leverage", {"symbol": "ETHUSDT", "leverage": 126})
    assert bad_leverage.code == -4028


def test_order_unknown_503_fault_still_places_the_order(
    trade_sim: SimHandle, client: Signed
) -> None:
    trade_sim.set_faults(order_unknown_503=True)
    price = _far_bid(trade_sim, "BTCUSDT", "0.10")
    reply = client.call(
        "POST",
        "/fapi/v1/order",
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.010",
            "price": price,
            "newClientOrderId": "unknown-503",
        },
    )
    assert reply.status == 503
    assert reply.body == {
        "code": -1007,
        "msg": "Timeout waiting for response from backend server. Send status unknown; "
        "execution status unknown.",
    }
    trade_sim.set_faults(order_unknown_503=False)
    found = client.ok(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "unknown-503"}
    )
    assert found["status"] == "NEW"
    client.ok("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "unknown-503"})


def test_order_timeout_fault_delays_the_answer_and_places_the_order(
    trade_sim: SimHandle, client: Signed
) -> None:
    trade_sim.set_faults(order_timeout_s=1.5)
    params = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.010",
        "price": _far_bid(trade_sim, "BTCUSDT", "0.10"),
        "newClientOrderId": "slow-1",
    }
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        client.call("POST", "/fapi/v1/order", params, timeout_s=0.5)
    found = client.ok("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "slow-1"})
    assert found["status"] == "NEW"
    params["newClientOrderId"] = "slow-2"
    client.ok("POST", "/fapi/v1/order", params, timeout_s=5)
    assert time.monotonic() - started >= 1.5
    trade_sim.set_faults(order_timeout_s=None)
    client.ok("DELETE", "/fapi/v1/allOpenOrders", {"symbol": "BTCUSDT"})


def test_protective_stop_fires_with_no_client_connected() -> None:
    with running_sim("--seed", "5", *SIM_ARGS) as sim:
        client = Signed(sim.rest_url)
        try:
            opened = client.ok(
                "POST",
                "/fapi/v1/order",
                {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.020"},
            )
            assert _position(client, "BTCUSDT")["positionAmt"] == "0.020"
            stop_id = None
            best_bid = Decimal(_book(sim, "BTCUSDT")["bids"][0][0])
            for ticks_below in (3, 10, 30, 100, 300):
                stop = best_bid - Decimal("0.10") * ticks_below
                reply = client.call(
                    "POST",
                    "/fapi/v1/order",
                    {
                        "symbol": "BTCUSDT",
                        "side": "SELL",
                        "type": "STOP_MARKET",
                        "stopPrice": str(stop),
                        "quantity": "0.020",
                        "reduceOnly": "true",
                        "newClientOrderId": "protect-1",
                    },
                )
                if reply.code == -2021:
                    continue  # the last trade is already below: place it lower
                assert reply.status == 200, reply.body
                stop_id = reply.body["orderId"]
                break
            assert stop_id is not None
            client.close()  # nobody is connected while the stop waits: poll with fresh clients
            client = Signed(sim.rest_url)
            deadline = time.monotonic() + 30
            while _position(client, "BTCUSDT")["positionAmt"] != "0.000":
                assert time.monotonic() < deadline, "the stop never fired"
                time.sleep(0.2)
            order = client.ok("GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": stop_id})
            assert (order["status"], order["type"], order["origType"]) == (
                "FILLED",
                "MARKET",
                "STOP_MARKET",
            )
            trades = client.ok("GET", "/fapi/v1/userTrades", {"symbol": "BTCUSDT"})
            closing = [t for t in trades if t["orderId"] == stop_id]
            assert closing
            assert all(t["side"] == "SELL" and not t["maker"] for t in closing)
            assert sum(Decimal(t["qty"]) for t in closing) == Decimal("0.020")
            income = client.ok("GET", "/fapi/v1/income", {"symbol": "BTCUSDT"})
            for trade in closing:
                fees = [
                    i
                    for i in income
                    if i["tradeId"] == str(trade["id"]) and i["incomeType"] == "COMMISSION"
                ]
                assert [Decimal(f["income"]) for f in fees] == [-Decimal(trade["commission"])]
                assert Decimal(trade["commission"]) > 0
            realized = sum((Decimal(t["realizedPnl"]) for t in closing), Decimal(0))
            pnl_income = sum(
                (Decimal(i["income"]) for i in income if i["incomeType"] == "REALIZED_PNL"),
                Decimal(0),
            )
            assert realized == pnl_income
            assert opened["status"] == "NEW"  # the default ACK answer, taken before matching
        finally:
            client.close()


def test_funding_fee_at_the_funding_time() -> None:
    with running_sim("--seed", "9", "--funding-interval-s", "1", *SIM_ARGS) as sim:
        client = Signed(sim.rest_url)
        try:
            client.ok(
                "POST",
                "/fapi/v1/order",
                {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.050"},
            )
            deadline = time.monotonic() + 10
            funding: list[dict[str, Any]] = []
            while not funding:
                assert time.monotonic() < deadline, "no funding fee"
                time.sleep(0.2)
                funding = client.ok("GET", "/fapi/v1/income", {"incomeType": "FUNDING_FEE"})
            fee = funding[0]
            assert fee["symbol"] == "BTCUSDT"
            assert fee["time"] % 1000 == 0  # on the (compressed) funding time
            mark = Decimal(_position(client, "BTCUSDT")["markPrice"])
            # A short receives funding when the rate is positive (0.01 % here, plus premium).
            expected = Decimal("0.050") * mark * Decimal("0.0001")
            assert Decimal(fee["income"]) > 0
            assert abs(Decimal(fee["income"]) - expected) < expected / 5
        finally:
            client.close()


def test_funding_arithmetic_is_usdm() -> None:
    account = Account(dict(KNOWN.items()), TradingSettings(), 1)
    spec = KNOWN["btcusdt"]
    account.marks["BTCUSDT"] = Decimal("65000")
    fill = account.apply_fill(
        spec, 1, "c", "BUY", "BOTH", Decimal("64000"), Decimal("0.010"), False, 1
    )
    assert fill.commission == Decimal("0.25600000")
    (paid,) = account.fund("BTCUSDT", Decimal("0.0001"), 2)
    assert paid.amt == Decimal("0.010")
    assert account.income[-1].amount == Decimal("-0.06500000")
    close = account.apply_fill(
        spec, 2, "d", "SELL", "BOTH", Decimal("64500"), Decimal("0.004"), True, 3
    )
    assert close.realized_pnl == Decimal("2.00000000")
    assert close.commission == Decimal("0.05160000")  # maker 0.02 %
    assert account.wallet == Decimal("10000") - Decimal("0.256") - Decimal("0.065") + Decimal(
        "2"
    ) - Decimal("0.0516")


def test_same_seed_same_ids() -> None:
    ids = []
    for _ in range(2):
        with running_sim("--seed", "21", *SIM_ARGS) as sim:
            client = Signed(sim.rest_url)
            placed = client.ok(
                "POST",
                "/fapi/v1/order",
                {"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"},
            )
            key = client.ok("POST", "/fapi/v1/listenKey", signed=False)["listenKey"]
            client.close()
            ids.append((placed["orderId"], placed["clientOrderId"], key))
    assert ids[0] == ids[1]


def test_hedge_mode_and_margin_type() -> None:
    with running_sim("--seed", "17", *SIM_ARGS) as sim:
        client = Signed(sim.rest_url)
        try:
            assert client.ok("GET", "/fapi/v1/positionSide/dual") == {"dualSidePosition": False}
            isolated = {"symbol": "ETHUSDT", "marginType": "ISOLATED"}
            assert client.ok("POST", "/fapi/v1/marginType", isolated)["code"] == 200
            assert client.call("POST", "/fapi/v1/marginType", isolated).code == -4046
            client.ok("POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": "true"})
            assert client.ok("GET", "/fapi/v1/positionSide/dual") == {"dualSidePosition": True}
            market = {"symbol": "ETHUSDT", "type": "MARKET", "quantity": "0.050"}
            one_way = client.call("POST", "/fapi/v1/order", {**market, "side": "BUY"})
            assert one_way.code == -4061
            client.ok("POST", "/fapi/v1/order", {**market, "side": "BUY", "positionSide": "LONG"})
            client.ok("POST", "/fapi/v1/order", {**market, "side": "SELL", "positionSide": "SHORT"})
            rows = {
                r["positionSide"]: r
                for r in client.ok("GET", "/fapi/v2/positionRisk", {"symbol": "ETHUSDT"})
            }
            assert set(rows) == {"LONG", "SHORT"}
            assert (rows["LONG"]["positionAmt"], rows["SHORT"]["positionAmt"]) == (
                "0.050",
                "-0.050",
            )
            assert rows["LONG"]["marginType"] == "isolated"
            assert Decimal(rows["LONG"]["isolatedWallet"]) > 0
            switch = client.call(
                "POST", "/fapi/v1/positionSide/dual", {"dualSidePosition": "false"}
            )
            assert switch.code == -4068
            too_much = {**market, "side": "SELL", "positionSide": "LONG", "quantity": "0.060"}
            assert client.call("POST", "/fapi/v1/order", too_much).code == -2022
            client.ok("POST", "/fapi/v1/order", {**market, "side": "SELL", "positionSide": "LONG"})
            after = client.ok("GET", "/fapi/v2/positionRisk", {"symbol": "ETHUSDT"})
            assert {r["positionSide"]: r["positionAmt"] for r in after} == {
                "LONG": "0.000",
                "SHORT": "-0.050",
            }
        finally:
            client.close()

"""The signed USD-M endpoints (orders, account, settings, listenKey) and ``/_sim/fills``.

Each SIGNED handler authenticates first (:mod:`app.sim.auth`) against the server's clock as the
``clock_offset_ms`` fault shifts it. The order faults act on ``POST /fapi/v1/order`` after the
order has been placed: ``order_unknown_503`` answers 503 -1007 (execution status unknown),
``order_timeout_s`` holds the answer that long.

``POST /_sim/mark`` (unsigned, the simulator's own) pins a symbol's mark price
(``{"symbol": "BTCUSDT", "price": "58700.00"}``; ``"price": null`` lets it float again): the
account is valued at it and liquidations run at once, and the mark stream carries it.

Every handler is a module-level function that finds the simulator in the lifespan state
(:func:`~app.sim.state.sim_of`), as the panel's views find the panel.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal, InvalidOperation

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from app.sim.account import ASSET, ZERO, dec_str, money
from app.sim.auth import missing
from app.sim.rest import ApiError, json_response
from app.sim.state import SimState, sim_of

_UNKNOWN_MSG = (
    "Timeout waiting for response from backend server. Send status unknown; "
    "execution status unknown."
)
_SEVEN_DAYS_MS = 7 * 86_400_000


def _limit(params: dict[str, str], default: int, maximum: int) -> int:
    text = params.get("limit", "")
    if not text:
        return default
    if not text.isdigit() or not 1 <= int(text) <= maximum:
        raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
    return int(text)


def _time_arg(params: dict[str, str], name: str) -> int | None:
    text = params.get(name, "")
    if not text:
        return None
    if not text.isdigit():
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'.")
    return int(text)


async def _signed(request: Request, state: SimState) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return state.credentials.verify(
        request.headers.get("X-MBX-APIKEY"),
        request.url.query,
        body,
        state.server_time_ms(),
    )


def _symbol(state: SimState, params: dict[str, str], *, required: bool = True) -> str | None:
    symbol = params.get("symbol", "").upper()
    if not symbol:
        if required:
            raise missing("symbol")
        return None
    if symbol not in state.specs:
        raise ApiError(-1121, "Invalid symbol.")
    return symbol


async def new_order(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    params = await _signed(request, state)
    _, body = exchange.place(params, state.now_ms())
    if state.faults.order_unknown_503:
        raise ApiError(-1007, _UNKNOWN_MSG, 503)
    delay = state.faults.order_timeout_s
    if delay:
        await asyncio.sleep(delay)
    return json_response(body)


async def query_order(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    params = await _signed(request, state)
    symbol = _symbol(state, params)
    assert symbol is not None
    order = exchange.find(symbol, params.get("orderId"), params.get("origClientOrderId"))
    if order is None:
        raise ApiError(-2013, "Order does not exist.")
    return json_response(order.body(with_time=True))


async def cancel_order(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    params = await _signed(request, state)
    symbol = _symbol(state, params)
    assert symbol is not None
    order = exchange.cancel(
        symbol, params.get("orderId"), params.get("origClientOrderId"), state.now_ms()
    )
    return json_response(order.body())


async def open_orders(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    params = await _signed(request, state)
    symbol = _symbol(state, params, required=False)
    return json_response([o.body(with_time=True) for o in exchange.open_orders(symbol)])


async def cancel_all(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    params = await _signed(request, state)
    symbol = _symbol(state, params)
    assert symbol is not None
    exchange.cancel_all(symbol, state.now_ms())
    return json_response({"code": 200, "msg": "The operation of cancel all open order is done."})


def _position_rows(state: SimState, symbol: str | None) -> list[dict[str, object]]:
    exchange = state.exchange
    account = exchange.account
    rows: list[dict[str, object]] = []
    for sym in sorted(exchange.markets):
        if symbol is not None and sym != symbol:
            continue
        spec = state.specs[sym]
        settings = account.settings(sym)
        for side in account.sides():
            pos = account.position(sym, side)
            mark = account.mark(sym)
            iso = account.isolated_wallet(pos)
            upnl = account.unrealized(pos)
            liq = account.liquidation_price(pos)
            rows.append(
                {
                    "entryPrice": money(pos.entry),
                    "breakEvenPrice": money(pos.entry),
                    "marginType": "isolated" if settings.isolated else "cross",
                    "isAutoAddMargin": "false",
                    "isolatedMargin": money(iso + upnl if settings.isolated else iso),
                    "leverage": str(settings.leverage),
                    "liquidationPrice": money(liq) if liq is not None else "0",
                    "maintMargin": money(account.maint(pos)),
                    "markPrice": money(mark),
                    "maxNotionalValue": str(account.max_notional(sym)),
                    "positionAmt": dec_str(pos.amt, spec.qty_precision),
                    "notional": money(pos.amt * mark),
                    "isolatedWallet": money(iso),
                    "symbol": sym,
                    "unRealizedProfit": money(upnl),
                    "positionSide": side,
                    "updateTime": pos.update_time,
                }
            )
    return rows


async def position_risk(request: Request) -> Response:
    state = sim_of(request)
    params = await _signed(request, state)
    return json_response(_position_rows(state, _symbol(state, params, required=False)))


def _totals(state: SimState) -> dict[str, str]:
    exchange = state.exchange
    account = exchange.account
    upnl, im, iso = account.cross_totals()
    order_im = exchange.open_order_im()
    available = account.available(order_im)
    maint = account.total_maint()
    return {
        "initial": money(im + order_im),
        "maint": money(maint),
        "wallet": money(account.wallet),
        "upnl": money(upnl),
        "margin": money(account.wallet + upnl),
        "position_im": money(im),
        "order_im": money(order_im),
        "cross_wallet": money(account.wallet - iso),
        "available": money(available),
        "withdraw": money(max(available, ZERO)),
    }


async def account_info(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    account = exchange.account
    await _signed(request, state)
    t = _totals(state)
    positions: list[dict[str, object]] = []
    for sym in sorted(exchange.markets):
        spec = state.specs[sym]
        settings = account.settings(sym)
        for side in account.sides():
            pos = account.position(sym, side)
            im = account.position_im(pos)
            order_im = exchange.open_order_im(sym, side)
            positions.append(
                {
                    "symbol": sym,
                    "initialMargin": money(im + order_im),
                    "maintMargin": money(account.maint(pos)),
                    "unrealizedProfit": money(account.unrealized(pos)),
                    "positionInitialMargin": money(im),
                    "openOrderInitialMargin": money(order_im),
                    "leverage": str(settings.leverage),
                    "isolated": settings.isolated,
                    "entryPrice": money(pos.entry),
                    "breakEvenPrice": money(pos.entry),
                    "maxNotional": str(account.max_notional(sym)),
                    "bidNotional": "0",
                    "askNotional": "0",
                    "positionSide": side,
                    "positionAmt": dec_str(pos.amt, spec.qty_precision),
                    "updateTime": pos.update_time,
                }
            )
    return json_response(
        {
            "feeTier": 0,
            "feeBurn": False,
            "canTrade": True,
            "canDeposit": True,
            "canWithdraw": True,
            "updateTime": 0,
            "multiAssetsMargin": False,
            "tradeGroupId": -1,
            "totalInitialMargin": t["initial"],
            "totalMaintMargin": t["maint"],
            "totalWalletBalance": t["wallet"],
            "totalUnrealizedProfit": t["upnl"],
            "totalMarginBalance": t["margin"],
            "totalPositionInitialMargin": t["position_im"],
            "totalOpenOrderInitialMargin": t["order_im"],
            "totalCrossWalletBalance": t["cross_wallet"],
            "totalCrossUnPnl": t["upnl"],
            "availableBalance": t["available"],
            "maxWithdrawAmount": t["withdraw"],
            "assets": [
                {
                    "asset": ASSET,
                    "walletBalance": t["wallet"],
                    "unrealizedProfit": t["upnl"],
                    "marginBalance": t["margin"],
                    "maintMargin": t["maint"],
                    "initialMargin": t["initial"],
                    "positionInitialMargin": t["position_im"],
                    "openOrderInitialMargin": t["order_im"],
                    "crossWalletBalance": t["cross_wallet"],
                    "crossUnPnl": t["upnl"],
                    "availableBalance": t["available"],
                    "maxWithdrawAmount": t["withdraw"],
                    "marginAvailable": True,
                    "updateTime": account.update_time,
                }
            ],
            "positions": positions,
        }
    )


async def balance(request: Request) -> Response:
    state = sim_of(request)
    account = state.exchange.account
    await _signed(request, state)
    t = _totals(state)
    return json_response(
        [
            {
                "accountAlias": account.alias,
                "asset": ASSET,
                "balance": t["wallet"],
                "crossWalletBalance": t["cross_wallet"],
                "crossUnPnl": t["upnl"],
                "availableBalance": t["available"],
                "maxWithdrawAmount": t["withdraw"],
                "marginAvailable": True,
                "updateTime": account.update_time,
            }
        ]
    )


async def user_trades(request: Request) -> Response:
    state = sim_of(request)
    account = state.exchange.account
    params = await _signed(request, state)
    symbol = _symbol(state, params)
    limit = _limit(params, 500, 1000)
    start = _time_arg(params, "startTime")
    end = _time_arg(params, "endTime")
    from_id = _time_arg(params, "fromId")
    rows = [
        f
        for f in account.fills
        if f.symbol == symbol
        and (start is None or f.time >= start)
        and (end is None or f.time <= end)
        and (from_id is None or f.trade_id >= from_id)
    ]
    rows = rows[:limit] if from_id is not None or start is not None else rows[-limit:]
    return json_response([f.user_trade() for f in rows])


async def income(request: Request) -> Response:
    state = sim_of(request)
    account = state.exchange.account
    params = await _signed(request, state)
    symbol = _symbol(state, params, required=False)
    kind = params.get("incomeType", "")
    limit = _limit(params, 100, 1000)
    start = _time_arg(params, "startTime")
    end = _time_arg(params, "endTime")
    if start is None and end is None:
        start = state.now_ms() - _SEVEN_DAYS_MS
    rows = [
        i
        for i in account.income
        if (symbol is None or i.symbol == symbol)
        and (not kind or i.income_type == kind)
        and (start is None or i.time >= start)
        and (end is None or i.time <= end)
    ]
    return json_response([i.as_dict() for i in rows[:limit]])


async def leverage(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    params = await _signed(request, state)
    symbol = _symbol(state, params)
    assert symbol is not None
    return json_response(exchange.set_leverage(symbol, params.get("leverage", ""), state.now_ms()))


async def margin_type(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    params = await _signed(request, state)
    symbol = _symbol(state, params)
    assert symbol is not None
    exchange.set_margin_type(symbol, params.get("marginType", "").upper())
    return json_response({"code": 200, "msg": "success"})


async def leverage_bracket(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    account = exchange.account
    params = await _signed(request, state)
    symbol = _symbol(state, params, required=False)

    def row(sym: str) -> dict[str, object]:
        tiers = [b.as_json() for b in account.symbol_brackets(sym)]
        return {"symbol": sym, "brackets": tiers}

    if symbol is not None:
        return json_response(row(symbol))
    return json_response([row(sym) for sym in sorted(exchange.markets)])


async def pin_mark(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    account = exchange.account
    try:
        body = msgspec.json.decode(await request.body())
    except msgspec.DecodeError as exc:
        raise ApiError(-1130, f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(-1130, "body must be a JSON object")
    symbol = str(body.get("symbol", "")).upper()
    market = exchange.market(symbol)
    price = body.get("price")
    if price is None:
        market.mark_pin_e8 = None
    else:
        try:
            value = Decimal(str(price))
        except InvalidOperation as exc:
            raise ApiError(-1130, f"price {price!r} is not a number") from exc
        if not value.is_finite() or value <= 0:
            raise ApiError(-1130, f"price {price!r} is not positive")
        market.mark_pin_e8 = int(value.scaleb(8))
        market.mark_e8 = market.mark_pin_e8
    exchange.on_mark_forced(market, state.now_ms())
    return json_response(
        {
            "symbol": symbol,
            "markPrice": money(account.mark(symbol)),
            "pinned": price is not None,
        }
    )


async def get_dual(request: Request) -> Response:
    state = sim_of(request)
    account = state.exchange.account
    await _signed(request, state)
    return json_response({"dualSidePosition": account.dual})


async def set_dual(request: Request) -> Response:
    state = sim_of(request)
    exchange = state.exchange
    params = await _signed(request, state)
    exchange.set_dual(params.get("dualSidePosition", ""))
    return json_response({"code": 200, "msg": "success"})


async def listen_key_post(request: Request) -> Response:
    state = sim_of(request)
    state.credentials.check_key(request.headers.get("X-MBX-APIKEY"))
    return json_response({"listenKey": state.user_streams.create()})


async def listen_key_put(request: Request) -> Response:
    state = sim_of(request)
    state.credentials.check_key(request.headers.get("X-MBX-APIKEY"))
    return json_response({"listenKey": state.user_streams.keepalive()})


async def listen_key_delete(request: Request) -> Response:
    state = sim_of(request)
    state.credentials.check_key(request.headers.get("X-MBX-APIKEY"))
    state.user_streams.delete()
    return json_response({})


async def sim_fills(request: Request) -> Response:
    state = sim_of(request)
    account = state.exchange.account
    return json_response([f.sim_view() for f in account.fills])


# Named routes; the server mounts them beside the market-data and stream routes.
ROUTES: list[BaseRoute] = [
    Route("/fapi/v1/order", new_order, methods=["POST"], name="order_new"),
    Route("/fapi/v1/order", query_order, methods=["GET"], name="order_query"),
    Route("/fapi/v1/order", cancel_order, methods=["DELETE"], name="order_cancel"),
    Route("/fapi/v1/openOrders", open_orders, methods=["GET"], name="open_orders"),
    Route("/fapi/v1/allOpenOrders", cancel_all, methods=["DELETE"], name="cancel_all"),
    Route("/fapi/v2/account", account_info, methods=["GET"], name="account"),
    Route("/fapi/v2/balance", balance, methods=["GET"], name="balance"),
    Route("/fapi/v2/positionRisk", position_risk, methods=["GET"], name="position_risk"),
    Route("/fapi/v1/userTrades", user_trades, methods=["GET"], name="user_trades"),
    Route("/fapi/v1/income", income, methods=["GET"], name="income"),
    Route("/fapi/v1/leverage", leverage, methods=["POST"], name="leverage"),
    Route("/fapi/v1/marginType", margin_type, methods=["POST"], name="margin_type"),
    Route("/fapi/v1/leverageBracket", leverage_bracket, methods=["GET"], name="leverage_bracket"),
    Route("/fapi/v1/positionSide/dual", get_dual, methods=["GET"], name="dual_get"),
    Route("/fapi/v1/positionSide/dual", set_dual, methods=["POST"], name="dual_post"),
    Route("/fapi/v1/listenKey", listen_key_post, methods=["POST"], name="listen_key_new"),
    Route("/fapi/v1/listenKey", listen_key_put, methods=["PUT"], name="listen_key_keep"),
    Route("/fapi/v1/listenKey", listen_key_delete, methods=["DELETE"], name="listen_key_end"),
    Route("/_sim/fills", sim_fills, methods=["GET"], name="sim_fills"),
    Route("/_sim/mark", pin_mark, methods=["POST"], name="sim_mark"),
]

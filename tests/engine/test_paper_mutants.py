"""Paper exchange, function by function: the exact figures, refusals and messages each path
produces (margin available, liquidation orders, queue positions, exits, reduce-only expiries,
order bookkeeping). Orders are sealed by a real gate with exactly the fields a case needs."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from app.binance import margin as mg
from app.clock import ManualClock
from app.engine.book import OrderBook
from app.engine.orders import (
    Fill,
    Liquidity,
    Order,
    OrderNotApprovedError,
    OrderStatus,
    OrderType,
    OrderUpdate,
    RejectCode,
    Side,
)
from app.engine.paper import ExecutionReport, PaperConfig, PaperExchange, kill_switch
from app.engine.portfolio import EquityPoint, FundingPayment, Portfolio, Position
from app.engine.risk import RiskConfig, RiskGate
from tests.engine.risk_support import (
    BTC,
    SUSHI,
    agg_trade,
    depth,
    gate,
    mark_price,
    partial_book,
    reference_filters,
)

D = Decimal
WIDE = RiskConfig(max_position_notional=D(1_000_000), max_leverage=D(100), risk_per_trade=D("0.05"))


class Recorder:
    def __init__(self) -> None:
        self.reports: list[ExecutionReport] = []
        self.funding: list[FundingPayment] = []

    def on_report(self, report: ExecutionReport) -> None:
        self.reports.append(report)

    def on_funding(self, payment: FundingPayment) -> None:
        self.funding.append(payment)

    def on_equity(self, point: EquityPoint) -> None:
        return None

    def updates(self, client_id: str) -> list[OrderUpdate]:
        return [r.update for r in self.reports if r.update.order.client_id == client_id]

    def fills(self, client_id: str) -> list[tuple[Decimal, Decimal]]:
        return [(f.price, f.qty) for r in self.reports for f in r.fills if f.client_id == client_id]

    def exits(self) -> list[Order]:
        return [
            r.update.order
            for r in self.reports
            if r.update.order.purpose.startswith("exit:") and r.update.status is OrderStatus.NEW
        ]


@dataclasses.dataclass
class Desk:
    clock: ManualClock
    gate: RiskGate
    portfolio: Portfolio
    exchange: PaperExchange
    seen: Recorder

    def order(
        self,
        side: Side,
        qty: str,
        price: str | None = None,
        *,
        symbol: str = SUSHI,
        reduce_only: bool = False,
        stop: str | None = None,
        take_profit: str | None = None,
        purpose: str = "entry",
    ) -> Order:
        """An order sealed by the gate with exactly these fields (the gate's own sealing)."""
        return self.gate._order(
            symbol,
            side,
            OrderType.MARKET if price is None else OrderType.LIMIT,
            D(qty),
            None if price is None else D(price),
            reduce_only=reduce_only,
            stop=None if stop is None else D(stop),
            take_profit=None if take_profit is None else D(take_profit),
            ts_ns=self.clock.time_ns(),
            model_version="m1",
            purpose=purpose,
        )

    def submit(self, side: Side, qty: str, price: str | None = None, **kwargs: object) -> Order:
        order = self.order(side, qty, price, **kwargs)  # type: ignore[arg-type]
        self.exchange.submit(order)
        return order

    def arrive(self, book: OrderBook) -> None:
        self.clock.advance(0.05)
        self.exchange.on_book(book, self.clock.time_ns())

    def trade(self, price: str, qty: str, *, taker_sold: bool, symbol: str = SUSHI) -> None:
        self.exchange.on_trade(
            agg_trade(symbol, price, qty, taker_sold=taker_sold), self.clock.time_ns()
        )

    def last(self, order: Order) -> OrderUpdate:
        return self.seen.updates(order.client_id)[-1]


def make_desk(
    *positions: Position, margin: mg.MarginSettings | None = None, cfg: PaperConfig | None = None
) -> Desk:
    clock = ManualClock()
    g = gate(clock, WIDE)
    portfolio = Portfolio(D(10_000), positions)
    seen = Recorder()
    ex = PaperExchange(
        cfg or PaperConfig(), clock, g, portfolio, reference_filters(), seen, margin=margin
    )
    return Desk(clock, g, portfolio, ex, seen)


def book(
    bids: list[tuple[str, str]], asks: list[tuple[str, str]], symbol: str = SUSHI
) -> OrderBook:
    return partial_book(symbol, bids, asks)


def update(b: OrderBook, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> OrderBook:
    b.apply_partial(depth(b.symbol, bids, asks, b.last_update_id + 1, 0))
    return b


def isolated(leverage: int) -> mg.MarginSettings:
    return mg.MarginSettings(leverage, True, {BTC: mg.BTCUSDT_BRACKETS})


def cross(leverage: int) -> mg.MarginSettings:
    return mg.MarginSettings(leverage, False, {BTC: mg.BTCUSDT_BRACKETS})


# -- submission and order state ---------------------------------------------------------------


def test_a_new_order_is_acknowledged_at_once_with_no_fills_fees_or_reason() -> None:
    d = make_desk()
    order = d.order(Side.BUY, "5", "7.600")
    assert d.exchange.submit(order) == OrderUpdate(
        order, OrderStatus.NEW, D(0), None, D(0), d.clock.now_ns, ""
    )
    with pytest.raises(OrderNotApprovedError, match=f"order {order.client_id} was not approved"):
        d.exchange.submit(dataclasses.replace(order, qty=D(6)))


def test_a_resubmitted_working_order_answers_its_state_now_and_a_finished_one_is_refused() -> None:
    d = make_desk()
    b = book([("7.610", "50")], [("7.616", "3"), ("7.617", "100")])
    limit = d.submit(Side.BUY, "5", "7.616")
    d.arrive(b)
    d.clock.advance(1)
    again = d.exchange.submit(limit)
    assert (again.status, again.filled_qty, again.ts_ns, again.reason) == (
        OrderStatus.PARTIALLY_FILLED,
        D(3),
        d.clock.now_ns,
        "",
    )
    assert again.fees == D("7.616") * 3 * D("0.0004")
    market = d.submit(Side.BUY, "1")
    d.arrive(update(b, [("7.610", "50")], [("7.620", "100")]))
    assert d.exchange.submit(market) == OrderUpdate(
        market, OrderStatus.REJECTED, D(0), None, D(0), d.clock.now_ns, RejectCode.DUPLICATE_ID
    )


def test_a_market_order_is_judged_at_the_mark_on_the_tick_grid() -> None:
    d = make_desk()
    d.portfolio.mark(SUSHI, D("0.5005"))  # on the grid: 0.500; 9 × 0.500 < 5
    refused = d.exchange.submit(d.order(Side.BUY, "9"))
    assert refused.status is OrderStatus.REJECTED
    assert refused.reason == "notional_below_min: SUSHIUSDT: notional 4.5000 < minNotional 5"
    d.portfolio.mark(SUSHI, D("0.5567"))  # 0.557: 9 × 0.557 = 5.013
    assert d.exchange.submit(d.order(Side.BUY, "9")).status is OrderStatus.NEW


def test_without_a_mark_a_market_order_is_checked_on_the_grids_only() -> None:
    d = make_desk()
    off = d.exchange.submit(d.order(Side.BUY, "10.5"))
    assert (off.status, off.reason) == (
        OrderStatus.REJECTED,
        "qty_off_step: SUSHIUSDT: qty 10.5 is not a multiple of 1",
    )
    assert d.exchange.submit(d.order(Side.BUY, "1")).status is OrderStatus.NEW


def test_a_reduce_only_limit_order_is_exempt_from_the_minimum_notional() -> None:
    d = make_desk()
    assert d.exchange.submit(d.order(Side.SELL, "1", "4.000", reduce_only=True)).status is (
        OrderStatus.NEW
    )
    refused = d.exchange.submit(d.order(Side.SELL, "1", "4.000"))
    assert refused.reason.startswith(RejectCode.NOTIONAL_BELOW_MIN)


# -- margin -------------------------------------------------------------------------------------


def _margin_book_desk(margin: mg.MarginSettings) -> tuple[Desk, Decimal]:
    """A flat ETH position that realised 50, 0.1 BTC long, 100 SUSHI short, then three working
    orders: a SUSHI market buy, a reduce-only SUSHI limit, a BTC limit buy 0.004 of 0.01 filled.
    Returns the desk and the fee of that fill."""
    d = make_desk(
        Position("ETHUSDT", realized=D(50)),
        Position(BTC, D("0.1"), D(6500), mark=D(66_000)),
        Position(SUSHI, D(-100), D("-761.6"), mark=D("7.5")),
        margin=margin,
    )
    assert d.exchange.submit(d.order(Side.BUY, "10")).status is OrderStatus.NEW
    assert (
        d.exchange.submit(d.order(Side.BUY, "20", "7.400", reduce_only=True)).status
        is OrderStatus.NEW
    )
    btc = d.submit(Side.BUY, "0.01", "60000", symbol=BTC)
    assert d.last(btc).status is OrderStatus.NEW
    d.arrive(book([("59000", "1")], [("61000", "1")], BTC))
    d.trade("60000", "0.004", taker_sold=True, symbol=BTC)
    assert d.last(btc).filled_qty == D("0.004")
    return d, D(60_000) * D("0.004") * D("0.0002")


def test_available_margin_isolated_holds_each_wallet_and_the_open_limit_orders() -> None:
    d, fee = _margin_book_desk(isolated(10))
    wallet = D(10_000) + 50 - fee
    held = (D(6500) + D(240)) / 10 + D("761.6") / 10 + D(60_000) * D("0.006") / 10
    assert d.exchange.available() == wallet - held


def test_available_margin_cross_holds_notional_over_leverage_and_counts_the_unrealised() -> None:
    d, fee = _margin_book_desk(cross(10))
    wallet = D(10_000) + 50 - fee
    upnl = (D("0.104") * 66_000 - D(6740)) + (D(-100) * D("7.5") + D("761.6"))
    held = D("0.104") * 66_000 / 10 + D(750) / 10 + D(60_000) * D("0.006") / 10
    assert d.exchange.available() == wallet + upnl - held


@pytest.mark.parametrize(("held", "side"), [("0.9", Side.SELL), ("-0.9", Side.BUY)])
def test_an_order_against_the_position_needs_margin_only_for_what_it_opens(
    held: str, side: Side
) -> None:
    d = make_desk(Position(BTC, D(held), D(held) * 65_000, mark=D(65_000)), margin=isolated(10))
    # 5,850 held, 4,150 available: closing 0.9 and opening 0.1 needs 650; all 1.0 would need 6,500.
    assert d.exchange.submit(d.order(side, "1.0", symbol=BTC)).status is OrderStatus.NEW


def test_margin_refusal_names_the_initial_margin_and_the_available_balance() -> None:
    d = make_desk(margin=isolated(10))
    d.portfolio.mark(BTC, D(50_000))
    exact = d.exchange.submit(d.order(Side.BUY, "2", symbol=BTC))  # 10,000 of 10,000
    assert exact.status is OrderStatus.NEW
    d.exchange.cancel_all()
    d.portfolio.mark(BTC, D(65_000))
    refused = d.exchange.submit(d.order(Side.BUY, "2", symbol=BTC))
    assert refused.reason == (
        "margin_insufficient: initial margin 13000 > available 10000 (Binance -2019)"
    )


def test_max_notional_allows_the_cap_itself_and_counts_the_position() -> None:
    d = make_desk(margin=isolated(100))
    d.portfolio.mark(BTC, D(62_500))
    assert d.exchange.submit(d.order(Side.BUY, "4", symbol=BTC)).status is OrderStatus.NEW
    d = make_desk(Position(BTC, D(3), D(195_000), mark=D(65_000)), margin=isolated(100))
    refused = d.exchange.submit(d.order(Side.BUY, "1", symbol=BTC))
    assert refused.reason == (
        "max_notional_exceeded: position 260000 > 250000 allowed at 100x (Binance -2027)"
    )


def test_no_liquidation_price_without_a_margin_model_or_a_position() -> None:
    assert make_desk(Position(BTC, D("0.1"), D(6500))).exchange.liquidation_price(BTC) is None
    assert make_desk(Position(BTC), margin=cross(20)).exchange.liquidation_price(BTC) is None


def test_cross_liquidation_price_counts_the_other_positions_at_their_marks() -> None:
    d = make_desk(
        Position("ETHUSDT", D(2), D(4000), mark=D(2100)),
        Position(SUSHI, D(-100), D("-761.6")),  # no mark yet: valued at its entry
        Position(BTC, D(1), D(65_000), mark=D(66_000)),
        margin=cross(20),
    )
    alt = mg.ALT_BRACKETS
    expected = mg.liquidation_price(
        wallet=D(10_000),
        qty=D(1),
        entry=D(65_000),
        brackets=mg.BTCUSDT_BRACKETS,
        other_maint=mg.maintenance_margin(alt, D(4200)) + mg.maintenance_margin(alt, D("761.6")),
        other_upnl=D(200),
    )
    assert expected is not None
    assert d.exchange.liquidation_price(BTC) == expected


def test_a_liquidated_short_is_bought_back_at_the_mark_by_the_exchanges_own_order() -> None:
    d = make_desk(Position(BTC, D("-0.1"), D(-6500)), margin=isolated(10))
    cover = d.submit(Side.BUY, "0.05", "60000", symbol=BTC, reduce_only=True)
    other = d.submit(Side.BUY, "10", "7.000")
    d.clock.advance(1)
    ts = d.clock.now_ns
    mark = D("71250.0")
    d.exchange.on_mark(mark_price(BTC, str(mark), "0", 10**15, 0), ts)
    assert (d.last(cover).status, d.last(cover).reason) == (OrderStatus.CANCELED, "liquidation")
    assert [u.order.client_id for u in d.exchange.open_orders()] == [other.client_id]
    # Isolated wallet 650, loss 625: 25 left, less than 1.2 % of 7,125.
    fee = D("25.00")
    report = d.seen.reports[-1]
    cid = f"autoclose-{ts // 1_000_000}"
    order = Order(
        cid, BTC, Side.BUY, OrderType.MARKET, D("0.1"), None, True, None, None, ts, "",
        "liquidation", b"",
    )  # fmt: skip
    assert report.update == OrderUpdate(
        order, OrderStatus.FILLED, D("0.1"), mark, fee, ts,
        f"liquidated at mark {mark}, clearance fee {fee}",
    )  # fmt: skip
    assert report.update.order.seal == b""
    assert report.fills == (Fill(cid, BTC, Side.BUY, mark, D("0.1"), fee, Liquidity.TAKER, ts),)
    assert d.portfolio.qty(BTC) == 0


# -- cancels, views ------------------------------------------------------------------------------


def test_cancels_carry_their_reason_and_time_and_cancel_all_keeps_to_its_symbol() -> None:
    d = make_desk()
    a = d.submit(Side.BUY, "10", "7.000")
    b_ = d.submit(Side.SELL, "10", "8.000")
    c = d.submit(Side.BUY, "0.01", "60000", symbol=BTC)
    e = d.submit(Side.BUY, "11", "7.000")
    d.clock.advance(1)
    u = d.exchange.cancel(a.client_id)
    assert u is not None and (u.status, u.reason, u.ts_ns) == (
        OrderStatus.CANCELED,
        "canceled",
        d.clock.now_ns,
    )
    assert [(u.order.client_id, u.reason) for u in d.exchange.cancel_all(SUSHI, "flatten")] == [
        (b_.client_id, "flatten"),
        (e.client_id, "flatten"),
    ]
    assert [u.order.client_id for u in d.exchange.open_orders()] == [c.client_id]
    assert [u.reason for u in d.exchange.cancel_all()] == ["canceled"]


def test_open_orders_and_pending_qty_by_symbol() -> None:
    d = make_desk()
    b = book([("7.610", "50")], [("7.616", "4"), ("7.640", "100")])
    buy = d.submit(Side.BUY, "10", "7.616")
    d.submit(Side.SELL, "3", "7.700")
    d.submit(Side.SELL, "0.5", "70000", symbol=BTC)
    d.arrive(b)
    d.clock.advance(1)
    views = d.exchange.open_orders(SUSHI)
    assert (views[0].order.client_id, views[0].ts_ns) == (buy.client_id, d.clock.now_ns)
    assert len(views) == 2 and all(v.order.symbol == SUSHI for v in views)
    assert d.exchange.pending_qty() == {SUSHI: D(10 - 4 - 3), BTC: D("-0.5")}
    assert d.exchange.position_qty(SUSHI) == 4
    assert d.exchange.position_qty(BTC) == 0
    assert d.exchange.snapshot().ts_ns == d.clock.now_ns
    assert d.exchange.snapshot(123).ts_ns == 123


def test_kill_switch_cancels_working_orders_with_its_reason() -> None:
    d = make_desk()
    resting = d.submit(Side.BUY, "10", "7.000")
    kill_switch(d.gate, d.exchange, "manual")
    assert d.last(resting).reason == "kill switch"


# -- trades and queues ---------------------------------------------------------------------------


def test_a_trade_before_the_order_arrives_fills_nothing() -> None:
    d = make_desk()
    order = d.submit(Side.BUY, "10", "7.612")
    d.trade("7.600", "100", taker_sold=True)
    assert d.seen.fills(order.client_id) == []


def test_one_trade_passes_orders_it_cannot_fill_and_fills_the_one_it_reaches() -> None:
    d = make_desk()
    b = book([("7.610", "300")], [("7.620", "100")])
    sell = d.submit(Side.SELL, "10", "7.630")
    low = d.submit(Side.BUY, "10", "7.605")
    queued = d.submit(Side.BUY, "10", "7.610")  # 300 ahead
    reached = d.submit(Side.BUY, "1", "7.612")
    d.arrive(b)
    d.trade("7.610", "100", taker_sold=True)
    assert [d.seen.fills(o.client_id) for o in (sell, low, queued, reached)] == [
        [],
        [],
        [],
        [(D("7.612"), D(1))],
    ]


def test_a_resting_sell_waits_for_its_queue_then_fills_and_is_filled_when_traded_through() -> None:
    d = make_desk()
    b = book([("7.610", "100")], [("7.620", "50")])
    sell = d.submit(Side.SELL, "50", "7.620")
    d.arrive(b)
    d.trade("7.620", "30", taker_sold=False)
    assert d.seen.fills(sell.client_id) == []
    d.trade("7.620", "30", taker_sold=False)
    assert d.seen.fills(sell.client_id) == [(D("7.620"), D(10))]
    d.trade("7.625", "1", taker_sold=False)  # through our price
    assert d.seen.fills(sell.client_id)[-1] == (D("7.620"), D(40))


def test_each_trade_at_the_price_shortens_the_queue_by_its_size() -> None:
    d = make_desk()
    b = book([("7.612", "300")], [("7.620", "100")])
    buy = d.submit(Side.BUY, "100", "7.612")
    d.arrive(b)
    d.trade("7.612", "200", taker_sold=True)
    d.trade("7.612", "150", taker_sold=True)
    assert d.seen.fills(buy.client_id) == [(D("7.612"), D(50))]


def test_a_reduce_only_order_with_nothing_left_to_reduce_is_not_filled_by_trades() -> None:
    d = make_desk(Position(SUSHI, D(10), D("76.1"), mark=D("7.61")))
    b = book([("7.610", "100")], [("7.625", "100")])
    resting = d.submit(Side.SELL, "10", "7.620", reduce_only=True)
    d.submit(Side.SELL, "10", reduce_only=True, purpose="reduce")
    d.arrive(b)
    assert d.portfolio.qty(SUSHI) == 0
    d.trade("7.620", "5", taker_sold=False)
    assert d.seen.fills(resting.client_id) == []
    assert d.last(resting).status is OrderStatus.NEW


def test_funding_is_settled_once_per_funding_time() -> None:
    d = make_desk(Position(SUSHI, D(100), D(761), mark=D("7.61")))
    ts = d.clock.now_ns
    for next_ms, now_ms in ((5000, 1000), (5000, 5000), (5000, 5100), (13_000, 6000)):
        d.exchange.on_mark(mark_price(SUSHI, "7.700", "0.0001", next_ms, now_ms), ts)
    assert [p.amount for p in d.seen.funding] == [D(-100) * D("7.700") * D("0.0001")]
    d = make_desk(Position(SUSHI, D(100), D(761), mark=D("7.61")))
    d.exchange.on_mark(mark_price(SUSHI, "7.700", "0.0001", 1, 0), ts)
    d.exchange.on_mark(mark_price(SUSHI, "7.700", "0.0001", 10_000, 1), ts)
    assert len(d.seen.funding) == 1  # the first funding time announced, however early


# -- arrival, the walk, reduce-only ---------------------------------------------------------------


def test_a_reduce_only_order_on_the_positions_own_side_expires_and_one_against_it_fills() -> None:
    d = make_desk(Position(BTC, D("0.5"), D(32_500), mark=D(65_000)))
    b = book([("65000", "5")], [("65010", "5")], BTC)
    same = d.submit(Side.BUY, "0.5", symbol=BTC, reduce_only=True, purpose="reduce")
    d.arrive(b)
    assert d.last(same) == OrderUpdate(
        same, OrderStatus.EXPIRED, D(0), None, D(0), d.clock.now_ns,
        "reduce-only: nothing to reduce",
    )  # fmt: skip
    closing = d.submit(Side.SELL, "0.5", symbol=BTC, reduce_only=True, purpose="reduce")
    d.arrive(b)
    assert (d.last(closing).status, d.last(closing).reason) == (OrderStatus.FILLED, "")
    assert d.portfolio.qty(BTC) == 0


def test_a_market_order_one_short_expires_and_its_fees_add_up() -> None:
    d = make_desk()
    b = book([("7.610", "50")], [("7.616", "2"), ("7.617", "1")])
    order = d.submit(Side.BUY, "4")
    d.arrive(b)
    last = d.last(order)
    assert (last.status, last.filled_qty, last.reason) == (
        OrderStatus.EXPIRED,
        D(3),
        "book exhausted: filled 3 of 4",
    )
    assert last.fees == (D("7.616") * 2 + D("7.617")) * D("0.0004")


def test_liquidity_taken_accumulates_per_level_until_the_book_updates() -> None:
    d = make_desk()
    b = book([("7.610", "50")], [("7.616", "3"), ("7.617", "20")])
    orders = [d.submit(Side.BUY, q) for q in ("1", "1", "2", "1")]
    d.arrive(b)
    assert [d.seen.fills(o.client_id) for o in orders] == [
        [(D("7.616"), D(1))],
        [(D("7.616"), D(1))],
        [(D("7.616"), D(1)), (D("7.617"), D(1))],
        [(D("7.617"), D(1))],
    ]


def test_a_sell_limit_at_the_best_bid_takes_it_and_rests_the_rest() -> None:
    d = make_desk()
    b = book([("7.612", "10"), ("7.611", "10")], [("7.620", "10")])
    sell = d.submit(Side.SELL, "15", "7.612")
    d.arrive(b)
    assert d.seen.fills(sell.client_id) == [(D("7.612"), D(10))]
    assert (d.last(sell).status, d.last(sell).reason) == (OrderStatus.PARTIALLY_FILLED, "")


def test_a_limit_order_with_one_unit_left_keeps_working() -> None:
    d = make_desk()
    b = book([("7.610", "10")], [("7.616", "4"), ("7.630", "10")])
    buy = d.submit(Side.BUY, "5", "7.616")
    d.arrive(b)
    assert (d.last(buy).status, d.last(buy).filled_qty) == (OrderStatus.PARTIALLY_FILLED, D(4))


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_the_deep_book_is_walked_on_the_side_the_order_takes(side: Side) -> None:
    d = make_desk()
    deep = [(f"{D('7.616') + D('0.001') * i}", "1") for i in range(40)]
    low = [(f"{D('7.600') - D('0.001') * i}", "1") for i in range(40)]
    b = book([("7.600", "1")], deep) if side is Side.BUY else book(low, [("7.616", "1")])
    order = d.submit(side, "40")
    d.arrive(b)
    assert (d.last(order).status, d.last(order).filled_qty) == (OrderStatus.FILLED, D(40))


# -- queue positions -----------------------------------------------------------------------------


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_a_level_beyond_the_scanned_depth_is_not_seen(side: Side) -> None:
    d = make_desk(cfg=PaperConfig(scan_levels=2))
    bids = [("7.612", "10"), ("7.611", "10"), ("7.610", "10"), ("7.609", "300")]
    asks = [("7.620", "10"), ("7.621", "10"), ("7.622", "10"), ("7.623", "300")]
    price = "7.609" if side is Side.BUY else "7.623"
    order = d.submit(side, "50", price)
    d.arrive(book(bids, asks))
    d.trade(price, "50", taker_sold=side is Side.BUY)  # front of the queue: nothing seen ahead
    assert d.seen.fills(order.client_id) == [(D(price), D(50))]


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_an_order_behind_better_levels_queues_behind_its_own(side: Side) -> None:
    d = make_desk()
    price = "7.611" if side is Side.BUY else "7.621"
    order = d.submit(side, "50", price)
    d.arrive(book([("7.612", "100"), ("7.611", "300")], [("7.620", "100"), ("7.621", "300")]))
    d.trade(price, "100", taker_sold=side is Side.BUY)
    assert d.seen.fills(order.client_id) == []


def test_a_level_gone_from_view_forgets_the_queue_only_if_the_book_reaches_past_it() -> None:
    d = make_desk()
    b = book([("7.612", "300")], [("7.620", "100")])
    buy = d.submit(Side.BUY, "100", "7.612")
    d.arrive(b)
    d.exchange.on_book(update(b, [("7.615", "10"), ("7.614", "10")], [("7.620", "100")]), 0)
    d.trade("7.612", "40", taker_sold=True)  # out of view: still 300 ahead
    assert d.seen.fills(buy.client_id) == []
    d.exchange.on_book(update(b, [("7.613", "10"), ("7.611", "10")], [("7.620", "100")]), 0)
    d.trade("7.612", "40", taker_sold=True)  # seen past it: the level is empty
    assert d.seen.fills(buy.client_id) == [(D("7.612"), D(40))]


def test_a_resting_sell_moves_up_as_its_level_shrinks() -> None:
    d = make_desk()
    b = book([("7.610", "100")], [("7.620", "300")])
    sell = d.submit(Side.SELL, "100", "7.620")
    d.arrive(b)
    d.exchange.on_book(update(b, [("7.610", "100")], [("7.620", "60")]), 0)
    d.trade("7.620", "100", taker_sold=False)
    assert d.seen.fills(sell.client_id) == [(D("7.620"), D(40))]


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_the_other_side_arriving_exactly_at_a_resting_price_fills_it(side: Side) -> None:
    d = make_desk()
    b = book([("7.610", "100")], [("7.620", "100")])
    price = "7.612" if side is Side.BUY else "7.618"
    order = d.submit(side, "50", price)
    d.arrive(b)
    if side is Side.BUY:
        update(b, [("7.600", "100")], [("7.612", "30"), ("7.613", "100")])
    else:
        update(b, [("7.618", "30"), ("7.617", "100")], [("7.630", "100")])
    d.exchange.on_book(b, 0)
    assert d.seen.fills(order.client_id) == [(D(price), D(30))]


# -- brackets and exits --------------------------------------------------------------------------


def _long(d: Desk, qty: str, b: OrderBook, **brackets: str) -> Order:
    entry = d.submit(Side.BUY, qty, **brackets)  # type: ignore[arg-type]
    d.arrive(b)
    assert d.portfolio.qty(SUSHI) == D(qty)
    return entry


def test_a_one_unit_long_exits_at_its_stop_on_the_bid_and_not_between() -> None:
    d = make_desk()
    b = book([("7.610", "500")], [("7.616", "500")])
    _long(d, "1", b, stop="7.576", take_profit="7.676")
    d.exchange.on_book(update(b, [("7.600", "500")], [("7.610", "500")]), 0)
    assert d.seen.exits() == []
    d.exchange.on_book(update(b, [("7.576", "500")], [("7.580", "500")]), 0)
    assert [(o.purpose, o.side, o.qty) for o in d.seen.exits()] == [("exit:stop", Side.SELL, 1)]


@pytest.mark.parametrize(
    ("brackets", "bid", "purpose"),
    [
        ({"stop": "7.576"}, "7.576", "exit:stop"),
        ({"take_profit": "7.676"}, "7.676", "exit:take_profit"),
    ],
)
def test_an_entry_with_one_bracket_arms_it(
    brackets: dict[str, str], bid: str, purpose: str
) -> None:
    d = make_desk()
    b = book([("7.610", "500")], [("7.616", "500")])
    _long(d, "100", b, **brackets)
    d.exchange.on_book(update(b, [(bid, "500")], [(f"{D(bid) + D('0.004')}", "500")]), 0)
    assert [o.purpose for o in d.seen.exits()] == [purpose]


@pytest.mark.parametrize(
    ("position", "bid", "purpose"),
    [
        (Position(SUSHI, D(100), D(761), mark=D("7.61"), stop_price=D("7.576")), "7.576", "stop"),
        (
            Position(SUSHI, D(100), D(761), mark=D("7.61"), take_profit=D("7.676")),
            "7.676",
            "take_profit",
        ),
    ],
)
def test_a_restored_position_keeps_its_one_bracket(
    position: Position, bid: str, purpose: str
) -> None:
    d = make_desk(position)
    d.exchange.on_book(book([(bid, "500")], [(f"{D(bid) + D('0.004')}", "500")]), 0)
    assert [o.purpose for o in d.seen.exits()] == [f"exit:{purpose}"]


@pytest.mark.parametrize(
    ("bid", "ask", "purpose"),
    [("7.640", "7.656", "exit:stop"), ("7.550", "7.556", "exit:take_profit")],
)
def test_a_short_exits_on_the_ask_exactly_at_its_stop_or_target(
    bid: str, ask: str, purpose: str
) -> None:
    d = make_desk()
    b = book([("7.610", "500")], [("7.616", "500")])
    d.submit(Side.SELL, "100", stop="7.656", take_profit="7.556")
    d.arrive(b)
    d.exchange.on_book(update(b, [(bid, "500")], [(ask, "500")]), 0)
    assert [(o.purpose, o.side) for o in d.seen.exits()] == [(purpose, Side.BUY)]


def test_a_long_takes_profit_exactly_at_its_target() -> None:
    d = make_desk()
    b = book([("7.610", "500")], [("7.616", "500")])
    _long(d, "100", b, stop="7.576", take_profit="7.676")
    d.exchange.on_book(update(b, [("7.676", "500")], [("7.680", "500")]), 0)
    assert [(o.purpose, o.side, o.qty) for o in d.seen.exits()] == [
        ("exit:take_profit", Side.SELL, 100)
    ]


def test_only_an_entry_that_grows_the_position_sets_its_brackets() -> None:
    d = make_desk()
    b = book([("7.610", "500")], [("7.616", "500")])
    _long(d, "100", b, stop="7.576", take_profit="7.676")
    d.submit(Side.SELL, "40", reduce_only=True, purpose="reduce")
    d.submit(Side.SELL, "20", stop="7.700", take_profit="7.500")  # an entry that only reduces
    d.arrive(b)
    pos = d.portfolio.position(SUSHI)
    assert (pos.qty, pos.stop_price, pos.take_profit) == (40, D("7.576"), D("7.676"))
    d.submit(Side.SELL, "40", stop="7.700", take_profit="7.500")  # closes it exactly
    d.arrive(b)
    pos = d.portfolio.position(SUSHI)
    assert (pos.qty, pos.stop_price, pos.take_profit) == (0, None, None)


def test_a_reduce_only_limit_expires_when_the_position_is_gone() -> None:
    d = make_desk(Position(SUSHI, D(10), D("76.1"), mark=D("7.61")))
    b = book([("7.610", "100")], [("7.625", "100")])
    sell = d.submit(Side.SELL, "15", "7.620", reduce_only=True, purpose="reduce")
    d.arrive(b)
    d.trade("7.630", "1", taker_sold=False)
    last = d.last(sell)
    assert (last.status, last.filled_qty, last.reason) == (
        OrderStatus.EXPIRED,
        D(10),
        "reduce-only: position closed",
    )


def test_after_a_flatten_fills_the_next_entrys_stop_can_fire() -> None:
    d = make_desk()
    b = book([("7.610", "500")], [("7.616", "500")])
    _long(d, "100", b, stop="7.576", take_profit="7.676")
    flatten = d.gate.exit_order(SUSHI, D(100), "kill", d.clock.now_ns)
    assert flatten is not None
    d.exchange.submit(flatten)
    d.arrive(b)
    assert d.portfolio.qty(SUSHI) == 0
    _long(d, "100", b, stop="7.576", take_profit="7.676")
    d.exchange.on_book(update(b, [("7.570", "500")], [("7.575", "500")]), 0)
    assert [o.purpose for o in d.seen.exits()] == ["exit:stop"]

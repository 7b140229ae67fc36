"""Paper execution: market orders walk the (real) book after the latency, limit orders queue and
fill partially, filters and fees hold, funding settles once, exits and the kill switch work, and
everything lands in a real SQLite file."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from app.binance.filters import SymbolFilters
from app.clock import ManualClock
from app.engine.book import DiffDepthSync, OrderBook
from app.engine.events import AggTrade, DepthUpdate, Level
from app.engine.orders import (
    Liquidity,
    Order,
    OrderNotApprovedError,
    OrderStatus,
    OrderType,
    RejectCode,
    Side,
    expire_open_orders,
    load_fills,
    load_orders,
)
from app.engine.paper import (
    ExecutionReport,
    PaperConfig,
    PaperExchange,
    PaperLedger,
    kill_switch,
)
from app.engine.portfolio import Portfolio, equity_series, load_positions
from app.engine.risk import (
    Approved,
    RiskConfig,
    RiskContext,
    RiskGate,
    load_breaker_state,
    persisting,
)
from tests.engine.reference import recorded_snapshots
from tests.engine.risk_support import (
    SUSHI,
    agg_trade,
    depth,
    direct,
    gate,
    intent,
    mark_price,
    open_db,
    reference_filters,
    sushi_events,
    synced_sushi_book,
)

D = Decimal
WIDE = RiskConfig(max_position_notional=D(1_000_000), max_leverage=D(100), risk_per_trade=D("0.05"))
TAKER = D("0.0004")
MAKER = D("0.0002")


@dataclasses.dataclass
class Env:
    clock: ManualClock
    conn: sqlite3.Connection
    gate: RiskGate
    portfolio: Portfolio
    exchange: PaperExchange

    def order(self, side: Side = Side.BUY, **kwargs: Any) -> Order:
        """An order approved by the gate (explicit sizes unless told otherwise)."""
        account = self.exchange.snapshot()
        symbol = str(kwargs.get("symbol", SUSHI))
        ctx = RiskContext(account, reference_filters()[symbol], self.exchange.pending_qty())
        decision = self.gate.check(intent(self.clock, side, **kwargs), ctx)
        assert isinstance(decision, Approved), decision
        return decision.order

    def after_latency(self, book: OrderBook) -> None:
        self.clock.advance(0.05)
        self.exchange.on_book(book, self.clock.time_ns())

    def row(self, client_id: str) -> dict[str, object]:
        return next(r for r in load_orders(self.conn) if r["client_id"] == client_id)


def _env(
    tmp_path: Path, cfg: RiskConfig = WIDE, filters: dict[str, SymbolFilters] | None = None
) -> Env:
    clock = ManualClock()
    conn = open_db(tmp_path / "trading.db")
    on_event, on_state = persisting(direct(conn), clock)
    g = gate(clock, cfg, on_event=on_event, on_state=on_state)
    portfolio = Portfolio(D(10_000))
    ledger = PaperLedger(direct(conn), portfolio, g)
    exchange = PaperExchange(
        PaperConfig(latency_ms=50, equity_interval_s=5.0),
        clock,
        g,
        portfolio,
        filters if filters is not None else reference_filters(),
        ledger,
    )
    return Env(clock, conn, g, portfolio, exchange)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = _env(tmp_path)
    yield e
    e.conn.close()


def _book(bids: list[Level], asks: list[Level], update_id: int = 1) -> OrderBook:
    book = OrderBook(SUSHI)
    book.apply_partial(depth(SUSHI, bids, asks, update_id, 0))
    return book


def _update(book: OrderBook, bids: list[Level], asks: list[Level]) -> OrderBook:
    book.apply_partial(depth(SUSHI, bids, asks, book.last_update_id + 1, 0))
    return book


# -- market orders ----------------------------------------------------------------------------


def test_market_order_walks_the_real_book_with_taker_fees(env: Env) -> None:
    book = synced_sushi_book()
    asks = book.asks(10)
    order = env.order(qty=D(1500), price=asks[0][0])
    assert env.exchange.submit(order).status == OrderStatus.NEW
    env.exchange.on_book(book, env.clock.time_ns())  # before the latency: nothing happens
    assert load_fills(env.conn) == []
    env.after_latency(book)

    # Oracle: walk the same levels with fractions.
    left, expected = Fraction(1500), []
    for price, qty in asks:
        take = min(left, Fraction(qty))
        if take:
            expected.append((D(price), D(int(take))))
        left -= take
    fills = load_fills(env.conn, order.client_id)
    assert [(D(str(f["price"])), D(str(f["qty"]))) for f in fills] == expected
    assert len(expected) >= 3  # it really walked: the best level was too small
    notional = sum((p * q for p, q in expected), D(0))
    assert sum((D(str(f["fee"])) for f in fills), D(0)) == notional * TAKER
    row = env.row(order.client_id)
    assert row["status"] == "FILLED"
    assert D(str(row["avg_price"])) == notional / 1500
    pos = load_positions(env.conn)[0]
    assert (pos.symbol, pos.qty, pos.cost) == (SUSHI, D(1500), notional)
    for f in fills:  # on the exchange's grids
        assert D(str(f["price"])) % reference_filters()[SUSHI].tick_size == 0
        assert D(str(f["qty"])) % reference_filters()[SUSHI].step_size == 0


def test_latency_fills_against_the_book_as_it_is_later(env: Env) -> None:
    book = _book([("9.990", "100")], [("10.000", "100")])
    order = env.order(qty=D(5), price="10.000")
    env.exchange.submit(order)
    env.clock.advance(0.01)
    env.exchange.on_book(
        _update(book, [("10.090", "100")], [("10.100", "100")]), env.clock.time_ns()
    )
    assert env.exchange.open_orders()[0].filled_qty == 0
    env.clock.advance(0.04)  # exactly the latency
    env.exchange.on_book(
        _update(book, [("10.190", "100")], [("10.200", "100")]), env.clock.time_ns()
    )
    assert [(f["price"], f["qty"]) for f in load_fills(env.conn)] == [("10.200", "5")]


def test_market_order_larger_than_the_book_fills_partially_and_expires(env: Env) -> None:
    book = _book([("7.610", "50")], [("7.616", "3"), ("7.617", "2")])
    order = env.order(qty=D(10), price="7.616")
    env.exchange.submit(order)
    env.after_latency(book)
    row = env.row(order.client_id)
    assert (row["status"], row["filled_qty"]) == ("EXPIRED", "5")
    assert "book exhausted" in str(row["reason"])
    assert env.portfolio.position(SUSHI).qty == 5


def test_liquidity_taken_is_gone_until_the_book_updates(env: Env) -> None:
    book = _book([("7.610", "50")], [("7.616", "3"), ("7.617", "20")])
    first, second = env.order(qty=D(2), price="7.616"), env.order(qty=D(2), price="7.616")
    env.exchange.submit(first)
    env.exchange.submit(second)
    env.after_latency(book)
    prices = [(f["client_id"], f["price"], f["qty"]) for f in load_fills(env.conn)]
    assert prices == [
        (first.client_id, "7.616", "2"),
        (second.client_id, "7.616", "1"),
        (second.client_id, "7.617", "1"),
    ]


# -- limit orders -----------------------------------------------------------------------------


def test_limit_order_waits_its_turn_and_fills_partially(env: Env) -> None:
    book = _book([("7.612", "300"), ("7.611", "500")], [("7.616", "100")])
    order = env.order(qty=D(100), price="7.612", order_type=OrderType.LIMIT, limit_price=D("7.612"))
    env.exchange.submit(order)
    env.after_latency(book)  # placed behind 300
    ex, ts = env.exchange, env.clock.time_ns()
    ex.on_trade(agg_trade(SUSHI, "7.612", "200", taker_sold=True), ts)  # 100 still ahead
    ex.on_trade(agg_trade(SUSHI, "7.612", "500", taker_sold=False), ts)  # hits asks: not us
    ex.on_trade(agg_trade(SUSHI, "7.611", "900", taker_sold=False), ts)
    assert load_fills(env.conn) == []
    ex.on_book(_update(book, [("7.612", "250")], [("7.616", "100")]), ts)  # behind us: no gain
    ex.on_book(_update(book, [("7.612", "60")], [("7.616", "100")]), ts)  # cancels ahead: 60
    ex.on_trade(agg_trade(SUSHI, "7.612", "100", taker_sold=True), ts)  # 60 ahead, 40 to us
    row = env.row(order.client_id)
    assert (row["status"], row["filled_qty"]) == ("PARTIALLY_FILLED", "40")
    ex.on_trade(agg_trade(SUSHI, "7.612", "100", taker_sold=True), ts)
    fills = load_fills(env.conn, order.client_id)
    assert [(D(str(f["price"])), f["qty"], f["liquidity"]) for f in fills] == [
        (D("7.612"), "40", "maker"),
        (D("7.612"), "60", "maker"),
    ]
    assert [D(str(f["fee"])) for f in fills] == [D("7.612") * 40 * MAKER, D("7.612") * 60 * MAKER]
    assert env.row(order.client_id)["status"] == "FILLED"
    assert not ex.open_orders()


def test_marketable_limit_takes_up_to_its_price_then_rests_and_is_traded_through(
    env: Env,
) -> None:
    book = _book([("7.610", "10")], [("7.616", "50"), ("7.617", "30"), ("7.618", "900")])
    order = env.order(
        qty=D(100), price="7.616", order_type=OrderType.LIMIT, limit_price=D("7.6179")
    )
    assert order.price == D("7.617")  # a buy rounds down to the tick
    env.exchange.submit(order)
    env.after_latency(book)
    row = env.row(order.client_id)
    assert (row["status"], row["filled_qty"]) == ("PARTIALLY_FILLED", "80")
    env.exchange.on_trade(
        agg_trade(SUSHI, "7.615", "25", taker_sold=True), env.clock.time_ns()
    )  # a sale below our bid: everything at 7.617 went first
    fills = [(D(str(f["price"])), f["qty"], f["liquidity"]) for f in load_fills(env.conn)]
    assert fills == [
        (D("7.616"), "50", "taker"),
        (D("7.617"), "30", "taker"),
        (D("7.617"), "20", "maker"),
    ]


def test_the_other_side_reaching_a_resting_order_fills_it_as_far_as_it_goes(env: Env) -> None:
    book = _book([("7.612", "300")], [("7.616", "100")])
    order = env.order(qty=D(100), order_type=OrderType.LIMIT, limit_price=D("7.612"))
    env.exchange.submit(order)
    env.after_latency(book)
    # Asks at and below our bid: 30 + 20 trade with us at our price, as the maker.
    _update(book, [("7.605", "10")], [("7.611", "20"), ("7.612", "30"), ("7.613", "900")])
    env.exchange.on_book(book, env.clock.time_ns())
    fills = [(D(str(f["price"])), f["qty"], f["liquidity"]) for f in load_fills(env.conn)]
    assert fills == [(D("7.612"), "20", "maker"), (D("7.612"), "30", "maker")]
    assert env.row(order.client_id)["status"] == "PARTIALLY_FILLED"


def test_working_orders_expire_with_the_process(tmp_path: Path) -> None:
    env = _env(tmp_path)
    order = env.order(qty=D(10), order_type=OrderType.LIMIT, limit_price=D("7.600"))
    env.exchange.submit(order)
    env.conn.close()
    conn = open_db(tmp_path / "trading.db")
    try:
        assert expire_open_orders(conn, 1, "engine restarted") == 1
        assert load_orders(conn, open_only=True) == []
        assert load_orders(conn)[0]["status"] == "EXPIRED"
    finally:
        conn.close()


def test_a_cancelled_limit_order_fills_no_more(env: Env) -> None:
    book = _book([("7.612", "0.5"), ("7.611", "5")], [("7.616", "100")])
    order = env.order(qty=D(10), order_type=OrderType.LIMIT, limit_price=D("7.611"))
    env.exchange.submit(order)
    env.after_latency(book)
    update = env.exchange.cancel(order.client_id)
    assert update is not None and update.status == OrderStatus.CANCELED
    assert env.exchange.cancel(order.client_id) is None
    env.exchange.on_trade(agg_trade(SUSHI, "7.600", "99", taker_sold=True), env.clock.time_ns())
    assert load_fills(env.conn) == []
    assert env.row(order.client_id)["status"] == "CANCELED"


# -- filters, seals, idempotency ---------------------------------------------------------------


def test_paper_enforces_tick_step_and_min_notional_even_on_sealed_orders(tmp_path: Path) -> None:
    # The gate judged with stale rules (finer tick and step, lower minimum); the exchange's
    # current rules (the reference exchangeInfo) still apply at execution.
    real = reference_filters()
    stale = {
        s: dataclasses.replace(f, tick_size=D("0.0001"), step_size=D("0.1"), min_notional=D(1))
        for s, f in real.items()
    }
    env = _env(tmp_path)
    exchange = env.exchange
    try:
        for change, code in (
            ({"limit_price": D("7.6123"), "qty": D(10)}, RejectCode.PRICE_OFF_TICK),
            ({"limit_price": D("7.612"), "qty": D("10.5")}, RejectCode.QTY_OFF_STEP),
            ({"limit_price": D("0.5"), "qty": D(9)}, RejectCode.NOTIONAL_BELOW_MIN),
        ):
            ctx = RiskContext(exchange.snapshot(), stale[SUSHI])
            decision = env.gate.check(
                intent(env.clock, order_type=OrderType.LIMIT, **change),  # type: ignore[arg-type]
                ctx,
            )
            assert isinstance(decision, Approved), (change, decision)
            update = exchange.submit(decision.order)
            assert update.status == OrderStatus.REJECTED
            assert update.reason.startswith(code), update.reason
            assert env.row(decision.order.client_id)["status"] == "REJECTED"
        assert not exchange.open_orders()
    finally:
        env.conn.close()


def test_orders_without_the_gates_seal_never_execute(env: Env) -> None:
    order = env.order(qty=D(5))
    forged = dataclasses.replace(order, qty=D(5000))
    with pytest.raises(OrderNotApprovedError):
        env.exchange.submit(forged)
    foreign = gate(env.clock, WIDE, boot=9)
    other = foreign.exit_order(SUSHI, D(-5), "kill", env.clock.time_ns())
    assert other is not None
    with pytest.raises(OrderNotApprovedError):
        env.exchange.submit(other)
    assert load_orders(env.conn) == []


def test_submitting_the_same_client_id_twice_executes_once(env: Env) -> None:
    book = _book([("7.610", "50")], [("7.616", "300")])
    order = env.order(qty=D(5))
    env.exchange.submit(order)
    assert env.exchange.submit(order).status == OrderStatus.NEW
    env.after_latency(book)
    again = env.exchange.submit(order)
    assert (again.status, again.reason) == (OrderStatus.REJECTED, RejectCode.DUPLICATE_ID)
    env.after_latency(book)
    assert len(load_fills(env.conn)) == 1
    assert env.portfolio.position(SUSHI).qty == 5


# -- funding, equity, exits, kill switch -------------------------------------------------------


def _buy(env: Env, qty: int, book: OrderBook, **kwargs: Any) -> Order:
    order = env.order(qty=D(qty), price=book.asks(1)[0][0], **kwargs)
    env.exchange.submit(order)
    env.after_latency(book)
    return order


def test_funding_settles_once_when_the_funding_time_passes(env: Env) -> None:
    book = _book([("7.610", "500")], [("7.616", "500")])
    _buy(env, 100, book)
    ex, ts = env.exchange, env.clock.time_ns()
    ex.on_mark(mark_price(SUSHI, "7.650", "0.0001", 5000, 1000), ts)
    ex.on_mark(mark_price(SUSHI, "7.660", "0.0001", 5000, 4999), ts)
    ex.on_mark(mark_price(SUSHI, "7.700", "0.0003", 10_000, 5000), ts)  # settles at 0.0001
    ex.on_mark(mark_price(SUSHI, "7.700", "0.0003", 10_000, 6000), ts)
    rows = env.conn.execute(
        "SELECT rate, mark, position_qty, amount FROM funding_payments"
    ).fetchall()
    assert rows == [("0.0001", "7.700", "100", "-0.0770000")]
    snap = ex.snapshot()
    assert snap.funding == D("-0.077")
    assert snap.unrealized == 100 * (D("7.700") - D("7.616"))
    assert snap.equity == D(10_000) - D("761.6") * TAKER - D("0.077") + snap.unrealized


def test_equity_series_is_sampled_and_persisted(env: Env) -> None:
    for second in range(12):
        env.exchange.on_mark(
            mark_price(SUSHI, "7.6", "0.0001", 10**15, second * 1000), env.clock.time_ns()
        )
        env.clock.advance(1)
    series = equity_series(env.conn)
    assert len(series) == 3  # at 0, 5 and 10 s
    assert all(p.equity == D(10_000) for p in series)
    assert env.gate.state.peak_equity == D(10_000)


def test_atr_stop_exits_through_the_gate_and_counts_a_loss(env: Env) -> None:
    book = _book([("7.610", "500")], [("7.616", "500")])
    entry = _buy(env, 100, book, atr="0.02")
    assert entry.stop_price == D("7.576") and entry.take_profit == D("7.676")
    ex = env.exchange
    ex.on_book(_update(book, [("7.580", "500")], [("7.585", "500")]), env.clock.time_ns())
    assert load_fills(env.conn, entry.client_id) and len(load_orders(env.conn)) == 1
    ex.on_book(
        _update(book, [("7.576", "40"), ("7.570", "500")], [("7.580", "5")]), env.clock.time_ns()
    )
    ex.on_book(book, env.clock.time_ns())  # the exit is still on its way: no second exit
    env.after_latency(book)
    exit_row = load_orders(env.conn)[-1]
    assert (exit_row["purpose"], exit_row["reduce_only"], exit_row["status"]) == (
        "exit:stop",
        1,
        "FILLED",
    )
    assert [(f["price"], f["qty"]) for f in load_fills(env.conn, str(exit_row["client_id"]))] == [
        ("7.576", "40"),
        ("7.570", "60"),
    ]
    assert env.portfolio.position(SUSHI).qty == 0
    assert env.gate.state.losing_streak == 1
    assert len(load_orders(env.conn)) == 2


def test_kill_switch_cancels_flattens_halts_and_survives_a_restart(tmp_path: Path) -> None:
    env = _env(tmp_path)
    book = _book([("7.610", "500")], [("7.616", "500")])
    _buy(env, 100, book)
    resting = env.order(qty=D(10), order_type=OrderType.LIMIT, limit_price=D("7.600"))
    env.exchange.submit(resting)
    env.after_latency(book)
    updates = kill_switch(env.gate, env.exchange, "manual stop")
    assert [u.order.purpose for u in updates] == ["kill"]
    # The market falls through the entry's stop while the flatten order is on its way: the stop
    # must not send a second exit.
    _update(book, [("7.500", "500")], [("7.505", "500")])
    env.exchange.on_book(book, env.clock.time_ns())
    env.after_latency(book)
    assert len(load_orders(env.conn)) == 3
    assert env.row(resting.client_id)["status"] == "CANCELED"
    assert env.row(updates[0].order.client_id)["status"] == "FILLED"
    assert [f["price"] for f in load_fills(env.conn, updates[0].order.client_id)] == ["7.500"]
    assert env.portfolio.position(SUSHI).qty == 0
    env.conn.close()

    conn = open_db(tmp_path / "trading.db")
    try:
        state = load_breaker_state(conn)
        assert state is not None and state.killed and state.kill_reason == "manual stop"
        assert [p.qty for p in load_positions(conn)] == [0]
        clock = ManualClock(env.clock.now_ns + 10**9)
        restarted = gate(clock, WIDE, state=state, boot=2)
        account = Portfolio(D(10_000), load_positions(conn)).snapshot(clock.time_ns())
        decision = restarted.check(
            intent(clock, qty=D(5)), RiskContext(account, reference_filters()[SUSHI])
        )
        assert not isinstance(decision, Approved)
        assert decision.code == RejectCode.KILL_SWITCH
        restarted.resume(account.equity)
        assert isinstance(
            restarted.check(
                intent(clock, qty=D(5)), RiskContext(account, reference_filters()[SUSHI])
            ),
            Approved,
        )
    finally:
        conn.close()


def test_unsynced_books_are_never_traded_on(env: Env) -> None:
    book = _book([("7.610", "500")], [("7.616", "500")])
    order = env.order(qty=D(5))
    env.exchange.submit(order)
    book.clear()
    env.after_latency(book)
    assert env.exchange.open_orders()[0].status == OrderStatus.NEW
    _update(book, [("7.610", "500")], [("7.617", "500")])
    env.after_latency(book)
    assert [f["price"] for f in load_fills(env.conn)] == ["7.617"]


def test_resting_orders_on_the_recorded_market_fill_when_it_trades_through_them() -> None:
    # The reference recording replayed: SUSHIUSDT's diff book synced from its snapshot, a buy
    # resting at the best bid and a sell at the best ask placed as soon as the book syncs, then
    # every later depth event and aggTrade as recorded.
    events = sushi_events()
    clock = ManualClock(events[0][0])
    g = gate(clock, RiskConfig(max_intent_age_ms=0))
    portfolio = Portfolio(D(10_000))
    reports: list[ExecutionReport] = []

    class Listener:
        def on_report(self, report: ExecutionReport) -> None:
            reports.append(report)

        def on_funding(self, payment: object) -> None:
            raise AssertionError("no funding in this recording")

        def on_equity(self, point: object) -> None:
            return None

    exchange = PaperExchange(PaperConfig(), clock, g, portfolio, reference_filters(), Listener())
    book = OrderBook(SUSHI)
    sync = DiffDepthSync(book)
    snapshot = recorded_snapshots()[SUSHI].snapshot
    placed: dict[Side, Order] = {}
    through: dict[Side, int] = {}
    for ts, event in events:
        clock.now_ns = ts
        if isinstance(event, DepthUpdate):
            sync.on_event(event)
            if sync.needs_snapshot:
                sync.apply_snapshot(snapshot)
            if book.synced and not placed:
                for side, level in ((Side.BUY, book.best_bid()), (Side.SELL, book.best_ask())):
                    assert level is not None
                    limit = D(level[0])
                    decision = g.check(
                        intent(
                            clock,
                            side,
                            price=level[0],
                            qty=D(100),
                            order_type=OrderType.LIMIT,
                            limit_price=limit,
                        ),
                        RiskContext(exchange.snapshot(), reference_filters()[SUSHI]),
                    )
                    assert isinstance(decision, Approved)
                    placed[side] = decision.order
                    exchange.submit(decision.order)
            exchange.on_book(book, ts)
        elif isinstance(event, AggTrade) and placed:
            price = D(event.price)
            for side, order in placed.items():
                assert order.price is not None
                beyond = price < order.price if side is Side.BUY else price > order.price
                if beyond and side not in through:
                    through[side] = ts
            exchange.on_trade(event, ts)

    assert set(through) == {Side.BUY, Side.SELL}  # the tape went through both prices
    for side, order in placed.items():
        fills = [f for r in reports for f in r.fills if f.client_id == order.client_id]
        assert sum(f.qty for f in fills) == 100
        assert {(f.price, f.liquidity) for f in fills} == {(order.price, Liquidity.MAKER)}
        assert all(f.fee == f.price * f.qty * MAKER for f in fills)
        assert max(f.ts_ns for f in fills) <= through[side]
    assert not exchange.open_orders()
    snap = exchange.snapshot()
    assert not snap.positions
    buy, sell = placed[Side.BUY].price, placed[Side.SELL].price
    assert buy is not None and sell is not None
    assert snap.realized == 100 * (sell - buy)
    assert snap.fees == (buy + sell) * 100 * MAKER


# -- margin and liquidation ---------------------------------------------------------------------

BTC_FILTERS = SymbolFilters("BTCUSDT", D("0.10"), D("0.001"), D("100"), 2, 3)


class _Reports:
    def __init__(self) -> None:
        self.reports: list[ExecutionReport] = []
        self.equity: list[D] = []

    def on_report(self, report: ExecutionReport) -> None:
        self.reports.append(report)

    def on_funding(self, payment: object) -> None:
        return None

    def on_equity(self, point: Any) -> None:
        self.equity.append(point.equity)


def paper_liquidation(
    entry: Decimal, qty: Decimal, leverage: int, marks: list[Decimal], *, isolated: bool = True
) -> tuple[PaperExchange, _Reports]:
    """A paper exchange holding ``qty`` BTCUSDT bought at ``entry``, fed the mark prices
    ``marks`` one a second (the simulator's test feeds the same figures to compare)."""
    from app.binance.margin import BTCUSDT_BRACKETS, MarginSettings
    from app.engine.portfolio import Position

    clock = ManualClock()
    position = Position("BTCUSDT", qty, qty * entry)
    reports = _Reports()
    exchange = PaperExchange(
        PaperConfig(equity_interval_s=0.0),
        clock,
        gate(clock),
        Portfolio(D(10_000), [position]),
        {"BTCUSDT": BTC_FILTERS},
        reports,
        margin=MarginSettings(leverage, isolated, {"BTCUSDT": BTCUSDT_BRACKETS}),
    )
    for n, mark in enumerate(marks):
        clock.advance(1)
        exchange.on_mark(mark_price("BTCUSDT", str(mark), "0", 10**15, n * 1000), clock.time_ns())
    return exchange, reports


def test_paper_liquidates_an_isolated_10x_long_at_the_mark_with_the_clearance_fee() -> None:
    entry, qty = D("65000.00"), D("0.100")
    lp = entry * D("0.9") / D("0.996")  # Binance's isolated formula at 10x, tier 1
    exchange, reports = paper_liquidation(entry, qty, 10, [])
    assert exchange.liquidation_price("BTCUSDT") == lp
    above, under = (lp + 1).quantize(D("0.1")), (lp - D("0.05")).quantize(D("0.1"))
    exchange, reports = paper_liquidation(entry, qty, 10, [above, under])
    fills = [f for r in reports.reports for f in r.fills]
    assert len(fills) == 1
    fill = fills[0]
    assert fill.client_id.startswith("autoclose-")
    assert (fill.side, fill.price, fill.qty) == (Side.SELL, under, qty)
    iso, realized = qty * entry / 10, qty * (under - entry)
    assert fill.fee == min(qty * under * D("0.012"), iso + realized)
    assert reports.reports[-1].update.order.purpose == "liquidation"
    assert reports.reports[-1].update.status is OrderStatus.FILLED
    assert exchange.portfolio.qty("BTCUSDT") == 0
    # The equity series shows the isolated margin gone: realised loss plus the fee.
    assert reports.equity[-1] == D(10_000) + realized - fill.fee
    assert D(10_000) - reports.equity[-1] == pytest.approx(iso)


def test_paper_cross_liquidation_uses_the_whole_equity() -> None:
    # Cross: the whole 10,000 backs 1 BTC at 65,000 (20x setting); Binance's cross formula.
    entry, qty = D("65000.00"), D("1")
    from app.binance.margin import BTCUSDT_BRACKETS, liquidation_price

    lp = liquidation_price(wallet=D(10_000), qty=qty, entry=entry, brackets=BTCUSDT_BRACKETS)
    assert lp is not None
    exchange, _ = paper_liquidation(entry, qty, 20, [], isolated=False)
    assert exchange.liquidation_price("BTCUSDT") == lp
    exchange, _ = paper_liquidation(entry, qty, 20, [(lp + 1).quantize(D("0.1"))], isolated=False)
    assert exchange.portfolio.qty("BTCUSDT") == qty
    exchange, _ = paper_liquidation(entry, qty, 20, [(lp - 1).quantize(D("0.1"))], isolated=False)
    assert exchange.portfolio.qty("BTCUSDT") == 0


def test_paper_refuses_an_entry_the_margin_cannot_carry(tmp_path: Path) -> None:
    from app.binance.margin import BTCUSDT_BRACKETS, MarginSettings

    env = _env(tmp_path, filters={**reference_filters(), "BTCUSDT": BTC_FILTERS})
    env.exchange.margin = MarginSettings(10, True, {"BTCUSDT": BTCUSDT_BRACKETS})
    env.exchange.portfolio.mark("BTCUSDT", D("65000"))
    # 2 BTC at 10x needs 13,000 of initial margin; the account holds 10,000.
    order = env.order(symbol="BTCUSDT", qty=D("2"), price="65000", atr="100")
    update = env.exchange.submit(order)
    assert update.status is OrderStatus.REJECTED
    assert update.reason.startswith("margin_insufficient: initial margin 13000")
    assert "-2019" in update.reason
    env.exchange.margin = MarginSettings(126, True, {"BTCUSDT": BTCUSDT_BRACKETS})
    update = env.exchange.submit(
        env.order(symbol="BTCUSDT", qty=D("0.01"), price="65000", atr="100")
    )
    assert update.reason.startswith("leverage_invalid")
    env.conn.close()

"""The risk gate: sizing, one rejection per limit (each recorded with its reason), breakers on the
UTC day and the clock, seals, client order ids, and breaker state surviving a restart."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.clock import ManualClock
from app.engine.orders import (
    CLIENT_ID_RE,
    ClientOrderIds,
    Fill,
    Liquidity,
    Order,
    OrderType,
    RejectCode,
    Side,
    next_boot,
)
from app.engine.portfolio import AccountSnapshot, Portfolio, TradeClosed
from app.engine.risk import (
    DAY_NS,
    LIVE,
    PAPER,
    Approved,
    BreakerState,
    Decision,
    Intent,
    Rejected,
    RiskConfig,
    RiskContext,
    RiskGate,
    load_breaker_state,
    persisting,
    recent_risk_events,
)
from app.store import db, schema
from app.store.writer import DbWriter
from tests.engine.risk_support import (
    BTC,
    MIGRATIONS,
    SUSHI,
    context,
    direct,
    flat_account,
    gate,
    intent,
    open_db,
)

AKRO = "AKROUSDT"
WIDE = RiskConfig(max_position_notional=Decimal("1000000"), max_leverage=Decimal("100"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_db(tmp_path / "trading.db")
    yield connection
    connection.close()


def _account(
    clock: ManualClock, *fills: tuple[str, Side, str, str], balance: str = "10000"
) -> AccountSnapshot:
    """An account holding positions opened by fee-free fills (symbol, side, qty, price)."""
    portfolio = Portfolio(Decimal(balance))
    for symbol, side, qty, price in fills:
        portfolio.apply_fill(
            Fill("x", symbol, side, Decimal(price), Decimal(qty), Decimal(0), Liquidity.TAKER, 0)
        )
    return portfolio.snapshot(clock.time_ns())


def _approved(decision: Approved | Rejected) -> Approved:
    assert isinstance(decision, Approved), decision
    return decision


# -- sizing -----------------------------------------------------------------------------------


def test_size_is_risk_budget_over_atr_stop_and_brackets_sit_on_the_tick_grid(
    clock: ManualClock,
) -> None:
    g = gate(clock, WIDE)
    order = _approved(g.check(intent(clock), context(flat_account(clock)))).order
    # Kelly at p=0.6, b=3/2 is 1/3; a quarter of it (0.083) exceeds 1 %, so 1 % of 10,000 is at
    # risk over a stop 2 × ATR = 0.04 away: 2,500 contracts.
    assert order.qty == Decimal(2500)
    assert (order.side, order.type, order.price, order.reduce_only) == (
        Side.BUY,
        OrderType.MARKET,
        None,
        False,
    )
    assert (order.stop_price, order.take_profit) == (Decimal("7.572"), Decimal("7.672"))
    assert g.verify(order)
    assert CLIENT_ID_RE.match(order.client_id)
    assert order.client_id == "app-1-1"

    # ATR 0.0123: stop 7.5874 and target 7.6489 are rounded towards the entry.
    order = _approved(g.check(intent(clock, atr="0.0123"), context(flat_account(clock)))).order
    assert (order.stop_price, order.take_profit) == (Decimal("7.588"), Decimal("7.648"))
    short = _approved(
        g.check(intent(clock, Side.SELL, atr="0.0123"), context(flat_account(clock)))
    ).order
    assert (short.stop_price, short.take_profit) == (Decimal("7.636"), Decimal("7.576"))


def test_fractional_kelly_caps_the_size_when_the_edge_is_thin(clock: ManualClock) -> None:
    g = gate(clock, WIDE)
    order = _approved(g.check(intent(clock, confidence=0.42), context(flat_account(clock)))).order
    # Kelly = 0.42 − 0.58/1.5 = 1/30; a quarter of it is 0.8333 % of equity → 83.33 / 0.04.
    assert order.qty == Decimal(2083)


def test_size_is_capped_by_the_position_limit_and_rounded_down_to_the_step(
    clock: ManualClock,
) -> None:
    order = _approved(gate(clock).check(intent(clock), context(flat_account(clock)))).order
    assert order.qty == Decimal(131)  # 1000 / 7.612 = 131.37
    assert order.qty * Decimal("7.612") <= RiskConfig().max_position_notional


def test_limit_prices_are_rounded_to_the_tick_buy_down_sell_up(clock: ManualClock) -> None:
    g = gate(clock)
    buy = _approved(
        g.check(
            intent(clock, order_type=OrderType.LIMIT, limit_price=Decimal("7.61279")),
            context(flat_account(clock)),
        )
    ).order
    sell = _approved(
        g.check(
            intent(clock, Side.SELL, order_type=OrderType.LIMIT, limit_price=Decimal("7.61201")),
            context(flat_account(clock)),
        )
    ).order
    assert (buy.type, buy.price, sell.price) == (
        OrderType.LIMIT,
        Decimal("7.612"),
        Decimal("7.613"),
    )


# -- one rejection per limit, each recorded ---------------------------------------------------

Setup = Callable[[RiskGate, ManualClock], tuple[Intent, RiskContext]]


def _no_edge(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock, confidence=0.35), context(flat_account(clock))


def _risk_per_trade(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock, qty=Decimal(3000)), context(flat_account(clock))  # 120 at risk > 100


def _position_explicit(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock, qty=Decimal(200)), context(flat_account(clock))  # 1,522.4 > 1,000


def _position_full(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock), context(_account(clock, (SUSHI, Side.BUY, "131", "7.612")))


def _position_pending(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    # Working orders count as filled: 131 pending leaves no room.
    return intent(clock), context(flat_account(clock), SUSHIUSDT=Decimal(131))


def _leverage_sized(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock), context(_account(clock, (BTC, Side.BUY, "0.9", "33330")))


def _leverage_explicit(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    account = _account(clock, (BTC, Side.BUY, "0.9", "33330"))  # 29,997 gross of 30,000
    return intent(clock, qty=Decimal(100)), context(account)


def _min_notional(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return (
        intent(clock, symbol=AKRO, price="0.01737", atr="0.0001", qty=Decimal(100)),
        context(flat_account(clock), AKRO),
    )


def _min_qty(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock, qty=Decimal("0.7")), context(flat_account(clock))


def _min_qty_btc(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return (
        intent(clock, symbol=BTC, price="33330", atr="50", qty=Decimal("0.0009")),
        context(flat_account(clock), BTC),
    )


def _daily_loss(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    g.on_equity(clock.time_ns(), Decimal(10000))
    return intent(clock), context(flat_account(clock, "9699"))  # −3.01 % since the day began


def _drawdown(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    g.on_equity(clock.time_ns(), Decimal(10000))
    clock.advance(86_400)  # a new UTC day: its start is below the peak, so no daily breaker
    g.on_equity(clock.time_ns(), Decimal(9200))
    return intent(clock), context(flat_account(clock, "8999"))


def _cooldown(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    for _ in range(3):
        g.on_trade_closed(TradeClosed(SUSHI, Decimal("-1.5"), clock.time_ns()))
    clock.advance(29 * 60)
    return intent(clock), context(flat_account(clock))


def _kill(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    assert g.kill("operator", flat_account(clock)) == []
    return intent(clock), context(flat_account(clock))


def _stale(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    old = intent(clock)
    clock.advance(2.5)
    return old, context(flat_account(clock))


def _nan_confidence(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock, confidence=float("nan")), context(flat_account(clock))


def _zero_atr(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock, atr="0"), context(flat_account(clock))


def _unknown_symbol(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock, symbol="NOPEUSDT"), context(flat_account(clock), "NOPEUSDT")


def _no_equity(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    return intent(clock), context(flat_account(clock, "0"))


def _nothing_to_reduce(g: RiskGate, clock: ManualClock) -> tuple[Intent, RiskContext]:
    account = _account(clock, (SUSHI, Side.BUY, "50", "7.612"))
    return intent(clock, Side.BUY, reduce_only=True), context(account)


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        (_no_edge, RejectCode.NO_EDGE),
        (_risk_per_trade, RejectCode.RISK_PER_TRADE),
        (_position_explicit, RejectCode.MAX_POSITION_NOTIONAL),
        (_position_full, RejectCode.MAX_POSITION_NOTIONAL),
        (_position_pending, RejectCode.MAX_POSITION_NOTIONAL),
        (_leverage_sized, RejectCode.MAX_LEVERAGE),
        (_leverage_explicit, RejectCode.MAX_LEVERAGE),
        (_min_notional, RejectCode.NOTIONAL_BELOW_MIN),
        (_min_qty, RejectCode.QTY_BELOW_MIN),
        (_min_qty_btc, RejectCode.QTY_BELOW_MIN),
        (_daily_loss, RejectCode.DAILY_LOSS),
        (_drawdown, RejectCode.DRAWDOWN),
        (_cooldown, RejectCode.COOLDOWN),
        (_kill, RejectCode.KILL_SWITCH),
        (_stale, RejectCode.STALE_INTENT),
        (_nan_confidence, RejectCode.BAD_INTENT),
        (_zero_atr, RejectCode.BAD_INTENT),
        (_unknown_symbol, RejectCode.BAD_INTENT),
        (_no_equity, RejectCode.NO_EQUITY),
        (_nothing_to_reduce, RejectCode.NOTHING_TO_REDUCE),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)).strip("_"),
)
def test_every_limit_rejects_and_the_rejection_is_recorded(
    clock: ManualClock,
    conn: sqlite3.Connection,
    setup: Setup,
    code: RejectCode,
) -> None:
    on_event, on_state = persisting(direct(conn), clock)
    g = gate(clock, leverage_config(setup), on_event=on_event, on_state=on_state)
    the_intent, the_context = setup(g, clock)
    decision = g.check(the_intent, the_context)
    assert isinstance(decision, Rejected), decision
    assert decision.code == code
    assert decision.message
    rejected = [e for e in recent_risk_events(conn) if e.kind == "rejected"]
    assert len(rejected) == 1
    assert (rejected[0].code, rejected[0].message) == (code, decision.message)
    assert rejected[0].symbol == the_intent.symbol
    assert rejected[0].detail["model_version"] == "m1"


def leverage_config(setup: Setup) -> RiskConfig:
    """The leverage cases lift the position cap so that leverage is what binds."""
    if setup in (_leverage_sized, _leverage_explicit):
        return RiskConfig(max_position_notional=Decimal(100_000))
    return RiskConfig()


def test_a_sized_order_near_a_cap_is_shrunk_not_rejected(clock: ManualClock) -> None:
    account = _account(clock, (SUSHI, Side.BUY, "100", "7.612"))
    order = _approved(gate(clock).check(intent(clock), context(account))).order
    assert order.qty == Decimal(31)  # 131.37 − 100, rounded down


# -- breakers over time -----------------------------------------------------------------------


def test_daily_loss_breaker_ends_at_the_utc_day_boundary(clock: ManualClock) -> None:
    clock.now_ns = (clock.now_ns // DAY_NS + 1) * DAY_NS - 2_000_000_000  # 23:59:58 UTC
    g = gate(clock)
    g.on_equity(clock.time_ns(), Decimal(10000))
    rejected = g.check(intent(clock), context(flat_account(clock, "9690")))
    assert isinstance(rejected, Rejected)
    assert rejected.code == RejectCode.DAILY_LOSS
    clock.advance(2)  # 00:00:00 UTC: a new day starts from the current equity
    _approved(g.check(intent(clock), context(flat_account(clock, "9690"))))
    assert g.state.day_start_equity == Decimal(9690)


@pytest.mark.parametrize(
    ("equity", "blocked"),
    [("9700", True), ("9699.99", True), ("9700.01", False)],
    ids=["exactly -3%", "a cent below", "a cent above"],
)
def test_daily_loss_trips_at_or_below_the_limit(
    clock: ManualClock, equity: str, blocked: bool
) -> None:
    g = gate(clock)  # max_daily_loss 3 %: the limit is 9,700 of a 10,000 day start
    g.on_equity(clock.time_ns(), Decimal(10000))
    decision = g.check(intent(clock), context(flat_account(clock, equity)))
    if blocked:
        assert isinstance(decision, Rejected), decision
        assert decision.code == RejectCode.DAILY_LOSS
    else:
        _approved(decision)
        assert g.state.daily_loss_day == -1


@pytest.mark.parametrize(
    ("equity", "blocked"),
    [("9000", True), ("9000.01", False)],
    ids=["exactly -10%", "a cent above"],
)
def test_drawdown_trips_at_or_below_the_limit(
    clock: ManualClock, equity: str, blocked: bool
) -> None:
    g = gate(clock)  # max_drawdown 10 % of a 10,000 peak
    g.on_equity(clock.time_ns(), Decimal(10000))
    clock.advance(86_400)  # a new UTC day starting at the equity under test: no daily breaker
    g.on_equity(clock.time_ns(), Decimal(equity))
    decision = g.check(intent(clock), context(flat_account(clock, equity)))
    if blocked:
        assert isinstance(decision, Rejected), decision
        assert decision.code == RejectCode.DRAWDOWN
    else:
        _approved(decision)
        assert not g.state.drawdown_tripped


def test_cooldown_ends_after_its_minutes_and_a_win_resets_the_streak(clock: ManualClock) -> None:
    g = gate(clock)
    ts = clock.time_ns()
    for pnl in ("-1", "-1", "2", "-1", "-1"):
        g.on_trade_closed(TradeClosed(SUSHI, Decimal(pnl), ts))
    assert g.state.losing_streak == 2
    assert g.blocked(ts) is None
    g.on_trade_closed(TradeClosed(SUSHI, Decimal("-0.01"), ts))
    assert g.blocked(ts) is not None
    clock.advance(30 * 60)
    _approved(g.check(intent(clock), context(flat_account(clock))))
    assert g.state.losing_streak == 0


def test_kill_flattens_then_only_reductions_pass_until_resume(clock: ManualClock) -> None:
    g = gate(clock)
    account = _account(clock, (SUSHI, Side.BUY, "50", "7.612"), (BTC, Side.SELL, "0.01", "33330"))
    flatten = g.kill("manual stop", account)
    assert [(o.symbol, o.side, o.qty, o.reduce_only, o.purpose) for o in flatten] == [
        (BTC, Side.BUY, Decimal("0.01"), True, "kill"),
        (SUSHI, Side.SELL, Decimal(50), True, "kill"),
    ]
    assert all(g.verify(o) for o in flatten)
    blocked = g.check(intent(clock), context(account))
    assert isinstance(blocked, Rejected)
    assert blocked.code == RejectCode.KILL_SWITCH
    reduce = _approved(g.check(intent(clock, Side.SELL, reduce_only=True), context(account)))
    assert (reduce.order.qty, reduce.order.reduce_only, reduce.order.stop_price) == (
        Decimal(50),
        True,
        None,
    )
    g.resume(account.equity)
    _approved(g.check(intent(clock), context(account)))


def test_drawdown_needs_resume_which_restarts_the_peak(clock: ManualClock) -> None:
    g = gate(clock, RiskConfig(max_daily_loss=Decimal("0.5")))
    g.on_equity(clock.time_ns(), Decimal(12000))
    g.on_equity(clock.time_ns(), Decimal(10800))
    assert g.state.drawdown_tripped
    clock.advance(3 * 86_400)
    blocked = g.blocked(clock.time_ns())
    assert blocked is not None
    assert blocked[0] == RejectCode.DRAWDOWN
    g.resume(Decimal(10800))
    assert g.state.peak_equity == Decimal(10800)
    _approved(g.check(intent(clock), context(flat_account(clock, "10800"))))


# -- seals and ids ----------------------------------------------------------------------------


# One change per sealed field; the set must stay equal to the Order's fields (a new field needs a
# case here, so the seal cannot silently leave it out).
SEALED_CHANGES: dict[str, Any] = {
    "client_id": "app-1-999",
    "symbol": BTC,
    "side": Side.SELL,
    "type": OrderType.LIMIT,
    "qty": Decimal(2501),
    "price": Decimal("7.5"),
    "reduce_only": True,
    "stop_price": None,
    "take_profit": Decimal("7.673"),
    "ts_created_ns": 1,
    "model_version": "another-model",
    "purpose": "kill",
}


def test_the_seal_cases_name_every_order_field() -> None:
    names = {f.name for f in dataclasses.fields(Order)} - {"seal"}
    assert set(SEALED_CHANGES) == names


@pytest.mark.parametrize("name", sorted(SEALED_CHANGES))
def test_a_seal_covers_each_field(clock: ManualClock, name: str) -> None:
    g = gate(clock)
    order = _approved(g.check(intent(clock), context(flat_account(clock)))).order
    assert g.verify(order)
    assert getattr(order, name) != SEALED_CHANGES[name]  # the case really changes the field
    assert not g.verify(dataclasses.replace(order, **{name: SEALED_CHANGES[name]}))


def test_a_seal_belongs_to_one_gate(clock: ManualClock) -> None:
    order = _approved(gate(clock).check(intent(clock), context(flat_account(clock)))).order
    assert not gate(clock).verify(order)  # another gate, another key


def test_client_order_ids_are_unique_across_restarts(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "trading.db"
    ids: list[str] = []
    for _ in range(3):
        conn = open_db(path)
        boot = next_boot(conn, clock.time_ns())
        conn.close()
        generator = ClientOrderIds(boot)
        ids += [generator.next() for _ in range(1000)]
    assert len(set(ids)) == 3000
    assert ids[0] == "app-1-1" and ids[-1] == "app-3-1000"
    assert all(CLIENT_ID_RE.match(i) for i in ids)
    longest = ClientOrderIds(10**12, start_seq=10**15)
    assert len(longest.next()) <= 36
    with pytest.raises(ValueError, match="format"):
        ClientOrderIds(10**15, start_seq=10**15).next()


# -- breaker state survives a restart ----------------------------------------------------------


def _trip_kill(g: RiskGate, clock: ManualClock) -> None:
    g.kill("manual stop", flat_account(clock))


def _trip_daily(g: RiskGate, clock: ManualClock) -> None:
    g.on_equity(clock.time_ns(), Decimal(10000))
    g.on_equity(clock.time_ns(), Decimal(9600))


def _trip_drawdown(g: RiskGate, clock: ManualClock) -> None:
    g.on_equity(clock.time_ns() - DAY_NS, Decimal(12000))
    g.on_equity(clock.time_ns(), Decimal(10000))


def _trip_cooldown(g: RiskGate, clock: ManualClock) -> None:
    for _ in range(3):
        g.on_trade_closed(TradeClosed(SUSHI, Decimal(-1), clock.time_ns()))


@pytest.mark.parametrize(
    ("trip", "code"),
    [
        (_trip_kill, RejectCode.KILL_SWITCH),
        (_trip_daily, RejectCode.DAILY_LOSS),
        (_trip_drawdown, RejectCode.DRAWDOWN),
        (_trip_cooldown, RejectCode.COOLDOWN),
    ],
    ids=["kill", "daily_loss", "drawdown", "cooldown"],
)
def test_breaker_state_survives_a_restart(
    tmp_path: Path,
    clock: ManualClock,
    trip: Callable[[RiskGate, ManualClock], None],
    code: RejectCode,
) -> None:
    path = tmp_path / "trading.db"
    writer = DbWriter(path, MIGRATIONS, synchronous="FULL")
    on_event, on_state = persisting(writer.submit, clock)
    before = gate(clock, on_event=on_event, on_state=on_state)
    trip(before, clock)
    assert before.blocked(clock.time_ns()) is not None
    writer.close()  # the process ends; the writer drains its queue first

    clock.advance(60)
    writer = DbWriter(path, MIGRATIONS, synchronous="FULL")
    try:
        restored = writer.call_sync(load_breaker_state)
        events = writer.call_sync(recent_risk_events)
    finally:
        writer.close()
    assert restored == before.state
    assert any(e.code == code for e in events)
    after = gate(clock, state=restored, boot=2)
    decision = after.check(intent(clock), context(flat_account(clock, "10000")))
    assert isinstance(decision, Rejected)
    assert decision.code == code


def test_fresh_database_has_no_breaker_state(conn: sqlite3.Connection) -> None:
    assert load_breaker_state(conn) is None
    state = BreakerState(killed=True, kill_reason="x", peak_equity=Decimal("1.5"), day=3)
    assert BreakerState.from_json(state.to_json()) == state


# -- paper and live keep their own breakers ------------------------------------------------------


def _entry(g: RiskGate, clock: ManualClock, equity: str) -> Decision:
    return g.check(intent(clock), context(flat_account(clock, equity)))


def _blocked_by(g: RiskGate, clock: ManualClock) -> RejectCode | None:
    blocked = g.blocked(clock.time_ns())
    return None if blocked is None else blocked[0]


def test_going_live_starts_the_breakers_from_the_wallet(
    clock: ManualClock, conn: sqlite3.Connection
) -> None:
    """Paper peaked at 10,000, the live wallet holds 5,000: live entries go through, and after a
    resume the daily-loss breaker does not trip on paper's day start."""
    on_event, on_state = persisting(direct(conn), clock)
    g = gate(clock, on_event=on_event, on_state=on_state)
    g.on_equity(clock.time_ns(), Decimal(10000))
    g.switch_mode(LIVE, load_breaker_state(conn, LIVE), Decimal(5000))
    assert g.mode == LIVE
    assert (g.state.day_start_equity, g.state.peak_equity) == (Decimal(5000), Decimal(5000))
    _approved(_entry(g, clock, "5000"))
    g.resume(Decimal(5000))
    clock.advance(60)
    _approved(_entry(g, clock, "5000"))
    assert _blocked_by(g, clock) is None
    assert not [e for e in recent_risk_events(conn) if e.kind in ("breaker", "rejected")]
    assert load_breaker_state(conn, LIVE) == g.state


def test_live_losses_stay_out_of_paper(clock: ManualClock, conn: sqlite3.Connection) -> None:
    on_event, on_state = persisting(direct(conn), clock)
    g = gate(clock, on_event=on_event, on_state=on_state)
    g.on_equity(clock.time_ns(), Decimal(10000))
    paper = g.state
    g.switch_mode(LIVE, load_breaker_state(conn, LIVE), Decimal(5000))
    clock.advance(60)
    g.on_equity(clock.time_ns(), Decimal(4800))  # -4 % of the live day start: over the 3 %
    assert _blocked_by(g, clock) is RejectCode.DAILY_LOSS

    g.switch_mode(PAPER, load_breaker_state(conn, PAPER), Decimal(10000))
    assert g.state == paper
    _approved(_entry(g, clock, "10000"))
    # Paper's breakers are as before: its own day start (10,000) and peak.
    g.on_equity(clock.time_ns(), Decimal(9650))
    assert _blocked_by(g, clock) is RejectCode.DAILY_LOSS
    g.on_equity(clock.time_ns(), Decimal(9000))
    assert _blocked_by(g, clock) is RejectCode.DRAWDOWN
    # ... and live's still wait for it: back live, its daily loss still holds (the wallet given
    # is only for a mode that never had breakers).
    g.switch_mode(LIVE, load_breaker_state(conn, LIVE), Decimal(5000))
    assert _blocked_by(g, clock) is RejectCode.DAILY_LOSS
    assert not g.state.drawdown_tripped and g.state.peak_equity == Decimal(5000)


def test_a_kill_holds_across_the_switch_and_a_resume_clears_it_everywhere(
    clock: ManualClock, conn: sqlite3.Connection
) -> None:
    on_event, on_state = persisting(direct(conn), clock)
    g = gate(clock, on_event=on_event, on_state=on_state)
    g.on_equity(clock.time_ns(), Decimal(10000))
    g.kill("operator", flat_account(clock))
    g.switch_mode(LIVE, load_breaker_state(conn, LIVE), Decimal(5000))
    assert _blocked_by(g, clock) is RejectCode.KILL_SWITCH
    g.resume(Decimal(5000))
    _approved(_entry(g, clock, "5000"))
    # The resume reached paper's row too: an engine restarting in paper is not killed again.
    saved = load_breaker_state(conn, PAPER)
    assert saved is not None and not saved.killed
    g.switch_mode(PAPER, saved, Decimal(10000))
    _approved(_entry(g, clock, "10000"))
    g.kill("again", flat_account(clock))
    rows = [load_breaker_state(conn, mode) for mode in (PAPER, LIVE)]
    assert [row is not None and row.killed for row in rows] == [True, True]


def test_switch_mode_checks_its_arguments(clock: ManualClock) -> None:
    g = gate(clock)
    g.on_equity(clock.time_ns(), Decimal(10000))
    paper = g.state
    g.switch_mode(PAPER, None, Decimal(1))  # already in force: nothing changes
    assert g.state == paper
    with pytest.raises(ValueError, match="mode must be one of"):
        g.switch_mode("demo", None, Decimal(1))
    with pytest.raises(ValueError, match="cannot serve"):
        g.switch_mode(LIVE, paper, Decimal(1))


def test_each_mode_restarts_with_its_own_breakers(tmp_path: Path, clock: ManualClock) -> None:
    path = tmp_path / "trading.db"
    writer = DbWriter(path, MIGRATIONS, synchronous="FULL")
    on_event, on_state = persisting(writer.submit, clock)
    before = gate(clock, on_event=on_event, on_state=on_state)
    before.on_equity(clock.time_ns(), Decimal(10000))
    paper_before = before.state
    before.switch_mode(LIVE, writer.call_sync(lambda c: load_breaker_state(c, LIVE)), Decimal(5000))
    before.on_equity(clock.time_ns(), Decimal(4800))
    live_before = before.state
    writer.close()  # the process ends; the writer drains its queue first

    clock.advance(60)
    writer = DbWriter(path, MIGRATIONS, synchronous="FULL")
    try:
        paper = writer.call_sync(lambda c: load_breaker_state(c, PAPER))
        live = writer.call_sync(lambda c: load_breaker_state(c, LIVE))
    finally:
        writer.close()
    assert (paper, live) == (paper_before, live_before)
    assert paper is not None and live is not None
    # Restarted in paper (the engine starts on the paper venue): paper's breakers, no live loss.
    after = gate(clock, state=paper, boot=2)
    _approved(_entry(after, clock, "10000"))
    # Then live again: live's own day start, not the wallet nor paper's.
    after.switch_mode(LIVE, live, Decimal(5000))
    decision = _entry(after, clock, "4800")
    assert isinstance(decision, Rejected) and decision.code == RejectCode.DAILY_LOSS


def test_the_single_breaker_row_becomes_papers(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "trading.db")
    upto = MIGRATIONS.index(schema.BREAKERS_PER_MODE_MIGRATION)
    db.migrate(conn, MIGRATIONS[:upto])
    old = BreakerState(killed=True, kill_reason="x", peak_equity=Decimal("10000"), day=3)
    with conn:
        conn.execute(
            "INSERT INTO breaker_state (id, ts_ns, state) VALUES (1, 5, ?)", (old.to_json(),)
        )
    db.migrate(conn, MIGRATIONS)
    assert load_breaker_state(conn, PAPER) == old
    assert load_breaker_state(conn, LIVE) is None
    conn.close()


# -- margin: stops before liquidation, brackets, the margin ratio --------------------------------


def _margin_check(
    clock: ManualClock, leverage: int, *, isolated: bool = True, side: Side = Side.BUY
) -> Decision:
    from app.binance.margin import BTCUSDT_BRACKETS, MarginSettings

    ctx = dataclasses.replace(
        context(flat_account(clock), BTC),
        margin=MarginSettings(leverage, isolated, {BTC: BTCUSDT_BRACKETS}),
    )
    # 0.01 BTC at 65,000 (tier 1: MMR 0.4 %); ATR 300, so the stop is 600 away.
    return gate(clock).check(
        intent(clock, side, symbol=BTC, price="65000", atr="300", qty=Decimal("0.01")), ctx
    )


def test_gate_refuses_a_stop_past_the_liquidation_price_with_its_reason(
    clock: ManualClock,
) -> None:
    # 100x isolated long: LP = 65,000 × 0.99 / 0.996 = 64,608.43; the stop at 64,400 is past it.
    decision = _margin_check(clock, 100)
    assert isinstance(decision, Rejected)
    assert decision.code is RejectCode.LIQUIDATION_BUFFER
    assert decision.message == (
        "BTCUSDT: stop 64400 is past the liquidation price 64608.43 (0.01 at 65000.00, "
        "100x isolated, bracket 1: mmr 0.004, cum 0); it must come at least 1 ATR (300) "
        "before it"
    )
    # 75x: LP = 64,390.90, 9.10 under the stop: too near (less than one ATR).
    near = _margin_check(clock, 75)
    assert isinstance(near, Rejected)
    assert "stop 64400 is too near the liquidation price 64390.90" in near.message
    # Short at 100x: LP = 65,000 × 1.01 / 1.004 = 65,388.45, under the stop at 65,600.
    short = _margin_check(clock, 100, side=Side.SELL)
    assert isinstance(short, Rejected)
    assert "stop 65600 is past the liquidation price 65388.45" in short.message


def test_gate_passes_a_stop_well_before_liquidation(clock: ManualClock) -> None:
    # 50x isolated: LP = 65,000 × 0.98 / 0.996 = 63,955.82, 444 under the stop (> 1 ATR).
    assert isinstance(_margin_check(clock, 50), Approved)
    # Cross at 100x: the whole 10,000 backs 650 of notional; the liquidation price is far away.
    assert isinstance(_margin_check(clock, 100, isolated=False), Approved)


def test_gate_refuses_leverage_above_the_brackets_and_sizes_within_them(
    clock: ManualClock,
) -> None:
    bad = _margin_check(clock, 126)
    assert isinstance(bad, Rejected) and bad.code is RejectCode.MAX_LEVERAGE
    assert "brackets allow 1..125" in bad.message
    from app.binance.margin import BTCUSDT_BRACKETS, MarginSettings

    # 125x allows 50,000 of BTCUSDT: 1 BTC at 65,000 is over it.
    ctx = dataclasses.replace(
        context(flat_account(clock, "1000000"), BTC),
        margin=MarginSettings(125, False, {BTC: BTCUSDT_BRACKETS}),
    )
    big = gate(clock, WIDE).check(
        intent(clock, symbol=BTC, price="65000", atr="300", qty=Decimal("1")), ctx
    )
    assert isinstance(big, Rejected) and big.code is RejectCode.MAX_POSITION_NOTIONAL
    assert big.message == "BTCUSDT: position notional would be 65000 > 50000"


def test_margin_ratio_of_an_account(clock: ManualClock) -> None:
    from app.binance.margin import BTCUSDT_BRACKETS
    from app.engine.risk import margin_ratio

    assert margin_ratio(flat_account(clock), {}) == 0
    account = _account(clock, (BTC, Side.BUY, "1", "65000"), balance="1000")
    # 65,000 of notional is in tier 2 (MMR 0.5 %, cum 50); the margin balance is the equity.
    expected = (Decimal("65000") * Decimal("0.005") - 50) / Decimal("1000")
    assert margin_ratio(account, {BTC: BTCUSDT_BRACKETS}) == expected

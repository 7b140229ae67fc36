"""What the gate journals and persists: each breaker trip, kill, resume, mode switch and
rejection as a ``risk_events`` row with its exact figures, the messages ``blocked`` gives, the
losing streak's counting, and the breaker state as it is stored in (and read back from) a real
SQLite file.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from app.clock import ManualClock
from app.engine.orders import RejectCode
from app.engine.portfolio import TradeClosed
from app.engine.risk import (
    DAY_NS,
    LIVE,
    PAPER,
    BreakerState,
    RiskEvent,
    RiskGate,
    load_breaker_state,
    persisting,
    recent_risk_events,
    record_risk_event,
    save_breaker_state,
)
from tests.engine.risk_support import SUSHI, context, direct, flat_account, gate, intent, open_db

MINUTE_NS = 60 * 1_000_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_db(tmp_path / "trading.db")
    yield connection
    connection.close()


@pytest.fixture
def journalled(clock: ManualClock, conn: sqlite3.Connection) -> RiskGate:
    """A gate whose events and states go straight to ``conn``."""
    on_event, on_state = persisting(direct(conn), clock)
    return gate(clock, on_event=on_event, on_state=on_state)


def _events(conn: sqlite3.Connection) -> list[RiskEvent]:
    """Every journalled event, oldest first."""
    return recent_risk_events(conn)[::-1]


# -- breaker trips -----------------------------------------------------------------------------


def test_breaker_trips_are_journalled_with_their_figures(
    clock: ManualClock, conn: sqlite3.Connection, journalled: RiskGate
) -> None:
    g = journalled
    g.on_equity(clock.time_ns(), Decimal(10000))
    tripped_at = clock.time_ns()
    g.on_equity(tripped_at, Decimal(9700))  # −3 % of the day's start
    assert g.blocked(clock.time_ns()) == (
        RejectCode.DAILY_LOSS,
        "daily loss limit reached; entries resume at 00:00 UTC",
    )
    clock.advance(86_400)  # the next day starts at 9,000, −10 % of the peak
    g.on_equity(clock.time_ns(), Decimal(9000))
    assert _events(conn) == [
        RiskEvent(
            tripped_at,
            "breaker",
            RejectCode.DAILY_LOSS,
            "",
            "equity 9700 is 300 below the UTC day's start 10000",
            {"equity": "9700", "day_start_equity": "10000"},
        ),
        RiskEvent(
            clock.time_ns(),
            "breaker",
            RejectCode.DRAWDOWN,
            "",
            "equity 9000 is 1000 below its peak 10000",
            {"equity": "9000", "peak_equity": "10000"},
        ),
    ]
    assert load_breaker_state(conn) == g.state
    assert g.state.drawdown_tripped and g.state.daily_loss_day == tripped_at // DAY_NS


def test_a_sub_dollar_account_still_has_breakers(clock: ManualClock) -> None:
    g = gate(clock)
    g.on_equity(clock.time_ns(), Decimal("0.5"))
    g.on_equity(clock.time_ns(), Decimal("0.485"))  # −3 %
    assert g.state.daily_loss_day == clock.time_ns() // DAY_NS
    clock.advance(86_400)
    g.on_equity(clock.time_ns(), Decimal("0.45"))  # −10 % of the 0.5 peak
    assert g.state.drawdown_tripped


# -- the losing streak -------------------------------------------------------------------------


def test_only_losing_trades_count_towards_the_streak(
    clock: ManualClock, conn: sqlite3.Connection, journalled: RiskGate
) -> None:
    g = journalled
    ts = clock.time_ns()
    for pnl in ("-1", "-1", "0", "-1", "-1", "0.5", "-1", "-1"):
        g.on_trade_closed(TradeClosed(SUSHI, Decimal(pnl), ts))
    # A scratch trade (0) and a small win (0.5) each ended the streak: two losses, no cooldown.
    assert (g.state.losing_streak, g.state.cooldown_until_ns) == (2, 0)
    assert g.blocked(ts) is None
    g.on_trade_closed(TradeClosed(SUSHI, Decimal("-0.01"), ts))
    until = ts + 30 * MINUTE_NS
    assert (g.state.losing_streak, g.state.cooldown_until_ns) == (0, until)
    assert _events(conn) == [
        RiskEvent(
            ts,
            "breaker",
            RejectCode.COOLDOWN,
            SUSHI,
            "3 losing trades in a row: no entries for 30 min",
            {"until_ns": str(until)},
        )
    ]
    assert g.blocked(ts) == (RejectCode.COOLDOWN, "losing-streak cooldown: 1800 s left")
    assert g.blocked(ts + 60_500_000_000) == (
        RejectCode.COOLDOWN,
        "losing-streak cooldown: 1739 s left",  # whole seconds, rounded down
    )
    assert load_breaker_state(conn) == g.state


# -- kill, resume, mode --------------------------------------------------------------------------


def test_a_kill_without_a_reason_is_the_kill_switch_and_resume_clears_it(
    clock: ManualClock, conn: sqlite3.Connection, journalled: RiskGate
) -> None:
    g = journalled
    g.on_equity(clock.time_ns(), Decimal(10000))
    assert g.kill("", flat_account(clock)) == []
    assert (g.state.killed, g.state.kill_reason) == (True, "kill switch")
    assert g.blocked(clock.time_ns()) == (
        RejectCode.KILL_SWITCH,
        "kill switch: kill switch; 'resume' to trade again",
    )
    killed_at = clock.time_ns()
    clock.advance(60)
    g.resume(Decimal(9500))
    assert (g.state.killed, g.state.kill_reason, g.state.peak_equity) == (False, "", Decimal(9500))
    assert _events(conn) == [
        RiskEvent(killed_at, "kill", RejectCode.KILL_SWITCH, "", "kill switch", {}),
        RiskEvent(
            clock.time_ns(), "resume", "resume", "", "resumed at equity 9500", {"equity": "9500"}
        ),
    ]
    saved = load_breaker_state(conn)
    assert saved is not None and (saved.killed, saved.kill_reason) == (False, "")


def test_a_mode_switch_is_journalled_and_the_kill_reason_reaches_every_mode(
    clock: ManualClock, conn: sqlite3.Connection, journalled: RiskGate
) -> None:
    g = journalled
    g.on_equity(clock.time_ns(), Decimal(10000))
    g.switch_mode(LIVE, None, Decimal(5000))
    g.kill("exchange outage", flat_account(clock))
    assert _events(conn)[0] == RiskEvent(
        clock.time_ns(),
        "mode",
        "mode",
        "",
        "paper -> live: day start 5000, peak 5000",
        {"equity": "5000"},
    )
    # Whichever mode the engine restarts in, the kill holds with the operator's reason.
    rows = [load_breaker_state(conn, mode) for mode in (PAPER, LIVE)]
    assert [(r.killed, r.kill_reason) for r in rows if r is not None] == [
        (True, "exchange outage"),
        (True, "exchange outage"),
    ]
    # Back to paper: its own breakers, the same kill.
    paper = rows[0]
    assert paper is not None
    g.switch_mode(PAPER, paper, Decimal(10000))
    assert (g.state.mode, g.state.kill_reason) == (PAPER, "exchange outage")


def test_the_kill_reason_follows_a_switch_into_a_new_mode(clock: ManualClock) -> None:
    g = gate(clock)
    g.kill("operator", flat_account(clock))
    g.switch_mode(LIVE, None, Decimal(5000))
    assert (g.state.mode, g.state.killed, g.state.kill_reason) == (LIVE, True, "operator")
    assert g.blocked(clock.time_ns()) == (
        RejectCode.KILL_SWITCH,
        "kill switch: operator; 'resume' to trade again",
    )


# -- rejections ----------------------------------------------------------------------------------


def test_a_rejection_is_journalled_with_the_intent_it_refused(
    clock: ManualClock, conn: sqlite3.Connection, journalled: RiskGate
) -> None:
    journalled.check(intent(clock, confidence=0.35), context(flat_account(clock)))
    (event,) = _events(conn)
    assert (event.ts_ns, event.kind, event.code, event.symbol) == (
        clock.time_ns(),
        "rejected",
        RejectCode.NO_EDGE,
        SUSHI,
    )
    assert event.detail == {
        "side": "BUY",
        "confidence": "0.35",
        "reference_price": "7.612",
        "model_version": "m1",
    }
    # Stored as canonical JSON (sorted keys): the same event is the same bytes.
    (stored,) = conn.execute("SELECT detail FROM risk_events").fetchone()
    assert stored == (
        '{"confidence": "0.35", "model_version": "m1", "reference_price": "7.612", "side": "BUY"}'
    )


# -- the stored rows -----------------------------------------------------------------------------


def test_every_breaker_field_survives_the_database(conn: sqlite3.Connection) -> None:
    state = BreakerState(
        mode=LIVE,
        killed=True,
        kill_reason="x",
        drawdown_tripped=True,
        day=20_000,
        day_start_equity=Decimal("1.5"),
        daily_loss_day=20_000,
        peak_equity=Decimal("2.5"),
        losing_streak=2,
        cooldown_until_ns=99,
    )
    save_breaker_state(conn, state, 7)
    assert load_breaker_state(conn, LIVE) == state
    ts_ns, text = conn.execute(
        "SELECT ts_ns, state FROM breaker_state WHERE mode = ?", (LIVE,)
    ).fetchone()
    assert ts_ns == 7
    # Canonical JSON (sorted keys), so an unchanged state is stored as the same text.
    assert list(json.loads(text)) == sorted(json.loads(text))
    assert text == state.to_json()


def test_recorded_events_get_row_ids_and_the_latest_hundred_are_listed(
    conn: sqlite3.Connection,
) -> None:
    ids = [
        record_risk_event(conn, RiskEvent(ts, "breaker", "cooldown", SUSHI, f"#{ts}"))
        for ts in range(1, 102)
    ]
    assert ids == list(range(1, 102))
    latest = recent_risk_events(conn)
    assert len(latest) == 100
    assert (latest[0].ts_ns, latest[0].message) == (101, "#101")
    assert (latest[-1].ts_ns, latest[-1].message) == (2, "#2")
    assert [e.ts_ns for e in recent_risk_events(conn, 3)] == [101, 100, 99]

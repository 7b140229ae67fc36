"""Round trips, the status line, number formats, charts and the runner's trade log, without a
browser or an engine."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from app import contract
from app.admin import charts, roundtrips
from app.admin.render import fmt_action, fmt_bytes, fmt_duration, fmt_price, fmt_qty, fmt_us
from app.admin.roundtrips import Fill, Funding
from app.admin.statusline import status_line
from app.ctl import Reply
from app.devrun import TradeLog
from app.store import db, schema

S = 1_000_000_000
D = Decimal


def fill(ts: int, side: str, qty: str, price: str, purpose: str, realized: str = "0") -> Fill:
    return Fill(ts * S, "BTCUSDT", side, D(price), D(qty), D("0.1"), D(realized), purpose, "m1")


def test_a_long_closed_by_its_stop_is_one_round_trip() -> None:
    trips = roundtrips.build(
        [
            fill(0, "BUY", "0.010", "100", "entry"),
            fill(5, "BUY", "0.010", "110", "entry"),
            fill(65, "SELL", "0.020", "120", "exit:stop", realized="0.3"),
        ],
        [Funding(30 * S, "BTCUSDT", D("-0.05")), Funding(99 * S, "BTCUSDT", D("-9"))],
    )
    assert len(trips) == 1
    t = trips[0]
    assert (t.direction, t.reason, t.qty) == ("long", "stop", D("0.020"))
    assert t.entry_price == D(105) and t.exit_price == D(120)
    assert t.fees == D("0.3") and t.funding == D("-0.05")
    assert t.pnl == D("0.3") - D("0.3") - D("0.05")
    assert t.duration_s(0) == 65.0
    assert t.pnl_pct == t.pnl / D("2.10") * 100


def test_a_flip_closes_one_trip_and_opens_the_next() -> None:
    trips = roundtrips.build(
        [
            fill(0, "BUY", "1", "100", "entry"),
            fill(10, "SELL", "3", "90", "entry", realized="-10"),
            fill(20, "BUY", "2", "80", "kill", realized="20"),
        ]
    )
    assert [(t.direction, t.reason, t.is_open) for t in trips] == [
        ("long", "signal", False),
        ("short", "kill", False),
    ]
    first, second = trips
    assert first.gross == D(-10) and first.fees == D("0.1") + D("0.1") / 3
    assert second.entry_qty == D(2) and second.entry_price == D(90)
    assert second.pnl == D(20) - (D("0.1") * 2 / 3 + D("0.1"))


def test_summaries_per_symbol_and_overall() -> None:
    trips = roundtrips.build(
        [
            fill(0, "BUY", "1", "100", "entry"),
            fill(1, "SELL", "1", "110", "exit:take_profit", realized="10"),
            fill(2, "BUY", "1", "100", "entry"),
            fill(3, "SELL", "1", "95", "exit:stop", realized="-5"),
            fill(4, "BUY", "1", "100", "entry"),  # still open: not counted
        ]
    )
    (s,) = roundtrips.summarise(trips)
    assert (s.key, s.count, s.wins, s.losses) == ("BTCUSDT", 2, 1, 1)
    assert s.hit_rate == 50
    assert s.profit_factor == D("9.8") / D("5.2")
    assert s.reasons == {"take-profit": 1, "stop": 1}


def status(**changes: object) -> contract.Status:
    base = dict(
        mode="paper",
        state="running",
        halt_reason="",
        trading=True,
        blockers=[],
        equity=D(1),
        realized=D(0),
        unrealized=D(0),
        fees=D(0),
        funding=D(0),
        positions={},
        margin_ratio=D(0),
        open_orders=0,
        live=contract.LiveStatus(
            mode="paper",
            persisted_mode="paper",
            keys=contract.KeysInfo(present=False),
            discrepancies=[],
        ),
        trader=contract.TraderStatus(
            model=None,
            decisions=0,
            long_signals=0,
            short_signals=0,
            orders=0,
            rejected=0,
            skipped={},
            last={},
            atr_1m={},
        ),
        shadow=contract.ShadowRun(running=False),
        latency_us=contract.LatencyUs(),
        breakers=[],
        pid=1,
        uptime_s=1.0,
        symbols=[],
        exchange="sim",
        messages=0,
        recorder=contract.RecorderStatus(
            recording=True, stop_reason="", frames=0, rows=0, batches=0, dropped_records=0, file=""
        ),
        tasks={},
        alarms=[],
    )
    base.update(changes)
    return contract.Status(**base)  # type: ignore[arg-type]


def test_the_status_line_says_what_it_does_and_every_reason() -> None:
    assert status_line(Reply(True, status())).kind == "ok"
    cooldown = contract.Blocker(
        code="cooldown", message="3 losing trades in a row", seconds_left=1500.0
    )
    stale = contract.Blocker(
        code="stale_feed", message="depth: no message for 6 s (limit 5 s)", symbol="ethusdt"
    )
    line = status_line(Reply(True, status(trading=False, blockers=[cooldown, stale])))
    assert line.kind == "blocked" and "not opening positions (2 reasons" in line.headline
    assert line.reasons == [
        "3 losing trades in a row: 25 min left",
        "depth: no message for 6 s (limit 5 s) (ethusdt)",
    ]
    halted = status_line(Reply(True, status(state="halted", halt_reason="manual", trading=False)))
    assert halted.kind == "stopped" and halted.headline.startswith("Halted (manual), on paper")
    down = status_line(Reply(False, None, "engine not running", reachable=False))
    assert down.kind == "stopped" and "not answering" in down.headline


@pytest.mark.parametrize(
    ("value", "price", "qty"),
    [
        ("43123.10000000", "43,123.10", "43,123.1"),
        ("0.00123400", "0.001234", "0.001234"),
        ("2", "2.00", "2"),
        (None, "—", "—"),
    ],
)
def test_prices_and_quantities_lose_the_padding(value: str | None, price: str, qty: str) -> None:
    assert fmt_price(value) == price
    assert fmt_qty(value) == qty


def test_units_and_words() -> None:
    assert fmt_us(24.1) == "24 µs" and fmt_us(1062.5) == "1.1 ms"
    assert fmt_bytes(1924) == "1.9 KiB" and fmt_bytes(900) == "900 B"
    assert fmt_duration(45) == "45 s" and fmt_duration(3 * 3600 + 300) == "3 h 5 min"
    assert fmt_action("rejected: max_leverage") == "refused by the risk gate (max leverage)"
    assert fmt_action("order") == "order sent"


def test_one_day_of_daily_pnl_is_one_bar_not_a_block() -> None:
    svg = str(charts.bar_chart("Daily PnL", [("12-04", D("-3.5"))]))
    (width,) = re.findall(r'<rect class="loss" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', svg)
    assert float(width) < charts.WIDTH / 6
    assert svg.count("12-04") == 2  # the bar's label and its tooltip, not "12-04 … 12-04"


def test_drawdown_and_sparkline() -> None:
    points = [(1, D(100)), (2, D(110)), (3, D(99)), (4, D(120))]
    assert [v for _, v in charts.drawdown(points)] == [0, 0, D(-10), 0]
    assert "polyline" in str(charts.sparkline("equity", [p for _, p in points]))
    assert "polyline" not in str(charts.sparkline("equity", [D(1)]))


def test_the_runner_logs_decisions_fills_and_breakers(tmp_path: Path) -> None:
    path = tmp_path / "trading.db"
    conn = db.connect(path)
    db.migrate(conn, schema.TRADING_MIGRATIONS)
    trade_log = TradeLog(path)
    assert trade_log.poll() == []  # what is there at start is not replayed
    conn.execute(
        "INSERT INTO orders VALUES ('c1', 5, 5, 'BTCUSDT', 'BUY', 'MARKET', '0.0150', NULL, 0, "
        "NULL, NULL, 'm1', 'entry', 'FILLED', '0.0150', '43000.5', '0.25', '')"
    )
    conn.execute(
        "INSERT INTO fills (ts_ns, client_id, symbol, side, price, qty, fee, liquidity, "
        "realized_pnl) VALUES (6, 'c1', 'BTCUSDT', 'BUY', '43000.50', '0.0150', '0.2580', "
        "'taker', '0')"
    )
    conn.execute(
        "INSERT INTO risk_events (ts_ns, kind, code, symbol, message, detail) VALUES "
        "(7, 'breaker', 'cooldown', '', '3 losing trades in a row', '{}')"
    )
    conn.commit()
    assert trade_log.poll() == [
        "decision BTCUSDT: open, buy 0.015 (model m1)",
        "fill BTCUSDT: buy 0.015 at 43000.5, fee 0.2580",
        "breaker: cooldown: 3 losing trades in a row",
    ]
    assert trade_log.poll() == []
    conn.close()

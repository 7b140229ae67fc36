"""Round trips, the status line, number formats, charts, the Models page's sentences and the
runner's trade log, without a browser or an engine."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import jinja2
import pytest

from app import contract
from app.admin import charts, modelview, roundtrips
from app.admin.browsers import browser_name
from app.admin.numbers import fmt_number, num_filter, places_of
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


# -- numbers to the exchange's grid (app/admin/numbers.py) ----------------------------------------

BTC = contract.SymbolRules(tick_size=D("0.10"), step_size=D("0.001"))
DOGE = contract.SymbolRules(tick_size=D("0.000010"), step_size=D("1"))


@pytest.mark.parametrize(
    ("value", "kind", "rules", "text"),
    [
        ("43123.1", "price", BTC, "43,123.1"),  # the tick is 0.10: one decimal, as Binance shows
        ("43123.15", "price", BTC, "43,123.2"),  # an average entry, rounded to the tick
        (D("0.015000"), "qty", BTC, "0.015"),
        ("2", "qty", BTC, "2.000"),
        ("0.16234", "price", DOGE, "0.16234"),
        ("1500", "qty", DOGE, "1,500"),
        ("43123.10000000", "price", None, "43,123.10"),  # no grid known: the digits it carries
        ("0.00123400", "qty", None, "0.001234"),
        ("10012.345", "money", None, "10,012.35"),
        ("0.258012345", "money", BTC, "0.26"),  # fees to the cent, whatever the symbol
        ("12.3", "pnl", None, "+12.30"),
        ("-0.004", "pnl", None, "0.00"),  # rounds to zero: neither a gain nor a loss
        ("-1.5", "pnl", None, "-1.50"),
        (None, "price", BTC, "—"),
        ("not a number", "money", None, "—"),
        ("NaN", "money", None, "—"),
    ],
)
def test_one_formatter_for_prices_quantities_and_money(
    value: object, kind: str, rules: contract.SymbolRules | None, text: str
) -> None:
    assert fmt_number(value, kind, rules) == text  # type: ignore[arg-type]


def test_grid_places() -> None:
    assert [places_of(D(s)) for s in ("0.10", "0.001", "1", "10", "0.000010")] == [1, 3, 0, 0, 5]
    with pytest.raises(ValueError, match="unknown number kind"):
        fmt_number(1, "volume")  # type: ignore[arg-type]


def test_the_num_filter_reads_the_rules_the_engine_reports() -> None:
    env = jinja2.Environment(autoescape=True)
    env.filters["num"] = num_filter
    tpl = env.from_string('{{ p|num("price", sym) }} {{ q|num("qty", sym) }} {{ m|num("pnl") }}')
    engine = Reply(True, status(rules={"BTCUSDT": BTC}))
    out = tpl.render(engine=engine, sym="btcusdt", p="65976.2", q="0.0150", m="1.234")
    assert out == "65,976.2 0.015 +1.23"
    # The engine down: no grid, the value's own digits.
    down = Reply(False, None, "engine not running", reachable=False)
    assert tpl.render(engine=down, sym="BTCUSDT", p="65976.2", q="0.0150", m="1") == (
        "65,976.20 0.015 +1.00"
    )


@pytest.mark.parametrize(
    ("agent", "name"),
    [
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "HeadlessChrome/131.0.0.0 Safari/537.36",
            "Chrome (headless) 131 on Linux",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari 17 on iOS",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
            "Edge 120 on Windows",
        ),
        (
            "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0",
            "Firefox 128 on Android",
        ),
        ("python-httpx/0.27.0", "unknown browser"),
    ],
)
def test_browsers_by_name_never_the_raw_header(agent: str, name: str) -> None:
    assert browser_name(agent) == name


# -- the Models page (app/admin/modelview.py) -----------------------------------------------------

METRICS = '{"test": {"auc": 0.4007, "accuracy": 0.4166, "n": 4554}}'


def stored(validation: contract.Validation | None, role: str = "") -> contract.StoredModel:
    return contract.StoredModel(
        sha256="ab" * 32,
        bytes=16_141,
        model_version="m2",
        added_ts_ns=5,
        source="m2.onnx",
        role=role,  # type: ignore[arg-type]
        previous=False,
        validation=validation,
    )


def info(**changes: object) -> contract.ModelInfo:
    base: dict[str, object] = dict(
        sha256="ab" * 32,
        model_version="m2",
        path="/data/models/x.onnx",
        features=["logret_1", "rsi_14"],
        window=16,
        bar_interval_s=1.0,
        output="prob_up",
        long_threshold=0.55,
        short_threshold=0.45,
        horizon_bars=120,
        symbols=[],
        metrics=METRICS,
        golden_cases=4,
        golden_tolerance=0.0001,
    )
    base.update(changes)
    return contract.ModelInfo(**base)  # type: ignore[arg-type]


def test_a_checked_model_in_words() -> None:
    v = contract.Validation(
        ok=True, problems=[], model=info(), latency_us=30.95, baseline_us=31.2, budget_us=623.9
    )
    row = modelview.model_row(stored(v, "active"), None)
    assert (row.role, row.check, row.short) == ("active", "passed", "ab" * 6)
    assert row.features == ["logret_1", "rsi_14"]
    assert row.inputs == "2 features over the last 16 bars of 1 s"
    assert row.signals == "long at p ≥ 0.55, short at p ≤ 0.45; predicts 120 bars ahead"
    assert row.golden == "4 golden cases reproduced (within 0.0001)"
    assert row.latency == "31 µs per decision (limit 624 µs)"
    assert row.quality == "41.7 % of directions right, AUC 0.40 over 4,554 held-out bars"


def test_unchecked_refused_and_previous_models() -> None:
    pending = modelview.model_row(stored(None), "ab" * 32)
    assert (pending.role, pending.check, pending.inputs, pending.latency) == (
        "previous",
        "pending",
        "",
        "",
    )
    slow = contract.Validation(
        ok=False,
        problems=["too slow: median inference 900.0 us > budget 600.0 us"],
        model=info(metrics={"train": {}}),
        latency_us=900.0,
        budget_us=600.0,
    )
    row = modelview.model_row(stored(slow), None)
    assert (row.role, row.check) == ("stored", "refused")
    assert row.problems == slow.problems and row.quality == ""
    assert row.golden.startswith("4 golden cases reproduced")  # it failed on time, not on them
    assert modelview.quality_text("not json") == "" and modelview.quality_text(None) == ""


def listing(run: contract.ShadowRun, points: list[contract.AgreementPoint]) -> contract.ModelList:
    return contract.ModelList(
        active="a", shadow="b", rollback_to=None, models=[], shadow_run=run, agreement=points
    )


def test_the_agreement_in_words_and_as_a_chart() -> None:
    assert modelview.comparison(listing(contract.ShadowRun(running=False), [])) is None
    run = contract.ShadowRun(
        running=True, compared=162, agreed=44, signalled=160, signalled_agreed=42
    )
    points = [
        contract.AgreementPoint(ts_ns=60 * S, compared=100, agreed=20),
        contract.AgreementPoint(ts_ns=120 * S, compared=0, agreed=0),  # nothing to plot
        contract.AgreementPoint(ts_ns=180 * S, compared=62, agreed=24),
    ]
    cmp = modelview.comparison(listing(run, points))
    assert cmp is not None
    assert cmp.agreement == "Same call on 44 of 162 bars (27 %)"
    assert cmp.when_signalled == "When either signalled: the same call on 42 of 160 (26 %)"
    assert cmp.points == 2
    svg = str(cmp.chart)
    assert svg.count("<svg") == 2  # a laptop's and a phone's
    assert ">100 %</text>" in svg and ">0 %</text>" in svg
    fresh = modelview.comparison(listing(contract.ShadowRun(running=True), []))
    assert fresh is not None and "No bar both models decided on yet" in fresh.agreement
    assert "no data yet" in str(fresh.chart)


def test_a_single_point_is_a_dot_and_narrow_charts_fit_a_phone() -> None:
    one = str(charts.line_chart("x", [(S, D(5))], width=charts.NARROW))
    assert '<circle class="dot"' in one and f'viewBox="0 0 {charts.NARROW} ' in one
    both = str(charts.both_widths(lambda w: charts.bar_chart("d", [("12-04", D(1))], width=w)))
    assert 'class="chart-wide"' in both and 'class="chart-narrow"' in both


def test_a_stop_of_the_engine_breaks_the_line() -> None:
    minute = 60 * S
    steady = [(i * minute, D(100 + i)) for i in range(5)]
    resumed = [(3600 * S + i * minute, D(90 + i)) for i in range(4)]
    assert charts.gaps([ts for ts, _ in steady + resumed]) == [5]
    svg = str(charts.line_chart("Equity", steady + resumed))
    assert svg.count("<polyline") == 2
    assert str(charts.line_chart("Equity", steady)).count("<polyline") == 1

"""Reconciliation finding by finding and policy by policy, against an exchange whose state each
test sets exactly (positions, wallet, open orders, trades and income that appear between two
reads), with the real venue and the real ``orders.db``; the findings, the baseline and the last
report are read back from SQLite. The simulator cannot be told to hold a hedge-mode row or to
book a fill between reconciliation's two reads; this stand-in can, and runs in milliseconds."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest

from app.binance.signed import ExchangeClient
from app.clock import ManualClock
from app.engine.orders import ClientOrderIds, Order, OrderType, Side
from app.engine.risk import RiskGate
from app.live import ledger as lg
from app.live.ledger import OrderLedger
from app.live.reconcile import Discrepancy, ReconcileReport, reconcile
from app.live.venue import LiveVenue
from tests.live.conftest import FAST, RISK

BTC = "BTCUSDT"
ETH = "ETHUSDT"
NOW = 1_700_000_000_000_000_000


class Exchange:
    """The exchange's side of a pass as plain data. ``on_position_read`` runs one change after
    each ``positionRisk`` read (the market moving on between reconciliation's reads)."""

    def __init__(self) -> None:
        self.positions: list[dict[str, Any]] = []
        self.balances: list[dict[str, Any]] = [{"asset": "USDT", "balance": "1000"}]
        self.open: dict[str, list[dict[str, Any]]] = {}
        self.known: dict[str, dict[str, Any]] = {}
        self.trades: dict[str, list[dict[str, Any]]] = {}
        self.income_rows: list[dict[str, Any]] = []
        self.income_asked: list[int | None] = []
        self.cancelled: list[tuple[str, str]] = []
        self.on_position_read: list[Callable[[], None]] = []
        self.position_reads = 0

    def hold(self, symbol: str, qty: str, entry: str = "30000", side: str = "BOTH") -> None:
        self.positions = [p for p in self.positions if p["symbol"] != symbol]
        self.positions.append(
            {"symbol": symbol, "positionAmt": qty, "entryPrice": entry, "positionSide": side}
        )

    def trade(self, symbol: str, trade_id: int, side: str, qty: str, order_id: int = 1) -> None:
        self.trades.setdefault(symbol, []).append(
            {
                "symbol": symbol,
                "id": trade_id,
                "orderId": order_id,
                "side": side,
                "price": "30000",
                "qty": qty,
                "commission": "0",
                "commissionAsset": "USDT",
                "realizedPnl": "0",
                "maker": False,
                "time": 1_000 + trade_id,
            }
        )

    def pay(self, tran_id: int, amount: str, asset: str = "USDT") -> None:
        self.income_rows.append(
            {
                "tranId": tran_id,
                "incomeType": "FUNDING_FEE",
                "income": amount,
                "asset": asset,
                "time": 2_000 + tran_id,
            }
        )

    def set_wallet(self, balance: str) -> None:
        self.balances = [{"asset": "BNB", "balance": "7"}, {"asset": "USDT", "balance": balance}]

    def working(self, at: str, client_id: str, **fields: object) -> None:
        """An open order listed under ``at`` (its body may name another symbol, or none)."""
        body = {"symbol": at, "clientOrderId": client_id, "orderId": 900} | fields
        self.open.setdefault(at, []).append(body)

    def stop(self, symbol: str, side: str, **fields: object) -> None:
        """A stop placed by hand (the ledger does not know it)."""
        self.working(symbol, f"stop-{side}", type="STOP_MARKET", side=side, **fields)

    # -- the calls reconciliation and the venue make --------------------------------------------

    async def position_risk(self) -> list[dict[str, Any]]:
        self.position_reads += 1
        rows = [dict(p) for p in self.positions]
        if self.on_position_read:
            self.on_position_read.pop(0)()
        return rows

    async def balance(self) -> list[dict[str, Any]]:
        return list(self.balances)

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return list(self.open.get(symbol or "", []))

    async def query_order(self, symbol: str, client_id: str) -> dict[str, Any] | None:
        return self.known.get(client_id)

    async def user_trades(self, symbol: str, from_id: int | None = None) -> list[dict[str, Any]]:
        return [t for t in self.trades.get(symbol, []) if from_id is None or t["id"] >= from_id]

    async def income(self, start_ms: int | None = None) -> list[dict[str, Any]]:
        self.income_asked.append(start_ms)
        return list(self.income_rows)

    async def cancel_order(self, symbol: str, client_id: str) -> dict[str, Any]:
        self.cancelled.append((symbol, client_id))
        return {"clientOrderId": client_id, "orderId": 901, "status": "CANCELED"}


@pytest.fixture
def exchange() -> Exchange:
    return Exchange()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[OrderLedger]:
    j = OrderLedger(tmp_path / "orders.db")
    yield j
    j.close()


def _venue(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock, symbols: tuple[str, ...] = (BTC,)
) -> LiveVenue:
    gate = RiskGate(RISK, clock, ClientOrderIds(1))
    client = cast(ExchangeClient, exchange)
    return LiveVenue(client, ledger, gate, clock, {}, FAST, symbols)


async def _baselined(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock, symbols: tuple[str, ...] = (BTC,)
) -> LiveVenue:
    """A venue after its first pass on a flat account (the baseline is set, 1 s later now)."""
    venue = _venue(exchange, ledger, clock, symbols)
    first = await reconcile(venue, clock)
    assert first.ok and first.discrepancies == (), first
    clock.now_ns += 1_000_000_000
    return venue


def _table(ledger: OrderLedger, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(ledger.path)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql).fetchall()]
    finally:
        conn.close()


def _state(ledger: OrderLedger, key: str) -> Any:
    [row] = _table(ledger, f"SELECT value FROM live_state WHERE key = '{key}'")
    return json.loads(row["value"])


def _findings(ledger: OrderLedger) -> list[tuple[str, str, str, int, str]]:
    return [
        (r["kind"], r["symbol"], r["detail"], r["ts_ns"], r["resolution"])
        for r in _table(ledger, "SELECT * FROM discrepancies ORDER BY id")
    ]


def _order(client_id: str, purpose: str = "entry", symbol: str = BTC) -> Order:
    return Order(
        client_id, symbol, Side.BUY, OrderType.MARKET, Decimal("0.010"), None, False, None, None,
        5, "m", purpose, b"",
    )  # fmt: skip


async def _our_stop(exchange: Exchange, ledger: OrderLedger, symbol: str, side: str) -> None:
    """A working reduce-only stop of ours: journalled, and open at the exchange."""
    client_id = f"entry-{symbol}-sl"
    await ledger.record_intent(_order(client_id, "exit:stop", symbol), "stop", 1)
    body = {"clientOrderId": client_id, "orderId": 61, "status": "NEW"}
    exchange.known[client_id] = body
    exchange.working(symbol, client_id, orderId=61, type="STOP_MARKET", side=side, reduceOnly=True)


# -- policies and the first pass --------------------------------------------------------------


async def test_an_unknown_policy_is_refused_before_anything_is_read(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = _venue(exchange, ledger, clock)
    with pytest.raises(ValueError, match=r"^policy must be one of \('adopt', 'wait'\)$"):
        await reconcile(venue, clock, "ignore")
    assert exchange.income_asked == []
    assert await ledger.get_state("baseline") is None


async def test_the_first_pass_on_a_flat_account_sets_the_baseline_and_releases(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.set_wallet("1234.5")
    exchange.pay(3, "0.5")
    venue = _venue(exchange, ledger, clock, (BTC, ETH))
    assert venue.halted
    with caplog.at_level(logging.INFO, logger="app.live.reconcile"):
        report = await reconcile(venue, clock)
    assert report == ReconcileReport(
        ok=True,
        policy="wait",
        ts_ns=NOW,
        discrepancies=(),
        recovered_fills=0,
        recovered_income=1,
        queried_orders=0,
        unknown_orders=0,
        positions={},
        wallet="1234.5",
    )
    assert exchange.income_asked == [None]  # no baseline yet: everything there is
    assert not venue.halted and venue.halt_reason == ""
    assert venue.portfolio.balance == Decimal("1234.5")
    assert _state(ledger, "baseline") == {
        "ts_ns": NOW,
        "positions": {},
        "trade_ids": {BTC: 0, ETH: 0},
        "wallet": "1234.5",
        "tran_id": 3,
    }
    assert _state(ledger, "last_reconcile") == json.loads(json.dumps(report.as_dict()))
    assert _findings(ledger) == []
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("app.live.reconcile", "reconciliation: ok=True, 0 difference(s)")
    ]


async def test_the_first_pass_with_no_income_and_no_usdt_starts_from_zero(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    exchange.balances = [{"asset": "BNB", "balance": "5"}, {"balance": "9"}]
    venue = _venue(exchange, ledger, clock)
    report = await reconcile(venue, clock)
    assert report.ok and report.wallet == "0"
    assert _state(ledger, "baseline")["tran_id"] == 0
    assert _state(ledger, "baseline")["wallet"] == "0"


async def test_the_first_pass_shows_a_position_and_a_hand_placed_order_and_waits(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    exchange.hold(BTC, "0.5")
    exchange.hold(ETH, "0")
    exchange.stop(BTC, "SELL", reduceOnly=True, orderId=31)
    await ledger.record_intent(_order("ours-sl", "exit:stop"), "stop", 1)
    exchange.known["ours-sl"] = {"clientOrderId": "ours-sl", "orderId": 32, "status": "NEW"}
    exchange.working(BTC, "ours-sl", orderId=32)
    venue = _venue(exchange, ledger, clock, (BTC, ETH))
    report = await reconcile(venue, clock, "wait")
    assert not report.ok
    assert report.discrepancies == (
        Discrepancy("preexisting_position", BTC, "position 0.5 before the first live start"),
        Discrepancy("foreign_open_order", BTC, "open order 31"),
    )
    assert venue.halted
    assert venue.halt_reason == "reconciliation found 2 difference(s): preexisting_position"
    assert [f[:2] for f in _findings(ledger)] == [
        ("preexisting_position", BTC),
        ("foreign_open_order", BTC),
    ]
    assert {f[3] for f in _findings(ledger)} == {NOW}
    # The first baseline is set whatever the policy: the next pass compares with it.
    assert _state(ledger, "baseline")["positions"] == {BTC: "0.5", ETH: "0"}
    assert _state(ledger, "baseline")["wallet"] == "1000"


async def test_adopting_a_first_pass_finding_resolves_it_and_starts_the_books_there(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    exchange.hold(BTC, "-0.2", entry="31000")
    exchange.stop(BTC, "BUY", closePosition=True)
    venue = _venue(exchange, ledger, clock)
    report = await reconcile(venue, clock, "adopt")
    assert report.ok and report.policy == "adopt"
    assert [d.kind for d in report.discrepancies] == ["preexisting_position", "foreign_open_order"]
    assert report.positions == {BTC: "-0.2"}
    assert [f[4] for f in _findings(ledger)] == ["adopted the exchange's state"] * 2
    [resolved] = {r["resolved_ts_ns"] for r in _table(ledger, "SELECT * FROM discrepancies")}
    assert resolved == NOW
    position = venue.portfolio.position(BTC)
    assert (position.qty, position.cost) == (Decimal("-0.2"), Decimal("-6200.0"))
    assert venue.portfolio.balance == Decimal(1000)
    assert not venue.halted


async def test_rows_of_other_symbols_and_of_hedge_mode_sides_are_not_our_positions(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    exchange.hold("SOLUSDT", "3")
    exchange.hold(BTC, "0.4", side="LONG")
    exchange.positions.append({"symbol": ETH, "positionAmt": "0", "entryPrice": "0"})
    venue = _venue(exchange, ledger, clock, (BTC, ETH))
    report = await reconcile(venue, clock, "wait")
    assert report.ok and report.discrepancies == ()
    # A row without positionSide is one-way mode's BOTH.
    assert _state(ledger, "baseline")["positions"] == {ETH: "0"}


# -- position_mismatch ---------------------------------------------------------------------


async def test_a_fill_the_ledger_recovered_explains_the_exchange_position(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.trade(BTC, 1, "BUY", "0.030")
    exchange.trade(BTC, 2, "SELL", "0.010")
    exchange.hold(BTC, "0.020", entry="30100")
    await _our_stop(exchange, ledger, BTC, "SELL")
    report = await reconcile(venue, clock, "wait")
    assert report.ok and report.discrepancies == (), report
    assert report.recovered_fills == 2
    assert report.positions == {BTC: "0.020"}
    baseline = _state(ledger, "baseline")
    assert baseline["trade_ids"] == {BTC: 2}
    assert baseline["positions"] == {BTC: "0.020"}
    assert baseline["ts_ns"] == clock.now_ns
    position = venue.portfolio.position(BTC)
    assert (position.qty, position.cost) == (Decimal("0.020"), Decimal("602.000"))


async def test_position_mismatch_names_both_quantities_and_wait_halts(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.trade(BTC, 1, "BUY", "0.030")
    exchange.hold(BTC, "0.050")
    await _our_stop(exchange, ledger, BTC, "SELL")
    report = await reconcile(venue, clock)
    assert not report.ok and report.policy == "wait"
    assert report.discrepancies == (
        Discrepancy("position_mismatch", BTC, "ledger implies 0.030, exchange has 0.050"),
    )
    assert venue.halt_reason == "reconciliation found 1 difference(s): position_mismatch"
    assert _findings(ledger) == [
        (
            "position_mismatch",
            BTC,
            "ledger implies 0.030, exchange has 0.050",
            clock.now_ns,
            "",
        )
    ]
    # Under wait the baseline stays, the books are not reset and the finding stays open.
    assert _state(ledger, "baseline")["ts_ns"] == NOW
    assert venue.position_qty(BTC) == Decimal("0.030")
    assert _state(ledger, "last_reconcile")["ok"] is False


async def test_a_position_the_exchange_closed_behind_our_back_is_a_mismatch(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.trade(BTC, 1, "BUY", "0.030")
    report = await reconcile(venue, clock)
    assert [(d.kind, d.detail) for d in report.discrepancies] == [
        ("position_mismatch", "ledger implies 0.030, exchange has 0")
    ]


async def test_the_baseline_quantity_and_trade_id_are_where_the_sum_starts(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.trade(BTC, 1, "BUY", "0.100")
    exchange.trade(BTC, 2, "BUY", "0.030")
    await ledger.set_state(
        "baseline",
        {
            "ts_ns": NOW,
            "positions": {BTC: "0.2"},
            "trade_ids": {BTC: 1},
            "wallet": "1000",
            "tran_id": 0,
        },
        NOW,
    )
    exchange.hold(BTC, "0.230")
    await _our_stop(exchange, ledger, BTC, "SELL")
    report = await reconcile(venue, clock)
    # 0.2 at the baseline + trade 2 only (trade 1 is already in the 0.2).
    assert report.ok and report.discrepancies == (), report


async def test_a_symbol_added_after_the_baseline_counts_all_its_fills(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    await _baselined(exchange, ledger, clock)  # BTC only
    venue = _venue(exchange, ledger, clock, (BTC, ETH))
    exchange.trade(ETH, 1, "SELL", "0.5")
    exchange.hold(ETH, "-0.5")
    await _our_stop(exchange, ledger, ETH, "BUY")
    report = await reconcile(venue, clock)
    assert report.ok and report.discrepancies == (), report
    assert report.positions == {ETH: "-0.5"}


async def test_a_fill_booked_between_the_reads_is_fetched_and_compared_again(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.trade(BTC, 1, "BUY", "0.010")
    await _our_stop(exchange, ledger, BTC, "SELL")

    def trade_lands() -> None:  # the position moved before its trade reached userTrades
        exchange.trade(BTC, 2, "BUY", "0.020")
        exchange.pay(7, "-0.1")
        exchange.set_wallet("999.9")

    exchange.hold(BTC, "0.030")
    exchange.on_position_read.append(trade_lands)
    report = await reconcile(venue, clock, "wait")
    assert report.ok and report.discrepancies == (), report
    assert (report.recovered_fills, report.recovered_income) == (2, 1)
    start_ms = NOW // 1_000_000
    assert exchange.income_asked[-2:] == [start_ms, start_ms]
    assert _state(ledger, "baseline")["tran_id"] == 7
    assert venue.portfolio.balance == Decimal("999.9")


async def test_income_booked_between_the_reads_is_fetched_and_compared_again(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.pay(3, "1")

    def funding_lands() -> None:
        exchange.pay(4, "2.5")

    exchange.set_wallet("1003.5")
    exchange.on_position_read.append(funding_lands)
    report = await reconcile(venue, clock, "wait")
    assert report.ok and report.discrepancies == (), report
    assert report.recovered_income == 2  # one before the first read, one between the reads
    # From the baseline's time, then from the last income recorded (tranId 3's time).
    assert exchange.income_asked == [None, NOW // 1_000_000, 2_003]


async def test_a_second_read_that_still_differs_is_the_finding(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    await _our_stop(exchange, ledger, BTC, "SELL")
    exchange.hold(BTC, "0.010")

    def grows() -> None:
        exchange.hold(BTC, "0.020")

    exchange.on_position_read.append(grows)
    report = await reconcile(venue, clock, "wait")
    assert [d.detail for d in report.discrepancies] == ["ledger implies 0, exchange has 0.020"]
    assert report.positions == {BTC: "0.020"}


async def test_a_finding_other_than_a_mismatch_is_not_read_twice(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.working(BTC, "by-hand", orderId=44)
    reads = exchange.position_reads
    report = await reconcile(venue, clock, "wait")
    assert [d.kind for d in report.discrepancies] == ["foreign_open_order"]
    assert exchange.income_asked == [None, NOW // 1_000_000]
    assert exchange.position_reads == reads + 1


# -- balance_mismatch ---------------------------------------------------------------------


async def test_recorded_income_explains_the_wallet(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.pay(1, "-0.75")
    exchange.pay(2, "5")
    exchange.pay(3, "100", asset="BNB")
    exchange.set_wallet("1004.25")
    report = await reconcile(venue, clock, "wait")
    assert report.ok and report.discrepancies == (), report
    assert report.recovered_income == 3
    assert report.wallet == "1004.25"
    assert _state(ledger, "baseline")["wallet"] == "1004.25"
    assert _state(ledger, "baseline")["tran_id"] == 2


@pytest.mark.parametrize(
    ("wallet", "finding"),
    [
        ("1000.00000001", False),
        ("999.99999999", False),
        ("1000.00000002", True),
        ("999.99999998", True),
        ("1001", True),
        ("999", True),
    ],
)
async def test_a_wallet_difference_beyond_one_hundred_millionth_is_a_balance_mismatch(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock, wallet: str, finding: bool
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.set_wallet(wallet)
    report = await reconcile(venue, clock, "wait")
    if finding:
        assert report.discrepancies == (
            Discrepancy("balance_mismatch", "", f"ledger implies 1000, exchange has {wallet}"),
        )
        assert venue.halt_reason == "reconciliation found 1 difference(s): balance_mismatch"
    else:
        assert report.ok and report.discrepancies == (), report


async def test_a_balance_mismatch_adopted_moves_the_baseline_to_the_exchange_wallet(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.set_wallet("900")
    report = await reconcile(venue, clock, "adopt")
    assert report.ok and [d.kind for d in report.discrepancies] == ["balance_mismatch"]
    assert _state(ledger, "baseline")["wallet"] == "900"
    assert venue.portfolio.balance == Decimal(900)
    assert [(f[0], f[4]) for f in _findings(ledger)] == [
        ("balance_mismatch", "adopted the exchange's state")
    ]
    again = await reconcile(venue, clock, "wait")
    assert again.ok and again.discrepancies == ()


# -- open orders ------------------------------------------------------------------------------


async def test_an_open_order_the_ledger_does_not_know_is_foreign(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    await ledger.record_intent(_order("ours"), "signal", 1)
    exchange.known["ours"] = {"clientOrderId": "ours", "orderId": 51, "status": "NEW"}
    exchange.working(BTC, "ours", orderId=51)
    exchange.working(BTC, "by-hand", orderId=52)
    exchange.open[BTC].append({"orderId": 53})  # no client id, no symbol
    report = await reconcile(venue, clock, "wait")
    assert report.discrepancies == (
        Discrepancy("foreign_open_order", BTC, "open order 52 (by-hand) is not in the ledger"),
        Discrepancy("foreign_open_order", "", "open order 53 () is not in the ledger"),
    )
    assert report.queried_orders == 1
    assert not report.ok


# -- unprotected_position -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "stop", "protected"),
    [
        ("0.5", {"side": "SELL", "reduceOnly": True}, True),
        ("0.5", {"side": "SELL", "closePosition": True}, True),
        ("-0.5", {"side": "BUY", "reduceOnly": True}, True),
        ("-0.5", {"side": "BUY", "closePosition": "true"}, True),
        ("0.5", {"side": "BUY", "reduceOnly": True}, False),
        ("-0.5", {"side": "SELL", "reduceOnly": True}, False),
        ("0.5", {"side": "SELL"}, False),
        ("0.5", {"side": "SELL", "reduceOnly": False, "closePosition": False}, False),
        ("0.5", {"side": "SELL", "reduceOnly": True, "type": "TAKE_PROFIT_MARKET"}, False),
        ("0.5", {"side": "SELL", "reduceOnly": True, "symbol": ETH}, False),
    ],
)
async def test_only_a_working_reduce_only_stop_on_the_closing_side_protects_a_position(
    exchange: Exchange,
    ledger: OrderLedger,
    clock: ManualClock,
    qty: str,
    stop: dict[str, Any],
    protected: bool,
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.trade(BTC, 1, "BUY" if qty[0] != "-" else "SELL", qty.lstrip("-"))
    exchange.hold(BTC, qty)
    await ledger.record_intent(_order("ours-sl", "exit:stop"), "stop", 1)
    exchange.known["ours-sl"] = {"clientOrderId": "ours-sl", "orderId": 61, "status": "NEW"}
    exchange.working(BTC, "ours-sl", **({"type": "STOP_MARKET", "orderId": 61} | stop))
    report = await reconcile(venue, clock, "wait")
    if protected:
        assert report.ok and report.discrepancies == (), report
    else:
        assert report.discrepancies == (
            Discrepancy("unprotected_position", BTC, f"position {qty} has no working stop"),
        )


async def test_a_flat_symbol_before_an_unprotected_one_does_not_hide_it(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock, (ETH, BTC))
    exchange.hold(ETH, "0")
    exchange.trade(BTC, 1, "BUY", "0.5")
    exchange.hold(BTC, "0.5")
    report = await reconcile(venue, clock, "adopt")
    assert [(d.kind, d.symbol) for d in report.discrepancies] == [("unprotected_position", BTC)]
    assert report.positions == {BTC: "0.5"}  # the flat one is left out
    assert [(p.symbol, p.qty) for p in venue.portfolio.positions()] == [(BTC, Decimal("0.5"))]


# -- order_unknown, what a pass queries, and protection of a flat symbol --------------------------


async def test_orders_short_of_a_final_state_are_queried_and_settled(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    for client_id in ("sent", "lost", "working", "finished"):
        await ledger.record_intent(_order(client_id), "signal", 1)
    await ledger.record("working", "response", {}, 2, stage=lg.OPEN, status="NEW", order_id=72)
    await ledger.record("finished", "response", {}, 2, stage=lg.DONE, status="FILLED")
    exchange.known["sent"] = {"clientOrderId": "sent", "orderId": 71, "status": "CANCELED"}
    exchange.known["working"] = {"clientOrderId": "working", "orderId": 72, "status": "CANCELED"}
    report = await reconcile(venue, clock, "wait")
    assert report.ok and report.discrepancies == (), report
    assert (report.queried_orders, report.unknown_orders) == (3, 0)
    stages = {r["client_id"]: r["stage"] for r in _table(ledger, "SELECT * FROM orders")}
    assert stages == {"sent": lg.DONE, "lost": lg.NOT_SENT, "working": lg.DONE, "finished": lg.DONE}


@pytest.mark.parametrize("policy", ["wait", "adopt"])
async def test_an_order_still_unknown_keeps_the_venue_halted_under_either_policy(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock, policy: str
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    exchange.set_wallet("1001")  # a difference adopt alone would take
    for client_id in ("u-1", "u-2"):
        await ledger.record_intent(_order(client_id), "signal", 1)
        await ledger.record(client_id, "unresolved", {}, 2, stage=lg.UNKNOWN)
    report = await reconcile(venue, clock, policy)
    assert not report.ok
    assert (report.queried_orders, report.unknown_orders) == (2, 2)
    assert report.discrepancies[-1] == Discrepancy(
        "order_unknown", "", "2 order(s) could not be settled"
    )
    assert [d.kind for d in report.discrepancies] == ["balance_mismatch", "order_unknown"]
    assert venue.halted
    assert venue.halt_reason == "reconciliation found 2 difference(s): balance_mismatch"
    assert [f[4] for f in _findings(ledger)] == ["", ""]
    assert _state(ledger, "baseline")["wallet"] == "1000"


async def test_the_survivor_of_a_stop_or_take_profit_is_cancelled_once_flat(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock, (BTC, ETH))
    venue.track_protection(BTC, "e-1-tp")
    venue.track_protection(ETH, "e-2-sl")
    exchange.trade(ETH, 1, "BUY", "0.5")
    exchange.hold(ETH, "0.5")
    await _our_stop(exchange, ledger, ETH, "SELL")
    report = await reconcile(venue, clock, "wait")
    assert report.ok, report
    assert exchange.cancelled == [(BTC, "e-1-tp")]


async def test_nothing_is_cancelled_or_released_when_the_pass_halts(
    exchange: Exchange, ledger: OrderLedger, clock: ManualClock
) -> None:
    venue = await _baselined(exchange, ledger, clock)
    venue.track_protection(BTC, "e-1-tp")
    exchange.set_wallet("1")
    report = await reconcile(venue, clock, "wait")
    assert not report.ok
    assert exchange.cancelled == []
    assert venue.halted


def test_a_report_by_default_has_no_findings_and_a_zero_wallet() -> None:
    report = ReconcileReport(ok=True, policy="wait", ts_ns=1)
    assert report.as_dict() == {
        "ok": True,
        "policy": "wait",
        "ts_ns": 1,
        "discrepancies": (),
        "recovered_fills": 0,
        "recovered_income": 0,
        "queried_orders": 0,
        "unknown_orders": 0,
        "positions": {},
        "wallet": "0",
    }

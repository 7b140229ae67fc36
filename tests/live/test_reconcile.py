"""Reconciliation against the real simulator: each finding (``position_mismatch``,
``balance_mismatch``, ``unprotected_position``, ``order_unknown``) and each policy (``wait``
halts, ``adopt`` takes the exchange's state unless an order is still unknown)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from app.binance.signed import SignedRest
from app.clock import SystemClock
from app.engine.orders import Order, OrderStatus
from app.engine.risk import RiskGate
from app.live import ledger as lg
from app.live.ledger import OrderLedger
from app.live.reconcile import ReconcileReport, reconcile
from app.live.venue import LiveVenue
from tests.live.conftest import FAST, SYMBOL, entry, filters_of, mark_price


async def _reconciled_venue(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> LiveVenue:
    """A venue after its first reconciliation (flat account: the baseline is set, no finding)."""
    venue = LiveVenue(client, ledger, gate, clock, await filters_of(client), FAST, (SYMBOL,))
    first = await reconcile(venue, clock)
    assert first.ok and first.discrepancies == (), first
    assert not venue.halted
    return venue


async def _long(venue: LiveVenue, client: SignedRest, gate: RiskGate) -> Order:
    order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
    assert (await venue.place(order)).status is OrderStatus.FILLED
    return order


def _kinds(report: ReconcileReport) -> list[str]:
    return [d.kind for d in report.discrepancies]


async def _tamper_baseline(ledger: OrderLedger, clock: SystemClock, **changes: Any) -> None:
    baseline: dict[str, Any] = await ledger.get_state("baseline")
    baseline.update(changes)
    await ledger.set_state("baseline", baseline, clock.time_ns())


async def test_a_recorded_fill_and_its_income_reconcile_with_no_finding(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _reconciled_venue(client, ledger, gate, clock)
    await _long(venue, client, gate)
    report = await reconcile(venue, clock)
    assert report.ok and report.discrepancies == (), report
    assert report.positions == {SYMBOL: "0.010"}
    assert not venue.halted


async def test_position_mismatch_halts_under_wait(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _reconciled_venue(client, ledger, gate, clock)
    await _long(venue, client, gate)
    # The ledger now implies 0.5 + 0.010 where the exchange holds 0.010.
    await _tamper_baseline(ledger, clock, positions={SYMBOL: "0.5"})
    report = await reconcile(venue, clock, "wait")
    assert not report.ok
    assert _kinds(report) == ["position_mismatch"]
    assert report.discrepancies[0].symbol == SYMBOL
    assert "ledger implies 0.510, exchange has 0.010" in report.discrepancies[0].detail
    assert venue.halted and "position_mismatch" in venue.halt_reason
    open_rows = await ledger.open_discrepancies()
    assert [r["kind"] for r in open_rows] == ["position_mismatch"]
    # The baseline stays where it was: the operator decides.
    assert (await ledger.get_state("baseline"))["positions"] == {SYMBOL: "0.5"}


async def test_position_mismatch_adopted_takes_the_exchange_state(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _reconciled_venue(client, ledger, gate, clock)
    await _long(venue, client, gate)
    await _tamper_baseline(ledger, clock, positions={SYMBOL: "0.5"})
    report = await reconcile(venue, clock, "adopt")
    assert report.ok
    assert _kinds(report) == ["position_mismatch"]
    assert not venue.halted
    assert await ledger.open_discrepancies() == []
    resolved = await ledger.discrepancies()
    assert [r["resolution"] for r in resolved] == ["adopted the exchange's state"]
    assert (await ledger.get_state("baseline"))["positions"] == {SYMBOL: "0.010"}
    assert venue.position_qty(SYMBOL) == Decimal("0.010")
    again = await reconcile(venue, clock, "wait")
    assert again.ok and again.discrepancies == ()


async def test_balance_mismatch_halts_under_wait(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _reconciled_venue(client, ledger, gate, clock)
    baseline = await ledger.get_state("baseline")
    wallet = Decimal(baseline["wallet"])
    await _tamper_baseline(ledger, clock, wallet=str(wallet + Decimal("100")))
    report = await reconcile(venue, clock, "wait")
    assert not report.ok
    assert _kinds(report) == ["balance_mismatch"]
    assert f"exchange has {wallet}" in report.discrepancies[0].detail
    assert venue.halted


async def test_a_balance_difference_within_the_tolerance_is_no_finding(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _reconciled_venue(client, ledger, gate, clock)
    baseline = await ledger.get_state("baseline")
    wallet = Decimal(baseline["wallet"])
    await _tamper_baseline(ledger, clock, wallet=str(wallet + Decimal("0.00000001")))
    report = await reconcile(venue, clock, "wait")
    assert report.ok and report.discrepancies == (), report


async def test_a_position_whose_stop_was_cancelled_is_unprotected(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _reconciled_venue(client, ledger, gate, clock)
    order = await _long(venue, client, gate)
    await client.cancel_order(SYMBOL, f"{order.client_id}-sl")  # by hand, behind our back
    report = await reconcile(venue, clock, "wait")
    assert not report.ok
    assert _kinds(report) == ["unprotected_position"]
    assert report.discrepancies[0].symbol == SYMBOL
    assert "position 0.010 has no working stop" in report.discrepancies[0].detail
    assert venue.halted
    # The ledger took the exchange's word for the cancelled stop.
    row = await ledger.order(f"{order.client_id}-sl")
    assert row is not None and (row["stage"], row["status"]) == (lg.DONE, "CANCELED")


async def test_adopt_does_not_go_ahead_while_an_order_is_unknown(
    client: SignedRest, ledger: OrderLedger, gate: RiskGate, clock: SystemClock
) -> None:
    venue = await _reconciled_venue(client, ledger, gate, clock)
    # An order the ledger holds as unknown, which the exchange cannot tell us about.
    order = entry(gate, await filters_of(client), await mark_price(client), "0.010")
    await ledger.record_intent(order, "test", clock.time_ns())
    await ledger.record(order.client_id, "unresolved", {}, clock.time_ns(), stage=lg.UNKNOWN)
    report = await reconcile(venue, clock, "adopt")
    assert not report.ok
    assert report.unknown_orders == 1
    assert _kinds(report) == ["order_unknown"]
    assert venue.halted and "order_unknown" in venue.halt_reason
    assert [r["kind"] for r in await ledger.open_discrepancies()] == ["order_unknown"]

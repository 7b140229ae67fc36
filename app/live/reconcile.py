"""Reconciliation: the exchange's open orders, positions and balance against the ledger.

A pass (at a live start, after every user-stream reconnect, and every ``reconcile_interval_s``):

1. every recorded order short of a final state is queried by client id and takes the
   exchange's state (an intent the exchange does not know was never sent);
2. fills and income missed while we were away are fetched (``userTrades``, ``income``);
3. the exchange is compared with what the ledger implies since the last agreed *baseline*:
   - positions: baseline quantity + Σ recorded fills since the baseline's trade ids;
   - wallet balance: baseline balance + Σ recorded income since the baseline's ``tranId``;
   - open orders: every open order on our symbols must be one of ours (a recorded client id);
   - orders the exchange could not tell us about (still ``unknown``).
4. No difference: the baseline moves to now, the venue's books restart from the exchange's
   wallet and positions, and a halted venue is released. A difference is recorded in
   ``discrepancies`` (and shown by ``live.status``) and handled by the stated policy: ``adopt``
   (the exchange is right: new baseline, the differences marked resolved "adopted") or
   ``wait`` (the venue stays halted until the operator runs ``live.reconcile`` with
   ``{"policy": "adopt"}``).

An open position without a working reduce-only stop on the exchange is reported too
(``unprotected_position``): it is the one state a power cut must never leave behind.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from app.binance.signed import ExchangeClient, dec
from app.clock import Clock
from app.engine.portfolio import Position
from app.live.ledger import OrderLedger
from app.live.venue import LiveVenue

log = logging.getLogger(__name__)

POLICIES = ("adopt", "wait")
_TOLERANCE = Decimal("0.00000001")


@dataclass(frozen=True)
class Discrepancy:
    kind: str
    symbol: str
    detail: str


@dataclass(frozen=True)
class ReconcileReport:
    """One pass's outcome. ``ok``: the venue may trade (no difference, or all adopted)."""

    ok: bool
    policy: str
    ts_ns: int
    discrepancies: tuple[Discrepancy, ...] = ()
    recovered_fills: int = 0
    recovered_income: int = 0
    queried_orders: int = 0
    unknown_orders: int = 0
    positions: dict[str, str] = field(default_factory=dict)
    wallet: str = "0"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _exchange_state(
    client: ExchangeClient, symbols: tuple[str, ...]
) -> tuple[dict[str, Decimal], dict[str, Decimal], Decimal, list[dict[str, Any]]]:
    positions: dict[str, Decimal] = {}
    entries: dict[str, Decimal] = {}
    for row in await client.position_risk():
        symbol = str(row["symbol"])
        if symbol in symbols and row.get("positionSide", "BOTH") == "BOTH":
            positions[symbol] = dec(row["positionAmt"])
            entries[symbol] = dec(row["entryPrice"])
    wallet = Decimal(0)
    for row in await client.balance():
        if row.get("asset") == "USDT":
            wallet = dec(row["balance"])
    open_orders: list[dict[str, Any]] = []
    for symbol in symbols:
        open_orders.extend(await client.open_orders(symbol))
    return positions, entries, wallet, open_orders


async def _compare(
    ledger: OrderLedger,
    baseline: dict[str, Any],
    symbols: tuple[str, ...],
    positions: dict[str, Decimal],
    wallet: Decimal,
    open_orders: list[dict[str, Any]],
) -> list[Discrepancy]:
    found: list[Discrepancy] = []
    for symbol in symbols:
        base_qty = Decimal(baseline["positions"].get(symbol, "0"))
        after = int(baseline["trade_ids"].get(symbol, 0))
        expected = base_qty + await ledger.position_since(symbol, after)
        actual = positions.get(symbol, Decimal(0))
        if expected != actual:
            found.append(
                Discrepancy(
                    "position_mismatch",
                    symbol,
                    f"ledger implies {expected}, exchange has {actual}",
                )
            )
    income, _ = await ledger.income_since(int(baseline["tran_id"]))
    expected_wallet = Decimal(baseline["wallet"]) + income
    if abs(expected_wallet - wallet) > _TOLERANCE:
        found.append(
            Discrepancy(
                "balance_mismatch", "", f"ledger implies {expected_wallet}, exchange has {wallet}"
            )
        )
    for body in open_orders:
        client_id = str(body.get("clientOrderId", ""))
        if await ledger.order(client_id) is None:
            found.append(
                Discrepancy(
                    "foreign_open_order",
                    str(body.get("symbol", "")),
                    f"open order {body.get('orderId')} ({client_id}) is not in the ledger",
                )
            )
    for symbol, qty in positions.items():
        if not qty:
            continue
        closing = "SELL" if qty > 0 else "BUY"
        stops = [
            o
            for o in open_orders
            if o.get("symbol") == symbol
            and o.get("type") == "STOP_MARKET"
            and o.get("side") == closing
            and (o.get("reduceOnly") or o.get("closePosition"))
        ]
        if not stops:
            found.append(
                Discrepancy("unprotected_position", symbol, f"position {qty} has no working stop")
            )
    return found


async def _baseline_now(
    ledger: OrderLedger,
    symbols: tuple[str, ...],
    positions: dict[str, Decimal],
    wallet: Decimal,
    ts_ns: int,
) -> dict[str, Any]:
    trade_ids = {s: (await ledger.last_trade_id(s)) or 0 for s in symbols}
    _, top = await ledger.income_since(0)
    baseline = {
        "ts_ns": ts_ns,
        "positions": {s: str(q) for s, q in positions.items()},
        "trade_ids": trade_ids,
        "wallet": str(wallet),
        "tran_id": top,
    }
    await ledger.set_state("baseline", baseline, ts_ns)
    return baseline


async def reconcile(venue: LiveVenue, clock: Clock, policy: str = "wait") -> ReconcileReport:
    """One reconciliation pass (see the module docstring); releases or halts ``venue``."""
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}")
    ledger, client, symbols = venue.ledger, venue.client, venue.symbols
    queried = len(await ledger.orders(("intent", "open", "unknown")))
    unknown = await venue.resync_open()
    fills = await venue.recover_fills()
    baseline = await ledger.get_state("baseline")
    start_ms = int(baseline["ts_ns"]) // 1_000_000 if baseline else None
    income = await venue.recover_income(start_ms)
    positions, entries, wallet, open_orders = await _exchange_state(client, symbols)
    now = clock.time_ns()
    if baseline is None:
        # First live start: there is no history to compare with; anything already there (a
        # position, an order placed by hand) is shown, and adopted only by policy.
        found = [
            Discrepancy("preexisting_position", s, f"position {q} before the first live start")
            for s, q in positions.items()
            if q
        ] + [
            Discrepancy(
                "foreign_open_order", str(o.get("symbol")), f"open order {o.get('orderId')}"
            )
            for o in open_orders
            if await ledger.order(str(o.get("clientOrderId", ""))) is None
        ]
        baseline = await _baseline_now(ledger, symbols, positions, wallet, now)
    else:
        found = await _compare(ledger, baseline, symbols, positions, wallet, open_orders)
        if any(d.kind in ("position_mismatch", "balance_mismatch") for d in found):
            # A fill may have landed between our reads: fetch once more and compare again.
            fills += await venue.recover_fills()
            income += await venue.recover_income(start_ms)
            positions, entries, wallet, open_orders = await _exchange_state(client, symbols)
            found = await _compare(ledger, baseline, symbols, positions, wallet, open_orders)
    if unknown:
        found.append(Discrepancy("order_unknown", "", f"{unknown} order(s) could not be settled"))
    for d in found:
        await ledger.add_discrepancy(d.kind, d.symbol, d.detail, now)
    ok = not found or (policy == "adopt" and not unknown)
    if found and ok:
        await ledger.resolve_discrepancies("adopted the exchange's state", now)
    if ok:
        await _baseline_now(ledger, symbols, positions, wallet, now)
        books = [Position(s, q, q * entries.get(s, Decimal(0))) for s, q in positions.items() if q]
        venue.reset_books(wallet, books)
        for symbol in symbols:
            if not positions.get(symbol):
                await venue.cancel_protection(symbol)  # the survivor of a stop or take-profit
        venue.release()
    else:
        venue.halt(f"reconciliation found {len(found)} difference(s): {found[0].kind}")
    report = ReconcileReport(
        ok=ok,
        policy=policy,
        ts_ns=now,
        discrepancies=tuple(found),
        recovered_fills=fills,
        recovered_income=income,
        queried_orders=queried,
        unknown_orders=unknown,
        positions={s: str(q) for s, q in positions.items() if q},
        wallet=str(wallet),
    )
    await ledger.set_state("last_reconcile", report.as_dict(), now)
    log.info("reconciliation: ok=%s, %d difference(s)", ok, len(found))
    return report

"""The live venue: gate-sealed orders to the exchange through the write-ahead ledger.

Implements the trader's :class:`~app.engine.trader.Venue` protocol, like the paper exchange.
:meth:`LiveVenue.submit` is synchronous (it runs on the hot path): it checks the seal, counts the
order as pending and starts the order path as a task; :meth:`LiveVenue.place` is that path, for
callers that want to await it:

1. commit the intent to the ledger and wait for the commit (``synchronous=FULL``);
2. ``POST /fapi/v1/order`` with ``newClientOrderId`` = the gate's client id;
3. record the answer; a refusal (-2019 margin, a filter) becomes a rejected order and a risk
   event with the exchange's reason; a timeout or 5xx is resolved by querying the order by
   ``origClientOrderId``: found, it is adopted; not found (twice, a grace period apart), it is
   sent once more under the same client id; still unresolved, it stays ``unknown`` and the venue
   halts until reconciliation settles it. A retry therefore never duplicates an order;
4. once an entry has filled, its protective exits go to the exchange at once: ``STOP_MARKET``
   and ``TAKE_PROFIT_MARKET``, ``reduceOnly``, at the gate's stop and take-profit, client ids
   ``<entry id>-sl``/``-tp``. They work with no engine running; when the position is flat again
   the survivor is cancelled. If the market is already past a level (-2021 "would immediately
   trigger"), the position is closed at once with a gate-made reduce-only market order.

Fills come from the user-data stream and, for anything the stream may have missed (a drop, a
restart), from ``userTrades``; both go through the ledger's ``fills`` table keyed by trade id,
so each fill reaches the books exactly once. ``income`` (commissions, realised PnL, funding) is
recovered the same way.

While ``halted`` (a live start before reconciliation, an unknown order, a refused key), entries
are refused; exits (reduce-only) still go out: cutting risk is always allowed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from app.binance.filters import SymbolFilters
from app.binance.signed import ExchangeClient, dec
from app.binance.transport import Params
from app.clock import Clock
from app.config import LiveConfig
from app.engine.book import OrderBook
from app.engine.events import AggTrade, MarkPriceUpdate
from app.engine.orders import (
    ZERO,
    Fill,
    Liquidity,
    Order,
    OrderAuthority,
    OrderNotApprovedError,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Side,
)
from app.engine.portfolio import AccountSnapshot, Portfolio, Position
from app.engine.risk import RiskEvent
from app.errors import (
    ApiKeyError,
    ExchangeApiError,
    OrderRejectedError,
    RateLimitedError,
)
from app.live import ledger as lg
from app.live.ledger import LedgerFill, OrderLedger

log = logging.getLogger(__name__)

# Set by the chaos test only: "after_send" kills the process (SIGKILL) right after the order's
# answer arrived and before it is recorded.
CHAOS_ENV = "APPLIANCE_LIVE_CHAOS"
_QUERY_GRACE_S = 0.5
_WOULD_TRIGGER = -2021  # "Order would immediately trigger."
_STATUS = {s.value: s for s in OrderStatus}


@dataclass(slots=True)
class _Live:
    """An order this process sent, while it may still change."""

    order: Order
    status: OrderStatus = OrderStatus.NEW
    filled: Decimal = ZERO
    avg_price: Decimal | None = None
    fees: Decimal = ZERO
    reason: str = ""
    protected: bool = False

    def update(self, ts_ns: int) -> OrderUpdate:
        return OrderUpdate(
            self.order, self.status, self.filled, self.avg_price, self.fees, ts_ns, self.reason
        )


def _opt_dec(value: object) -> Decimal | None:
    return None if value in (None, "") else Decimal(str(value))


def order_params(order: Order) -> Params:
    """The ``POST /fapi/v1/order`` parameters for a sealed order (one-way mode)."""
    params: Params = {
        "symbol": order.symbol,
        "side": str(order.side),
        "type": str(order.type),
        "quantity": str(order.qty),
        "newClientOrderId": order.client_id,
    }
    if order.type is OrderType.LIMIT:
        assert order.price is not None
        params["price"] = str(order.price)
        params["timeInForce"] = "GTC"
    if order.reduce_only:
        params["reduceOnly"] = "true"
    return params


def protective_params(entry: Order, kind: str, qty: Decimal, price: Decimal) -> tuple[str, Params]:
    """Client id and parameters of an entry's protective exit (``kind``: "sl" or "tp")."""
    client_id = f"{entry.client_id}-{kind}"
    params: Params = {
        "symbol": entry.symbol,
        "side": str(entry.side.opposite),
        "type": "STOP_MARKET" if kind == "sl" else "TAKE_PROFIT_MARKET",
        "quantity": str(qty),
        "stopPrice": str(price),
        "reduceOnly": "true",
        "workingType": "CONTRACT_PRICE",
        "newClientOrderId": client_id,
    }
    return client_id, params


def fill_from_stream(o: Mapping[str, Any]) -> LedgerFill:
    """A fill from an ``ORDER_TRADE_UPDATE`` event's ``o`` object (``x`` = TRADE)."""
    return LedgerFill(
        symbol=str(o["s"]),
        trade_id=int(o["t"]),
        order_id=int(o["i"]),
        client_id=str(o["c"]),
        side=str(o["S"]),
        price=dec(o["L"]),
        qty=dec(o["l"]),
        commission=dec(o.get("n", "0")),
        commission_asset=str(o.get("N") or "USDT"),
        realized_pnl=dec(o.get("rp", "0")),
        maker=bool(o.get("m", False)),
        ts_ms=int(o["T"]),
        source="stream",
    )


def forced_close(o: Mapping[str, Any]) -> str | None:
    """``"liquidation"`` or ``"adl"`` when an ``ORDER_TRADE_UPDATE``'s order is the exchange's
    own forced close, else None. Binance marks them by client id: ``autoclose-...`` a
    liquidation, ``adl_autoclose`` an auto-deleverage (and ``settlement_autoclose-`` a delisting
    settlement, reported as a liquidation too: the position was closed for us); the order type
    of a liquidation is ``LIQUIDATION``."""
    client_id = str(o.get("c", ""))
    if client_id.startswith("adl_autoclose") or o.get("o") == "ADL":
        return "adl"
    if (
        client_id.startswith(("autoclose-", "settlement_autoclose-"))
        or o.get("o") == "LIQUIDATION"
        or o.get("ot") == "LIQUIDATION"
    ):
        return "liquidation"
    return None


def fill_from_trade(row: Mapping[str, Any]) -> LedgerFill:
    """A fill from a ``GET /fapi/v1/userTrades`` row (no client id: the ledger maps it)."""
    return LedgerFill(
        symbol=str(row["symbol"]),
        trade_id=int(row["id"]),
        order_id=int(row["orderId"]),
        client_id=None,
        side=str(row["side"]),
        price=dec(row["price"]),
        qty=dec(row["qty"]),
        commission=dec(row["commission"]),
        commission_asset=str(row.get("commissionAsset") or "USDT"),
        realized_pnl=dec(row.get("realizedPnl", "0")),
        maker=bool(row.get("maker", False)),
        ts_ms=int(row["time"]),
        source="userTrades",
    )


class LiveVenue:
    """Orders on the exchange; positions and PnL from its fills (see the module docstring)."""

    def __init__(
        self,
        client: ExchangeClient,
        ledger: OrderLedger,
        authority: OrderAuthority,
        clock: Clock,
        filters: Mapping[str, SymbolFilters],
        cfg: LiveConfig,
        symbols: tuple[str, ...],
        *,
        record_risk: Callable[[RiskEvent], None] = lambda _: None,
        portfolio: Portfolio | None = None,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.cfg = cfg
        self.symbols = tuple(s.upper() for s in symbols)
        self.portfolio = portfolio or Portfolio(ZERO)
        self._authority = authority
        self._clock = clock
        self._filters = filters
        self._record_risk = record_risk
        self._live: dict[str, _Live] = {}
        self._tasks: set[asyncio.Task[OrderUpdate]] = set()
        self._protective: dict[str, set[str]] = {}  # symbol -> protective client ids working
        self.halted = True
        self.halt_reason = "not reconciled yet"
        self.orders_sent = 0
        self.resolved_by_query = 0
        self.resent = 0
        self._chaos = os.environ.get(CHAOS_ENV, "")
        self._resync_lock = asyncio.Lock()
        # (kind "liquidation"/"adl", symbol, ts_ns) of every forced close seen on the stream,
        # for the engine's alarm; the engine pops what it has raised.
        self.forced_closes: list[tuple[str, str, int]] = []

    # -- the Venue protocol (hot path: no I/O here) ---------------------------------------------

    def submit(self, order: Order) -> OrderUpdate:
        """Start the order path for a sealed order; answers its state now (NEW, or REJECTED
        when halted). Raises :class:`OrderNotApprovedError` for an unsealed order."""
        now = self._clock.time_ns()
        if not self._authority.verify(order):
            raise OrderNotApprovedError(f"order {order.client_id} was not approved by the gate")
        refused = self._refusal(order)
        if refused:
            return OrderUpdate(order, OrderStatus.REJECTED, ZERO, None, ZERO, now, refused)
        self._live[order.client_id] = _Live(order)
        task = asyncio.get_running_loop().create_task(self._place(order, order.purpose))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return OrderUpdate(order, OrderStatus.NEW, ZERO, None, ZERO, now)

    def position_qty(self, symbol: str) -> Decimal:
        """The signed position in ``symbol`` (0 when flat), without a whole snapshot."""
        return self.portfolio.qty(symbol)

    def snapshot(self, ts_ns: int | None = None) -> AccountSnapshot:
        return self.portfolio.snapshot(self._clock.time_ns() if ts_ns is None else ts_ns)

    def pending_qty(self) -> dict[str, Decimal]:
        result: dict[str, Decimal] = {}
        for w in self._live.values():
            if w.status.done:
                continue
            o = w.order
            result[o.symbol] = result.get(o.symbol, ZERO) + o.side.sign * (o.qty - w.filled)
        return result

    def on_book(self, book: OrderBook, ts_ns: int) -> None:
        return None  # the exchange executes; nothing to do per book update

    def on_trade(self, trade: AggTrade, ts_ns: int) -> None:
        return None

    def on_mark(self, event: MarkPriceUpdate, ts_ns: int) -> None:
        self.portfolio.mark(event.symbol, Decimal(event.mark_price))

    # -- halting ---------------------------------------------------------------------------------

    def halt(self, reason: str) -> None:
        """Refuse new entries until :meth:`release` (exits still go out)."""
        if not self.halted:
            log.warning("live venue halted: %s", reason)
        self.halted, self.halt_reason = True, reason

    def release(self) -> None:
        self.halted, self.halt_reason = False, ""

    def _refusal(self, order: Order) -> str:
        if self.halted and not order.reduce_only:
            return f"live trading halted: {self.halt_reason}"
        if order.client_id in self._live:
            return "duplicate_client_id"
        return ""

    # -- the order path --------------------------------------------------------------------------

    async def place(self, order: Order, reason: str = "") -> OrderUpdate:
        """The whole order path for a sealed order, awaited (see the module docstring)."""
        now = self._clock.time_ns()
        if not self._authority.verify(order):
            raise OrderNotApprovedError(f"order {order.client_id} was not approved by the gate")
        refused = self._refusal(order)
        if refused:
            return OrderUpdate(order, OrderStatus.REJECTED, ZERO, None, ZERO, now, refused)
        self._live[order.client_id] = _Live(order)
        return await self._place(order, reason or order.purpose)

    async def drain(self) -> None:
        """Wait for every order path started by :meth:`submit`."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _place(self, order: Order, reason: str) -> OrderUpdate:
        w = self._live[order.client_id]
        await self.ledger.record_intent(order, reason, self._clock.time_ns())
        params = order_params(order)
        body: dict[str, Any] | None
        try:
            self.orders_sent += 1
            body = await self.client.new_order(params)
        except (OrderRejectedError, RateLimitedError) as exc:
            return await self._rejected(w, exc)
        except ApiKeyError as exc:
            self.halt(f"API key refused: {exc}")
            return await self._rejected(w, exc)
        except ExchangeApiError as exc:
            # Timeout, 5xx, a connection lost mid-request: the order may exist. Ask first.
            log.warning("order %s: %s; querying before any retry", order.client_id, exc)
            await self.ledger.record(
                order.client_id,
                "error",
                {"error": str(exc), "status": exc.status},
                self._clock.time_ns(),
            )
            try:
                body = await self._resolve(order.symbol, order.client_id, params)
            except OrderRejectedError as refused:  # the resend was refused: it never existed
                return await self._rejected(w, refused)
            if body is None:
                w.reason = "state unknown: halted until reconciliation"
                self.halt(f"order {order.client_id} in unknown state")
                await self.ledger.record(
                    order.client_id,
                    "unresolved",
                    {},
                    self._clock.time_ns(),
                    stage=lg.UNKNOWN,
                    status="UNKNOWN",
                    detail=w.reason,
                )
                return w.update(self._clock.time_ns())
        if self._chaos == "after_send":
            os.kill(os.getpid(), signal.SIGKILL)
        await self.ledger.record_exchange_order(body, "response", self._clock.time_ns())
        return await self._adopt(w, body)

    async def _rejected(self, w: _Live, exc: ExchangeApiError | ApiKeyError) -> OrderUpdate:
        o = w.order
        code = getattr(exc, "code", None)
        msg = getattr(exc, "msg", "") or str(exc)
        w.status, w.reason = OrderStatus.REJECTED, f"exchange {code}: {msg}"
        now = self._clock.time_ns()
        await self.ledger.record(
            o.client_id,
            "rejected",
            {"code": code, "msg": msg},
            now,
            stage=lg.REJECTED,
            status="REJECTED",
            detail=w.reason,
        )
        self._record_risk(
            RiskEvent(
                now,
                "rejected",
                f"exchange:{code}",
                o.symbol,
                w.reason,
                {"client_id": o.client_id, "side": str(o.side), "qty": str(o.qty)},
            )
        )
        self._live.pop(o.client_id, None)
        return w.update(now)

    async def _resolve(
        self, symbol: str, client_id: str, params: Params | None
    ) -> dict[str, Any] | None:
        """Settle an order whose answer was lost: query it; if the exchange never got it, send
        it once more under the same client id (``params``; None: never resend)."""
        not_found = 0
        resent = False
        for attempt in range(self.cfg.resolve_attempts):
            try:
                body = await self.client.query_order(symbol, client_id)
            except RateLimitedError:
                await self.client_wait_ready()
                continue
            except ExchangeApiError as exc:
                log.warning("query %s failed: %s", client_id, exc)
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
                continue
            if body is not None:
                self.resolved_by_query += 1
                await self.ledger.record(client_id, "query", body, self._clock.time_ns())
                return body
            if params is None:
                return None  # nothing of ours is in flight: "not found" is final
            not_found += 1
            if not_found < 2 or params is None or resent:
                # A request still in flight could arrive after the first "not found".
                await asyncio.sleep(_QUERY_GRACE_S)
                continue
            resent = True
            self.resent += 1
            try:
                return await self.client.new_order(params)
            except OrderRejectedError as exc:
                if exc.code == -4116:  # duplicate client id: it did arrive after all
                    continue
                raise
            except ExchangeApiError:
                continue
        return None

    async def client_wait_ready(self) -> None:
        wait = getattr(self.client, "wait_ready", None)
        if wait is not None:
            await wait()
        else:
            await asyncio.sleep(1.0)

    async def _adopt(self, w: _Live, body: Mapping[str, Any]) -> OrderUpdate:
        """Take the exchange's view of one of our orders; protect a filled entry."""
        status = _STATUS.get(str(body.get("status", "")), OrderStatus.NEW)
        filled = dec(body.get("executedQty", "0"))
        w.status = status
        w.filled = max(w.filled, filled)
        avg = dec(body.get("avgPrice", "0"))
        w.avg_price = avg if avg else w.avg_price
        if status.done:
            self._live.pop(w.order.client_id, None)
        if w.order.purpose == "entry" and w.filled > 0 and (status.done or w.filled >= w.order.qty):
            await self._protect(w)
        return w.update(self._clock.time_ns())

    async def _protect(self, w: _Live) -> None:
        """Put the entry's stop and take-profit on the exchange (once)."""
        if w.protected:
            return
        w.protected = True
        o = w.order
        for kind, price in (("sl", o.stop_price), ("tp", o.take_profit)):
            if price is None:
                continue
            client_id, params = protective_params(o, kind, w.filled, price)
            purpose = "exit:stop" if kind == "sl" else "exit:take_profit"
            await self._place_own(o, client_id, params, purpose, price)

    async def _place_own(
        self, parent: Order, client_id: str, params: Params, purpose: str, price: Decimal
    ) -> dict[str, Any] | None:
        """A venue-made reduce-only order (protective exit): recorded first, like any order."""
        qty = Decimal(str(params["quantity"]))
        own = Order(
            client_id,
            parent.symbol,
            Side(str(params["side"])),
            OrderType.MARKET,
            qty,
            None,
            True,
            price,
            None,
            self._clock.time_ns(),
            parent.model_version,
            purpose,
            b"",
        )
        await self.ledger.record_intent(own, purpose, self._clock.time_ns(), parent.client_id)
        body: dict[str, Any] | None
        try:
            self.orders_sent += 1
            body = await self.client.new_order(params)
        except (OrderRejectedError, RateLimitedError, ApiKeyError) as exc:
            await self._own_refused(parent, client_id, purpose, qty, exc)
            return None
        except ExchangeApiError:
            try:
                body = await self._resolve(parent.symbol, client_id, params)
            except OrderRejectedError as exc:  # the resend was refused
                await self._own_refused(parent, client_id, purpose, qty, exc)
                return None
            if body is None:
                self.halt(f"protective {purpose} for {parent.client_id} in unknown state")
                return None
        await self.ledger.record_exchange_order(body, "response", self._clock.time_ns())
        if str(body.get("status")) in ("NEW", "PARTIALLY_FILLED"):
            self._protective.setdefault(parent.symbol, set()).add(client_id)
        return body

    async def _own_refused(
        self,
        parent: Order,
        client_id: str,
        purpose: str,
        qty: Decimal,
        exc: ExchangeApiError | ApiKeyError,
    ) -> None:
        """A protective exit the exchange refused: recorded; a level already passed is exited
        at market at once, any other refusal halts entries (the position is unprotected)."""
        await self.ledger.record(
            client_id,
            "rejected",
            {"error": str(exc)},
            self._clock.time_ns(),
            stage=lg.REJECTED,
            status="REJECTED",
            detail=str(exc),
        )
        if isinstance(exc, OrderRejectedError) and exc.code == _WOULD_TRIGGER:
            # The market is already past the exit level: exit now, at market.
            exit_order = self._authority.exit_order(
                parent.symbol, parent.side.sign * qty, purpose, self._clock.time_ns()
            )
            if exit_order is not None:
                await self.place(exit_order, f"{purpose} level already passed")
            return
        self.halt(f"protective {purpose} for {parent.client_id} refused: {exc}")

    # -- the user-data stream ------------------------------------------------------------------

    async def on_user_event(self, doc: dict[str, Any]) -> None:
        """One user-data event: recorded, then applied."""
        kind = doc.get("e")
        now = self._clock.time_ns()
        if kind == "ORDER_TRADE_UPDATE":
            o = doc["o"]
            client_id = str(o["c"])
            status = str(o["X"])
            stage = lg.stage_of(status) if await self.ledger.order(client_id) else None
            await self.ledger.record(
                client_id,
                "stream",
                doc,
                now,
                stage=stage,
                status=status,
                order_id=int(o["i"]),
                filled_qty=str(o["z"]),
                avg_price=str(o["ap"]),
            )
            forced = forced_close(o)
            if forced is not None and o.get("x") == "TRADE":
                # Not ours: the exchange closed the position. Recorded as what it is, so the
                # engine can alarm on it (kind "liquidation" or "adl").
                log.error(
                    "%s on %s: %s %s at %s", forced, o.get("s"), o.get("S"), o.get("l"), o.get("L")
                )
                await self.ledger.record(
                    client_id, forced, doc, now, detail=f"{forced} of {o.get('s')}"
                )
                self.forced_closes.append((forced, str(o.get("s", "")), now))
            if o.get("x") == "TRADE":
                await self.apply_fills([fill_from_stream(o)])
            w = self._live.get(client_id)
            if w is not None:
                await self._adopt(w, {"status": status, "executedQty": o["z"], "avgPrice": o["ap"]})
            if status in ("FILLED", "CANCELED", "EXPIRED"):
                self._protective.get(str(o["s"]), set()).discard(client_id)
        elif kind in ("ACCOUNT_UPDATE", "ACCOUNT_CONFIG_UPDATE"):
            await self.ledger.record("", "stream", doc, now)

    async def apply_fills(self, fills: list[LedgerFill]) -> list[LedgerFill]:
        """Record fills; apply the new ones to the books; cancel orphaned protection."""
        new = await self.ledger.add_fills(fills)
        for f in new:
            self.portfolio.apply_fill(
                Fill(
                    f.client_id or "",
                    f.symbol,
                    Side(f.side),
                    f.price,
                    f.qty,
                    f.commission,
                    Liquidity.MAKER if f.maker else Liquidity.TAKER,
                    f.ts_ms * 1_000_000,
                )
            )
        for symbol in {f.symbol for f in new}:
            if not self.portfolio.position(symbol).qty and self._protective.get(symbol):
                await self.cancel_protection(symbol)
        return new

    async def cancel_protection(self, symbol: str) -> None:
        """Cancel the protective exits still working on ``symbol`` (its position is flat)."""
        for client_id in sorted(self._protective.pop(symbol, set())):
            try:
                body = await self.client.cancel_order(symbol, client_id)
                await self.ledger.record_exchange_order(body, "cancel", self._clock.time_ns())
            except ExchangeApiError as exc:
                log.info("cancel %s: %s (already gone)", client_id, exc)

    async def _reprotect(self, row: Mapping[str, Any], filled: Decimal) -> None:
        """An entry that filled while its answer was lost (a crash): protect it now, unless its
        exits already exist."""
        client_id = str(row["client_id"])
        if not filled or await self.ledger.order(f"{client_id}-sl") is not None:
            return
        entry = Order(
            client_id, str(row["symbol"]), Side(str(row["side"])), OrderType(str(row["type"])),
            Decimal(str(row["qty"])), None, False, _opt_dec(row["stop_price"]),
            _opt_dec(row["take_profit"]), int(row["ts_created_ns"]), str(row["model_version"]),
            "entry", b"",
        )  # fmt: skip
        await self._protect(_Live(entry, OrderStatus.FILLED, filled))

    def track_protection(self, symbol: str, client_id: str) -> None:
        """Remember a working protective order (reconciliation re-attaches them)."""
        self._protective.setdefault(symbol, set()).add(client_id)

    # -- recovery --------------------------------------------------------------------------------

    async def recover_fills(self) -> int:
        """Fetch fills since the ledger's last trade id per symbol (``userTrades``); apply the
        new ones. Returns how many were new."""
        added = 0
        for symbol in self.symbols:
            last = await self.ledger.last_trade_id(symbol)
            while True:
                rows = await self.client.user_trades(symbol, None if last is None else last + 1)
                fills = [fill_from_trade(r) for r in rows]
                if last is not None:
                    fills = [f for f in fills if f.trade_id > last]
                added += len(await self.apply_fills(fills))
                if len(rows) < 1000 or not fills:
                    break
                last = max(f.trade_id for f in fills)
        return added

    async def recover_income(self, start_ms: int | None = None) -> int:
        """Fetch ``income`` (commissions, realised PnL, funding) since the last one recorded."""
        last = await self.ledger.last_income_ms()
        since = last if last is not None else start_ms
        rows = await self.client.income(since)
        return await self.ledger.add_income(rows)

    async def resync_open(self) -> int:
        """Query every recorded order not yet final; adopt what the exchange says. Returns how
        many are still unknown."""
        async with self._resync_lock:  # the stream's reconnect and reconciliation both call it
            return await self._resync_open()

    async def _resync_open(self) -> int:
        unknown = 0
        for row in await self.ledger.orders(lg.UNSETTLED):
            client_id, symbol = str(row["client_id"]), str(row["symbol"])
            body = await self._resolve(symbol, client_id, None)
            now = self._clock.time_ns()
            if body is None:
                if row["stage"] == lg.INTENT:
                    # The exchange does not know it: the request never arrived.
                    await self.ledger.record(
                        client_id,
                        "resolved",
                        {},
                        now,
                        stage=lg.NOT_SENT,
                        status="NOT_SENT",
                        detail="not known to the exchange after restart",
                    )
                    continue
                unknown += 1
                continue
            await self.ledger.record_exchange_order(body, "query", now)
            status = str(body.get("status"))
            w = self._live.get(client_id)
            if w is not None:
                await self._adopt(w, body)
            elif row["purpose"] == "entry" and status in ("FILLED", "CANCELED", "EXPIRED"):
                await self._reprotect(row, dec(body.get("executedQty", "0")))
            if row["purpose"].startswith("exit:") and row["parent_id"] and status in (
                "NEW", "PARTIALLY_FILLED",
            ):  # fmt: skip
                self.track_protection(symbol, client_id)
        return unknown

    # -- bulk actions ----------------------------------------------------------------------------

    def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        now = self._clock.time_ns()
        return [
            w.update(now) for w in self._live.values() if symbol is None or w.order.symbol == symbol
        ]

    async def cancel_all(self, reason: str = "canceled") -> int:
        """Cancel every open order of our symbols on the exchange (protective ones too)."""
        count = 0
        for symbol in self.symbols:
            open_rows = await self.client.open_orders(symbol)
            if open_rows:
                await self.client.cancel_all(symbol)
                count += len(open_rows)
            self._protective.pop(symbol, None)
        now = self._clock.time_ns()
        await self.ledger.record("", "cancel_all", {"reason": reason, "orders": count}, now)
        await self.resync_open()
        return count

    async def flatten(self, authority_exit: Callable[[str, Decimal, str, int], Order | None],
                      reason: str) -> list[OrderUpdate]:  # fmt: skip
        """Close every position the exchange reports with gate-sealed reduce-only market
        orders (``authority_exit`` is the gate's ``exit_order``)."""
        updates: list[OrderUpdate] = []
        for row in await self.client.position_risk():
            symbol = str(row["symbol"])
            qty = dec(row["positionAmt"])
            if symbol not in self.symbols or not qty:
                continue
            order = authority_exit(symbol, qty, "kill", self._clock.time_ns())
            if order is not None:
                updates.append(await self.place(order, reason))
        return updates

    # -- state from the exchange -------------------------------------------------------------------

    def reset_books(self, wallet: Decimal, positions: list[Position]) -> None:
        """Start the books from the exchange's wallet balance and positions (reconciliation)."""
        marks = {p.symbol: p.mark for p in self.portfolio.positions()}
        for p in positions:
            p.mark = p.mark or marks.get(p.symbol)
        self.portfolio = Portfolio(wallet, positions)

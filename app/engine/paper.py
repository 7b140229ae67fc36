"""Paper execution: gate-sealed orders filled against the live book, exactly, with fees.

Model, per order (all prices and quantities :class:`~decimal.Decimal`, fills on the exchange's
own price levels):

- **Latency**: an order reaches the simulated exchange ``latency_ms`` after it was submitted: it
  executes on the first book update received at or after that time, against the book as it is
  then.
- **Market orders** walk the opposite side level by level (one fill per level, so the average
  price is the VWAP of the consumed levels) and pay the taker fee. Liquidity already taken from a
  level is remembered until the book updates, so two orders cannot both consume it. When the book
  is thinner than the order, the rest expires (``EXPIRED``, partially filled).
- **Limit orders** first take whatever is marketable up to their price (taker), then rest. A
  resting order's queue position is the quantity ahead of it at its price when it was placed; it
  shrinks with trades at that price (``aggTrade``) and with the level shrinking (cancellations),
  and once nothing is ahead, further trades at that price fill it, partially or wholly (maker
  fee). A trade *through* its price fills what is left; the opposite side reaching its price
  fills it as far as that side's quantity goes.
- **No market impact** beyond one book update: the next update shows the exchange's book again,
  which never held our paper orders nor lost the liquidity they took.
- **Filters**: every order is checked again against tick, step, minimum quantity and
  ``minNotional`` (the gate already rounded it, but the exchange's rules may have changed since).
- **Protective exits**: an entry's ATR stop and take-profit stay on the position; when the best
  bid (long) or ask (short) reaches one, a reduce-only market exit made by the gate is submitted.
- **Funding**: on ``markPrice`` events, once the announced funding time has passed, the position
  pays or receives ``qty × mark × rate``.
- **Margin** (with ``margin``, :class:`~app.engine.margin.MarginSettings`; Binance's rules from
  :mod:`app.engine.margin`, the same as the simulator's): an entry whose initial margin
  (``notional / leverage``, at its limit price or the mark) the available balance cannot carry
  is rejected (``margin_insufficient``, Binance's -2019), as is one beyond the leverage's
  maximum notional (-2027) or a leverage above the symbol's brackets (-4028). On every mark
  price, a position whose margin balance (isolated: its wallet ``|qty| × entry / leverage`` plus
  its unrealised PnL; cross: the whole equity) is at or below its maintenance margin is
  liquidated at that mark price: its working orders are cancelled and an ``autoclose-<ms>``
  order (purpose ``liquidation``) fills the whole position at the mark, its fee the clearance
  fee capped by the margin left. It shows in the fills, the equity series and the journal.
  Without ``margin`` there is no margin model (as before).
- **Equity**: sampled at most every ``equity_interval_s`` for the panel and the gate's breakers.

Hot path: :meth:`PaperExchange.on_book` and :meth:`PaperExchange.on_trade` run per message; with no
working order and no protected position on the symbol they do one dict lookup and return.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Protocol

from app.binance import margin as mg
from app.binance.filters import SymbolFilters
from app.clock import Clock
from app.config import PaperConfig
from app.engine.book import OrderBook
from app.engine.events import AggTrade, Level, MarkPriceUpdate
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
    RejectCode,
    Side,
    Submit,
    check_filters,
    save_fills,
    save_order_update,
)
from app.engine.portfolio import (
    AccountSnapshot,
    EquityPoint,
    EquitySampler,
    FillResult,
    FundingPayment,
    Portfolio,
    append_equity,
    save_funding,
    save_positions,
)
from app.engine.risk import RiskGate

_PRICE_CACHE_MAX = 65_536
# Levels copied out of the book at first when an order walks it; most orders stop well inside.
_SHALLOW = 32


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    """An order's new state and the fills (with their effect on the books) that led to it."""

    update: OrderUpdate
    fills: tuple[Fill, ...] = ()
    results: tuple[FillResult, ...] = ()


class PaperListener(Protocol):
    """Where the paper exchange reports to (see :class:`PaperLedger`)."""

    def on_report(self, report: ExecutionReport) -> None: ...

    def on_funding(self, payment: FundingPayment) -> None: ...

    def on_equity(self, point: EquityPoint) -> None: ...


class _NullListener:
    def on_report(self, report: ExecutionReport) -> None:
        return None

    def on_funding(self, payment: FundingPayment) -> None:
        return None

    def on_equity(self, point: EquityPoint) -> None:
        return None


@dataclass(slots=True, eq=False)
class _Working:
    """A working order's mutable state."""

    order: Order
    due_ns: int
    live: bool = False
    status: OrderStatus = OrderStatus.NEW
    filled: Decimal = ZERO
    quote: Decimal = ZERO  # Σ price × qty, for the average price
    fees: Decimal = ZERO
    queue_ahead: Decimal = ZERO

    def update(self, ts_ns: int, reason: str = "") -> OrderUpdate:
        avg = self.quote / self.filled if self.filled else None
        return OrderUpdate(self.order, self.status, self.filled, avg, self.fees, ts_ns, reason)


class PaperExchange:
    """Executes sealed orders against live books; keeps the :class:`Portfolio` up to date."""

    def __init__(
        self,
        cfg: PaperConfig,
        clock: Clock,
        authority: OrderAuthority,
        portfolio: Portfolio,
        filters: Mapping[str, SymbolFilters],
        listener: PaperListener | None = None,
        margin: mg.MarginSettings | None = None,
    ) -> None:
        self.cfg = cfg
        self.margin = margin
        self.portfolio = portfolio
        self._clock = clock
        self._authority = authority
        self._filters = filters
        self._listener: PaperListener = listener or _NullListener()
        self._latency_ns = cfg.latency_ms * 1_000_000
        self._working: dict[str, list[_Working]] = {}  # by symbol
        self._by_id: dict[str, _Working] = {}
        self._seen: set[str] = set()
        # Liquidity taken per (side, price) since the book's last update, by symbol.
        self._taken: dict[str, tuple[int, dict[tuple[Side, str], Decimal]]] = {}
        # Symbols whose position has a stop or take-profit, and their pending exit's client id.
        self._armed: set[str] = {
            p.symbol
            for p in portfolio.positions()
            if p.qty and (p.stop_price is not None or p.take_profit is not None)
        }
        self._exits: dict[str, str] = {}
        # symbol -> (next funding time ms, rate announced for it, last settled funding time ms)
        self._funding: dict[str, tuple[int, Decimal, int]] = {}
        self._sampler = EquitySampler(cfg.equity_interval_s)
        self._prices: dict[str, Decimal] = {}

    # -- orders --------------------------------------------------------------------------------

    def submit(self, order: Order) -> OrderUpdate:
        """Accept a gate-sealed order; it reaches the book after the latency.

        Raises :class:`OrderNotApprovedError` for an order the gate did not seal. Submitting a
        client order id again changes nothing and answers the order's current state.
        """
        return self._submit(order, self._clock.time_ns())

    def _submit(self, order: Order, now: int) -> OrderUpdate:
        if not self._authority.verify(order):
            raise OrderNotApprovedError(f"order {order.client_id} was not approved by the gate")
        if order.client_id in self._seen:
            known = self._by_id.get(order.client_id)
            if known is not None:
                return known.update(now)
            return OrderUpdate(
                order, OrderStatus.REJECTED, ZERO, None, ZERO, now, RejectCode.DUPLICATE_ID
            )
        self._seen.add(order.client_id)
        w = _Working(order, now + self._latency_ns)
        problem = self._filter_problem(order)
        if problem is None and self.margin is not None and not order.reduce_only:
            problem = self._margin_problem(order)
        if problem is not None:
            w.status = OrderStatus.REJECTED
            update = w.update(now, problem)
            self._listener.on_report(ExecutionReport(update))
            return update
        self._working.setdefault(order.symbol, []).append(w)
        self._by_id[order.client_id] = w
        if order.purpose == "kill" or order.purpose.startswith("exit:"):
            # One exit at a time per symbol: a stop must not fire while a flatten is on its way.
            self._exits[order.symbol] = order.client_id
        update = w.update(now)
        self._listener.on_report(ExecutionReport(update))
        return update

    def _filter_problem(self, order: Order) -> str | None:
        filters = self._filters.get(order.symbol)
        if filters is None:
            return f"{RejectCode.UNKNOWN_SYMBOL}: {order.symbol} has no exchange filters"
        price = order.price
        if price is None:
            # A market order's notional is judged at the mark (Binance uses the last price).
            price = self.portfolio.position(order.symbol).mark
            if price is None:
                price = filters.tick_size  # no mark yet: check the grids, not the notional
                failed = check_filters(filters, order.qty, price, reduce_only=True)
                return None if failed is None else f"{failed[0]}: {failed[1]}"
            price = (price / filters.tick_size).to_integral_value() * filters.tick_size
        failed = check_filters(filters, order.qty, price, reduce_only=order.reduce_only)
        return None if failed is None else f"{failed[0]}: {failed[1]}"

    # -- margin --------------------------------------------------------------------------------

    def _isolated_wallet(self, qty: Decimal, cost: Decimal) -> Decimal:
        assert self.margin is not None
        return abs(cost) / self.margin.leverage if qty and self.margin.isolated else ZERO

    def _maint(self, symbol: str, notional: Decimal) -> Decimal:
        assert self.margin is not None
        return mg.maintenance_margin(self.margin.for_symbol(symbol), notional)

    def available(self) -> Decimal:
        """What new positions may still use as initial margin (Binance's available balance)."""
        assert self.margin is not None
        lev = self.margin.leverage
        snap = self.portfolio.snapshot(0)
        wallet = snap.equity - snap.unrealized
        held = ZERO
        cross_upnl = ZERO
        for pos in self.portfolio.positions():
            if not pos.qty:
                continue
            if self.margin.isolated:
                held += self._isolated_wallet(pos.qty, pos.cost)
            else:
                held += pos.notional / lev
                cross_upnl += pos.unrealized
        for w in self._by_id.values():
            o = w.order
            if o.reduce_only or o.type is not OrderType.LIMIT or o.price is None:
                continue
            held += o.price * (o.qty - w.filled) / lev
        return wallet + cross_upnl - held

    def _margin_problem(self, order: Order) -> str | None:
        """Binance's -4028, -2027 and -2019 for an order that may grow a position."""
        m = self.margin
        assert m is not None
        bad = m.leverage_problem(order.symbol)
        if bad is not None:
            return f"leverage_invalid: {bad}"
        pos = self.portfolio.position(order.symbol)
        price = order.price or pos.mark
        if price is None:
            return None  # no price to judge by yet: the filters let it through alike
        signed = order.qty * order.side.sign
        growing = order.qty
        if pos.qty and (pos.qty > 0) != (signed > 0):
            growing = max(ZERO, order.qty - abs(pos.qty))
        after = abs(pos.qty + signed) * price
        cap = mg.max_notional(m.for_symbol(order.symbol), m.leverage)
        if after > cap:
            return (
                f"max_notional_exceeded: position {after} > {cap} allowed at {m.leverage}x "
                "(Binance -2027)"
            )
        required = price * growing / m.leverage
        available = self.available()
        if required > available:
            return (
                f"margin_insufficient: initial margin {required} > available {available} "
                "(Binance -2019)"
            )
        return None

    def _check_liquidation(self, symbol: str, ts: int) -> None:
        """Liquidate what the mark prices no longer carry (see the module docstring)."""
        m = self.margin
        assert m is not None
        if m.isolated:
            pos = self.portfolio.position(symbol)
            if not pos.qty or pos.mark is None:
                return
            balance = self._isolated_wallet(pos.qty, pos.cost) + pos.unrealized
            if mg.should_liquidate(balance, self._maint(symbol, pos.notional)):
                self._liquidate(symbol, ts)
            return
        open_ = [p for p in self.portfolio.positions() if p.qty]
        if not open_:
            return
        maint = sum((self._maint(p.symbol, p.notional) for p in open_), ZERO)
        if mg.should_liquidate(self.portfolio.snapshot(ts).equity, maint):
            for p in open_:
                if p.mark is not None:
                    self._liquidate(p.symbol, ts)

    def liquidation_price(self, symbol: str) -> Decimal | None:
        """Binance's liquidation price of the position in ``symbol`` (None: flat or none)."""
        m = self.margin
        pos = self.portfolio.position(symbol)
        if m is None or not pos.qty:
            return None
        entry = pos.cost / pos.qty
        if m.isolated:
            wallet = self._isolated_wallet(pos.qty, pos.cost)
            return mg.isolated_liquidation_price(pos.qty, entry, wallet, m.for_symbol(symbol))
        snap = self.portfolio.snapshot(0)
        # A position with no mark yet is valued at its own entry price (not this one's).
        others = [
            mg.Holding(
                p.symbol, p.qty, p.cost / p.qty, p.mark if p.mark is not None else p.cost / p.qty
            )
            for p in self.portfolio.positions()
            if p.qty and p.symbol != symbol
        ]
        brackets = {h.symbol: m.for_symbol(h.symbol) for h in others}
        brackets[symbol] = m.for_symbol(symbol)
        holding = mg.Holding(symbol, pos.qty, entry, pos.mark if pos.mark is not None else entry)
        return mg.cross_liquidation_price(holding, snap.equity - snap.unrealized, others, brackets)

    def _liquidate(self, symbol: str, ts: int) -> None:
        m = self.margin
        assert m is not None
        pos = self.portfolio.position(symbol)
        mark = pos.mark
        assert mark is not None and pos.qty
        self.cancel_all(symbol, reason="liquidation")
        qty = abs(pos.qty)
        side = Side.SELL if pos.qty > 0 else Side.BUY
        realized = pos.qty * mark - pos.cost
        if m.isolated:
            remaining = self._isolated_wallet(pos.qty, pos.cost) + realized
        else:
            # Closing at the mark turns unrealised into realised: the equity is what is left.
            remaining = self.portfolio.snapshot(ts).equity
        fee = mg.liquidation_fee(qty * mark, m.liquidation_fee, remaining)
        # The exchange's own order, as Binance's liquidation engine sends it: not the gate's, so
        # not sealed; it never goes through submit().
        order = Order(
            f"autoclose-{ts // 1_000_000}",
            symbol,
            side,
            OrderType.MARKET,
            qty,
            None,
            True,
            None,
            None,
            ts,
            "",
            "liquidation",
            b"",
        )
        w = _Working(order, ts, live=True)
        w.filled, w.quote, w.fees = qty, mark * qty, fee
        fill = Fill(order.client_id, symbol, side, mark, qty, fee, Liquidity.TAKER, ts)
        self._armed.discard(symbol)
        self._book(w, [fill], ts, f"liquidated at mark {mark}, clearance fee {fee}")

    def cancel(self, client_id: str, reason: str = "canceled") -> OrderUpdate | None:
        """Cancel a working order; None when it is not working (done or unknown)."""
        w = self._by_id.get(client_id)
        if w is None:
            return None
        w.status = OrderStatus.CANCELED
        return self._finish(w, self._clock.time_ns(), reason)

    def cancel_all(self, symbol: str | None = None, reason: str = "canceled") -> list[OrderUpdate]:
        """Cancel every working order (of ``symbol``)."""
        ids = [cid for cid, w in self._by_id.items() if symbol is None or w.order.symbol == symbol]
        return [u for cid in ids if (u := self.cancel(cid, reason)) is not None]

    def open_orders(self, symbol: str | None = None) -> list[OrderUpdate]:
        now = self._clock.time_ns()
        return [
            w.update(now)
            for w in self._by_id.values()
            if symbol is None or w.order.symbol == symbol
        ]

    def pending_qty(self) -> dict[str, Decimal]:
        """Signed unfilled quantity of working orders by symbol, for the gate's context."""
        result: dict[str, Decimal] = {}
        for w in self._by_id.values():
            o = w.order
            result[o.symbol] = result.get(o.symbol, ZERO) + o.side.sign * (o.qty - w.filled)
        return result

    def position_qty(self, symbol: str) -> Decimal:
        """The signed position in ``symbol`` (0 when flat), without a whole snapshot."""
        return self.portfolio.qty(symbol)

    def snapshot(self, ts_ns: int | None = None) -> AccountSnapshot:
        return self.portfolio.snapshot(self._clock.time_ns() if ts_ns is None else ts_ns)

    # -- market events (hot path) --------------------------------------------------------------

    def on_book(self, book: OrderBook, ts_ns: int) -> None:
        """After every book update of a symbol: orders arriving, resting orders, exits."""
        symbol = book.symbol
        working = self._working.get(symbol)
        if not working and symbol not in self._armed:
            return
        if not book.synced:
            return  # never trade on a book that does not reflect the exchange
        if working:
            for w in list(working):
                if not w.live:
                    if ts_ns >= w.due_ns:
                        self._arrive(w, book, ts_ns)
                elif w.order.type is OrderType.LIMIT:
                    self._rest(w, book, ts_ns)
        if symbol in self._armed:
            self._check_exits(symbol, book, ts_ns)

    def on_trade(self, trade: AggTrade, ts_ns: int) -> None:
        """Trades advance resting limit orders' queues and fill them."""
        working = self._working.get(trade.symbol)
        if not working:
            return
        price: Decimal | None = None
        for w in list(working):
            o = w.order
            # A resting buy is hit by takers who sell, i.e. trades where the buyer was the maker.
            if (
                not w.live
                or o.type is not OrderType.LIMIT
                or (o.side is Side.BUY) != (trade.buyer_is_maker)
            ):
                continue
            assert o.price is not None
            if price is None:
                price = Decimal(trade.price)
            if (price > o.price) if o.side is Side.BUY else (price < o.price):
                continue
            fillable = self._fillable(w)
            if price == o.price:
                qty = Decimal(trade.qty)
                if w.queue_ahead >= qty:
                    w.queue_ahead -= qty
                    continue
                qty -= w.queue_ahead
                w.queue_ahead = ZERO
                take = min(qty, fillable)
            else:
                take = fillable  # traded through our price: everything at it went first
            if take > 0:
                self._book(w, [self._fill(w, o.price, take, Liquidity.MAKER, ts_ns)], ts_ns)

    def on_mark(self, event: MarkPriceUpdate, ts_ns: int) -> None:
        """Mark-to-market, funding settlements, and an equity sample when one is due."""
        symbol = event.symbol
        mark = Decimal(event.mark_price)
        self.portfolio.mark(symbol, mark)
        known = self._funding.get(symbol)
        settled = known[2] if known is not None else 0
        if known is not None and event.ts_event_ms >= known[0] > settled:
            settled = known[0]
            payment = self.portfolio.apply_funding(symbol, known[1], mark, ts_ns)
            if payment is not None:
                self._listener.on_funding(payment)
        self._funding[symbol] = (event.ts_next_funding_ms, Decimal(event.funding_rate), settled)
        if self.margin is not None:
            self._check_liquidation(symbol, ts_ns)
        self.sample_equity(ts_ns)

    def sample_equity(self, ts_ns: int) -> None:
        """Report an equity point if one is due."""
        if self._sampler.due(ts_ns):
            point = self._sampler.sample(self.portfolio.snapshot(ts_ns))
            if point is not None:
                self._listener.on_equity(point)

    # -- execution -----------------------------------------------------------------------------

    def _fillable(self, w: _Working) -> Decimal:
        remaining = w.order.qty - w.filled
        if w.order.reduce_only:
            pos = self.portfolio.position(w.order.symbol).qty
            reducible = abs(pos) if pos * w.order.side.sign < 0 else ZERO
            remaining = min(remaining, reducible)
        return remaining

    def _fill(self, w: _Working, price: Decimal, qty: Decimal, liq: Liquidity, ts: int) -> Fill:
        rate = self.cfg.maker_fee if liq is Liquidity.MAKER else self.cfg.taker_fee
        fee = price * qty * rate
        w.filled += qty
        w.quote += price * qty
        w.fees += fee
        o = w.order
        return Fill(o.client_id, o.symbol, o.side, price, qty, fee, liq, ts)

    def _taken_on(self, book: OrderBook) -> dict[tuple[Side, str], Decimal]:
        entry = self._taken.get(book.symbol)
        if entry is None or entry[0] != book.last_update_id:
            entry = self._taken[book.symbol] = (book.last_update_id, {})
        return entry[1]

    def _take(
        self,
        w: _Working,
        book: OrderBook,
        ts: int,
        limit: Decimal | None,
        liquidity: Liquidity = Liquidity.TAKER,
    ) -> list[Fill]:
        """Walk the opposite side up to ``limit`` (None: any price). A taker pays each level's
        price; a resting order the other side has reached (``MAKER``) gets its own price."""
        side = w.order.side
        taken = self._taken_on(book)
        fills: list[Fill] = []
        for price_s, qty_s in _opposite_levels(book, side):
            wanted = self._fillable(w)
            if wanted <= 0:
                break
            price = self._price(price_s)
            if limit is not None and ((price > limit) if side is Side.BUY else (price < limit)):
                break
            key = (side, price_s)
            available = Decimal(qty_s) - taken.get(key, ZERO)
            if available <= 0:
                continue
            qty = min(wanted, available)
            taken[key] = taken.get(key, ZERO) + qty
            at = price if liquidity is Liquidity.TAKER or limit is None else limit
            fills.append(self._fill(w, at, qty, liquidity, ts))
        return fills

    def _arrive(self, w: _Working, book: OrderBook, ts: int) -> None:
        w.live = True
        o = w.order
        if self._fillable(w) <= 0:
            w.status = OrderStatus.EXPIRED
            self._finish(w, ts, "reduce-only: nothing to reduce")
            return
        fills = self._take(w, book, ts, o.price)
        if o.type is OrderType.MARKET:
            if self._fillable(w) > 0:
                w.status = OrderStatus.EXPIRED
                reason = f"book exhausted: filled {w.filled} of {o.qty}"
            else:
                w.status = OrderStatus.FILLED
                reason = ""
            self._book(w, fills, ts, reason)
            return
        assert o.price is not None
        ahead, _ = self._level(book, o.side, o.price)
        w.queue_ahead = ahead or ZERO
        if fills:
            self._book(w, fills, ts)

    def _price(self, text: str) -> Decimal:
        # The same few hundred price strings recur all day: a dict hit is a fifth of a parse.
        cache = self._prices
        value = cache.get(text)
        if value is None:
            if len(cache) >= _PRICE_CACHE_MAX:
                cache.clear()
            value = cache[text] = Decimal(text)
        return value

    def _level(self, book: OrderBook, side: Side, price: Decimal) -> tuple[Decimal | None, bool]:
        """The quantity on ``side`` at ``price`` and whether the level is within the visible
        book (so that its absence means it is empty)."""
        levels = (
            book.bids(self.cfg.scan_levels) if side is Side.BUY else book.asks(self.cfg.scan_levels)
        )
        for price_s, qty_s in levels:
            level_price = self._price(price_s)
            if level_price == price:
                return Decimal(qty_s), True
            if (level_price < price) if side is Side.BUY else (level_price > price):
                return None, True
        return None, False

    def _rest(self, w: _Working, book: OrderBook, ts: int) -> None:
        o = w.order
        assert o.price is not None
        opposite = book.best_ask() if o.side is Side.BUY else book.best_bid()
        if opposite is not None:
            best = self._price(opposite[0])
            if (best <= o.price) if o.side is Side.BUY else (best >= o.price):
                # The other side reached our price: its orders there and beyond would have traded
                # with ours, as much as they hold, at our price.
                fills = self._take(w, book, ts, o.price, Liquidity.MAKER)
                if fills:
                    self._book(w, fills, ts)
                return
        qty, visible = self._level(book, o.side, o.price)
        if qty is not None:
            w.queue_ahead = min(w.queue_ahead, qty)
        elif visible:
            w.queue_ahead = ZERO

    def _book(self, w: _Working, fills: list[Fill], ts: int, reason: str = "") -> None:
        """Apply ``fills`` to the portfolio, arm or disarm exits, report."""
        o = w.order
        results = tuple(self.portfolio.apply_fill(f) for f in fills)
        pos = self.portfolio.position(o.symbol)
        if o.purpose == "entry" and pos.qty * o.side.sign > 0 and fills:
            pos.stop_price, pos.take_profit = o.stop_price, o.take_profit
            if o.stop_price is not None or o.take_profit is not None:
                self._armed.add(o.symbol)
        if not pos.qty:
            self._armed.discard(o.symbol)
        if w.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            if self._fillable(w) > 0:
                w.status = OrderStatus.PARTIALLY_FILLED if w.filled else OrderStatus.NEW
            elif w.filled >= o.qty:
                w.status = OrderStatus.FILLED
            else:
                w.status = OrderStatus.EXPIRED  # reduce-only with nothing left to reduce
                reason = reason or "reduce-only: position closed"
        report = ExecutionReport(w.update(ts, reason), tuple(fills), results)
        if w.status.done:
            self._drop(w)
        self._listener.on_report(report)

    def _finish(self, w: _Working, ts: int, reason: str) -> OrderUpdate:
        self._drop(w)
        update = w.update(ts, reason)
        self._listener.on_report(ExecutionReport(update))
        return update

    def _drop(self, w: _Working) -> None:
        o = w.order
        self._by_id.pop(o.client_id, None)
        working = self._working.get(o.symbol)
        if working is not None and w in working:
            working.remove(w)
        if self._exits.get(o.symbol) == o.client_id:
            del self._exits[o.symbol]

    def _check_exits(self, symbol: str, book: OrderBook, ts: int) -> None:
        pos = self.portfolio.position(symbol)
        if not pos.qty:
            self._armed.discard(symbol)
            return
        if symbol in self._exits:
            return
        level = book.best_bid() if pos.qty > 0 else book.best_ask()
        if level is None:
            return
        price = self._price(level[0])
        long = pos.qty > 0
        purpose = ""
        stop, target = pos.stop_price, pos.take_profit
        if stop is not None and ((price <= stop) if long else (price >= stop)):
            purpose = "exit:stop"
        elif target is not None and ((price >= target) if long else (price <= target)):
            purpose = "exit:take_profit"
        if purpose:
            order = self._authority.exit_order(symbol, pos.qty, purpose, ts)
            if order is not None:
                self._submit(order, ts)


def _opposite_levels(book: OrderBook, side: Side) -> Iterator[Level]:
    """The levels a ``side`` order takes from, best first; the deep part (a diff book holds
    1,000 levels) is only copied out if an order gets that far."""
    levels = book.asks if side is Side.BUY else book.bids
    yield from levels(_SHALLOW)
    n_bids, n_asks = book.depth()
    deep = n_asks if side is Side.BUY else n_bids
    if deep > _SHALLOW:
        yield from levels(deep)[_SHALLOW:]


def kill_switch(gate: RiskGate, exchange: PaperExchange, reason: str) -> list[OrderUpdate]:
    """Cancel every working order, halt the gate, and submit the orders that flatten."""
    exchange.cancel_all(reason="kill switch")
    return [exchange.submit(o) for o in gate.kill(reason, exchange.snapshot())]


class PaperLedger:
    """The listener that makes paper trading durable and feeds the gate.

    ``submit`` runs a function on the trading database's writer thread without waiting
    (``DbWriter.submit``); tests pass ``lambda fn: fn(conn)``. Positions are copied before they
    cross to the writer thread: the portfolio keeps changing them.
    """

    def __init__(self, submit: Submit, portfolio: Portfolio, gate: RiskGate | None) -> None:
        self._submit = submit
        self._portfolio = portfolio
        self._gate = gate

    def _save_positions(self, ts_ns: int) -> None:
        copies = [replace(p) for p in self._portfolio.positions()]
        self._submit(lambda conn: save_positions(conn, copies, ts_ns))

    def on_report(self, report: ExecutionReport) -> None:
        update = report.update
        self._submit(lambda conn: save_order_update(conn, update))
        if report.fills:
            rows = [(f, r.realized) for f, r in zip(report.fills, report.results, strict=True)]
            self._submit(lambda conn: save_fills(conn, rows))
            self._save_positions(update.ts_ns)
        if self._gate is not None:
            for result in report.results:
                if result.closed is not None:
                    self._gate.on_trade_closed(result.closed)

    def on_funding(self, payment: FundingPayment) -> None:
        self._submit(lambda conn: save_funding(conn, payment))
        self._save_positions(payment.ts_ns)

    def on_equity(self, point: EquityPoint) -> None:
        if self._gate is not None:
            self._gate.on_equity(point.ts_ns, point.equity)
        self._submit(lambda conn: append_equity(conn, [point]))

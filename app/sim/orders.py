"""Orders against the simulator's own book: validation, matching, resting, stops and funding.

* MARKET walks the opposite side of the seeded market's book level by level (one fill per level);
  a LIMIT order first takes whatever it crosses (taker), then GTC rests, IOC expires the rest, FOK
  fills entirely or expires, GTX (post-only) is refused with -5022 if it would take.
* A resting order fills as maker at its own price when a market trade prints through it (at its
  price: up to the trade's size), or when the opposite best price reaches it.
* STOP_MARKET / TAKE_PROFIT_MARKET wait for the last trade price (``CONTRACT_PRICE``, default) or
  the mark price (``MARK_PRICE``) to reach ``stopPrice``, then execute as MARKET (``o`` becomes
  MARKET, ``ot`` stays); ``closePosition`` closes whatever position there is then. All this runs
  in the market's step, so protective stops fire with no client connected.
* Funding is settled at each funding time with the market's rate and mark price.
* Margin (:mod:`app.engine.margin`): leverage above the symbol's first bracket is refused (-4028),
  a position beyond the leverage's ``maxNotionalValue`` (-2027), an order whose initial margin
  the available balance cannot carry (-2019). When a mark price moves a position's margin to its
  maintenance margin, the position is liquidated at that mark price (:meth:`Exchange.liquidate`):
  its open orders are cancelled, a ``LIQUIDATION`` order with an ``autoclose-`` client id fills
  on the user-data stream, and the clearance fee is charged (income ``INSURANCE_CLEAR``).

Our orders take liquidity from a copy of the book only: the seeded market itself never sees them
(no market impact), so the market data stays a pure function of the seed.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from app.binance import margin
from app.sim.account import ASSET, ZERO, Account, Fill, Position, dec_str, money
from app.sim.apierror import ApiError
from app.sim.auth import missing
from app.sim.market import SymbolMarket
from app.sim.symbols import SymbolSpec

ORDER_TYPES = frozenset({"LIMIT", "MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET"})
STOP_TYPES = frozenset({"STOP_MARKET", "TAKE_PROFIT_MARKET"})
TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK", "GTX"})
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
CLIENT_ID_RE = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
_ID_CHARS = string.ascii_letters + string.digits
_E8 = Decimal(10) ** 8

Emit = Callable[[dict[str, object]], None]


@dataclass(eq=False)
class Order:
    """One order; prices in ticks, quantities in steps of its symbol."""

    spec: SymbolSpec
    order_id: int
    client_order_id: str
    side: str
    type: str
    orig_type: str
    tif: str
    qty: int
    price: int
    stop_price: int
    reduce_only: bool
    close_position: bool
    position_side: str
    working_type: str
    price_protect: bool
    time: int
    status: str = "NEW"
    executed: int = 0
    cum_quote: Decimal = ZERO
    update_time: int = 0

    @property
    def buy(self) -> bool:
        return self.side == "BUY"

    @property
    def remaining(self) -> int:
        return self.qty - self.executed

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def avg_price(self) -> Decimal:
        if not self.executed:
            return ZERO
        return self.cum_quote / self.spec_qty(self.executed)

    def spec_qty(self, steps: int) -> Decimal:
        s = self.spec
        return Decimal(steps * s.step).scaleb(-s.qty_precision)

    def body(self, *, with_time: bool = False) -> dict[str, object]:
        """The REST body: ``POST``/``DELETE`` (``cumQty``) or ``GET`` (``time``) shape."""
        s = self.spec
        qty_str = s.qty_str
        body: dict[str, object] = {
            "avgPrice": dec_str(self.avg_price(), s.price_precision + 3),
            "clientOrderId": self.client_order_id,
            "cumQuote": money(self.cum_quote),
            "executedQty": qty_str(self.executed),
            "orderId": self.order_id,
            "origQty": qty_str(self.qty),
            "origType": self.orig_type,
            "price": s.price_str(self.price),
            "reduceOnly": self.reduce_only,
            "side": self.side,
            "positionSide": self.position_side,
            "status": self.status,
            "stopPrice": s.price_str(self.stop_price),
            "closePosition": self.close_position,
            "symbol": s.symbol,
        }
        if with_time:
            body["time"] = self.time
        else:
            body["cumQty"] = qty_str(self.executed)
        body.update(
            {
                "timeInForce": self.tif,
                "type": self.type,
                "updateTime": self.update_time,
                "workingType": self.working_type,
                "priceProtect": self.price_protect,
                "priceMatch": "NONE",
                "selfTradePreventionMode": "EXPIRE_MAKER",
                "goodTillDate": 0,
            }
        )
        return body


def _bool_param(params: dict[str, str], name: str) -> bool:
    value = params.get(name, "")
    if value in ("", "false", "FALSE", "False"):
        return False
    if value in ("true", "TRUE", "True"):
        return True
    raise ApiError(-1130, f"Data sent for parameter '{name}' is not valid.")


def _decimal(params: dict[str, str], name: str) -> Decimal:
    text = params.get(name, "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or len(text) > 40:
        raise ApiError(
            -1100,
            f"Illegal characters found in parameter '{name}'; "
            "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    return value


def _units(value: Decimal, precision: int) -> int:
    """``value`` in units of ``10**-precision``; -1111 when it has more decimals than that."""
    scaled = value.scaleb(precision)
    if scaled != scaled.to_integral_value():
        raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
    return int(scaled)


@dataclass
class Exchange:
    """The orders of the one account, matched against ``markets``."""

    markets: dict[str, SymbolMarket]
    account: Account
    emit: Emit
    seed: int
    orders: dict[int, Order] = field(default_factory=dict)
    open: dict[str, list[Order]] = field(default_factory=dict)
    last_price: dict[str, int] = field(default_factory=dict)
    _seen_mark: dict[str, int] = field(default_factory=dict)
    _next_funding: dict[str, int] = field(default_factory=dict)
    _by_client: dict[tuple[str, str], Order] = field(default_factory=dict)
    _next_id: int = 0
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(f"sim:{self.seed}:orders")
        self._next_id = self._rng.randrange(10**9, 10**10)
        for symbol, market in self.markets.items():
            bb, _, ba, _ = market.top
            self.last_price[symbol] = bb if bb else ba
            self._note_mark(market)
            self._next_funding[symbol] = market.next_funding_ms(market.last_event_ms)

    # -- helpers -------------------------------------------------------------------------------

    def market(self, symbol: str) -> SymbolMarket:
        market = self.markets.get(symbol)
        if market is None:
            raise ApiError(-1121, "Invalid symbol.")
        return market

    def _note_mark(self, market: SymbolMarket) -> bool:
        """Record the market's mark price in the account; True if it changed."""
        symbol = market.spec.symbol
        if self._seen_mark.get(symbol) == market.mark_e8:
            return False
        self._seen_mark[symbol] = market.mark_e8
        self.account.marks[symbol] = Decimal(market.mark_e8) / _E8
        return True

    def _price(self, spec: SymbolSpec, ticks: int) -> Decimal:
        return Decimal(ticks * spec.tick).scaleb(-spec.price_precision)

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        if symbol is not None:
            return list(self.open.get(symbol, ()))
        return [o for orders in self.open.values() for o in orders]

    def open_order_im(self, symbol: str | None = None, side: str | None = None) -> Decimal:
        """Initial margin held by resting LIMIT orders that would add to a position."""
        total = ZERO
        acct = self.account
        for order in self.open_orders(symbol):
            if order.type != "LIMIT" or order.reduce_only:
                continue
            if side is not None and order.position_side != side:
                continue
            if order.position_side == "BOTH":
                pos = acct.position(order.spec.symbol, "BOTH")
                if pos.amt and (pos.amt > 0) != order.buy:
                    continue
            elif (order.position_side == "LONG") != order.buy:
                continue
            notional = self._price(order.spec, order.price) * order.spec_qty(order.remaining)
            total += notional / acct.settings(order.spec.symbol).leverage
        return total

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def find(self, symbol: str, order_id: str | None, client_id: str | None) -> Order | None:
        if order_id:
            if not order_id.isdigit():
                raise ApiError(-1100, "Illegal characters found in parameter 'orderId'.")
            order = self.orders.get(int(order_id))
            return order if order is not None and order.spec.symbol == symbol else None
        if client_id:
            return self._by_client.get((symbol, client_id))
        raise ApiError(
            -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
        )

    # -- placing -------------------------------------------------------------------------------

    # Long on purpose: Binance's order rules, checked in the exchange's own order.
    def place(self, params: dict[str, str], now: int) -> tuple[Order, dict[str, object]]:  # noqa: PLR0912, PLR0915
        """Validate and accept a new order, match it; return it and the REST response body."""
        symbol = params.get("symbol", "").upper()
        if not symbol:
            raise missing("symbol")
        market = self.market(symbol)
        spec = market.spec
        acct = self.account
        side = params.get("side", "")
        if not side:
            raise missing("side")
        if side not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        otype = params.get("type", "")
        if not otype:
            raise missing("type")
        if otype not in ORDER_TYPES:
            raise ApiError(-1116, "Invalid orderType.")
        position_side = params.get("positionSide", "") or ("LONG" if acct.dual else "BOTH")
        if not params.get("positionSide") and acct.dual:
            raise ApiError(-4061, "Order's position side does not match user's setting.")
        if (position_side == "BOTH") == acct.dual or position_side not in ("BOTH", "LONG", "SHORT"):
            raise ApiError(-4061, "Order's position side does not match user's setting.")
        if acct.dual and "reduceOnly" in params:
            raise ApiError(-1106, "Parameter 'reduceOnly' sent when not required.")
        reduce_only = _bool_param(params, "reduceOnly")
        close_position = _bool_param(params, "closePosition")
        if close_position:
            if otype not in STOP_TYPES:
                raise ApiError(-1106, "Parameter 'closePosition' sent when not required.")
            if params.get("quantity"):
                raise ApiError(-1106, "Parameter 'quantity' sent when not required.")
            if reduce_only:
                raise ApiError(-1106, "Parameter 'reduceOnly' sent when not required.")
        qty = 0
        if not close_position:
            if not params.get("quantity"):
                raise missing("quantity")
            qty_dec = _decimal(params, "quantity")
            if qty_dec <= 0:
                raise ApiError(-4003, "Quantity less than or equal to zero.")
            units = _units(qty_dec, spec.qty_precision)
            if units % spec.step:
                raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
            qty = units // spec.step
            max_qty = spec.market_max_qty if otype != "LIMIT" else spec.max_qty
            if qty_dec > max_qty:
                raise ApiError(-4005, "Quantity greater than max quantity.")
        tif = params.get("timeInForce", "")
        price = 0
        if otype == "LIMIT":
            if not tif:
                raise missing("timeInForce")
            if not params.get("price"):
                raise missing("price")
            price = self._ticks(spec, params, "price")
        else:
            if params.get("price"):
                raise ApiError(-1106, "Parameter 'price' sent when not required.")
            tif = tif or "GTC"
        if tif not in TIME_IN_FORCE:
            raise ApiError(-1115, "Invalid timeInForce.")
        stop = 0
        working = params.get("workingType", "") or "CONTRACT_PRICE"
        if working not in ("CONTRACT_PRICE", "MARK_PRICE"):
            raise ApiError(-1130, "Data sent for parameter 'workingType' is not valid.")
        if otype in STOP_TYPES:
            if not params.get("stopPrice"):
                raise missing("stopPrice")
            stop = self._ticks(spec, params, "stopPrice")
        client_id = params.get("newClientOrderId", "")
        if client_id:
            if not CLIENT_ID_RE.match(client_id):
                raise ApiError(-4015, "Client order id is not valid.")
            existing = self._by_client.get((symbol, client_id))
            if existing is not None and existing.is_open:
                raise ApiError(-4116, "ClientOrderId is duplicated.")
        else:
            client_id = "".join(self._rng.choice(_ID_CHARS) for _ in range(22))
        resp_type = params.get("newOrderRespType", "") or "ACK"
        if resp_type not in ("ACK", "RESULT"):
            raise ApiError(-1130, "Data sent for parameter 'newOrderRespType' is not valid.")
        order = Order(
            spec,
            0,
            client_id,
            side,
            otype,
            otype,
            tif,
            qty,
            price,
            stop,
            reduce_only or close_position,
            close_position,
            position_side,
            working,
            _bool_param(params, "priceProtect"),
            now,
            update_time=now,
        )
        self._check_economics(order, market)
        order.order_id = self._new_id()
        self.orders[order.order_id] = order
        self._by_client[(symbol, client_id)] = order
        ack = order.body()
        self._event(order, "NEW", now)
        if otype in STOP_TYPES:
            self.open.setdefault(symbol, []).append(order)
        else:
            self._execute(order, market, now)
        return order, (ack if resp_type == "ACK" else order.body())

    def _ticks(self, spec: SymbolSpec, params: dict[str, str], name: str) -> int:
        value = _decimal(params, name)
        if value <= 0:
            raise ApiError(-4001, "Price less than 0.")
        units = _units(value, spec.price_precision)
        if units % spec.tick:
            raise ApiError(-4014, "Price not increased by tick size.")
        return units // spec.tick

    def _closable(self, order: Order) -> int:
        """Steps ``order`` may trade without opening or growing a position (reduce-only)."""
        pos = self.account.position(order.spec.symbol, order.position_side)
        steps = int(abs(pos.amt).scaleb(order.spec.qty_precision)) // order.spec.step
        if order.position_side == "BOTH":
            return steps if pos.amt and (pos.amt > 0) != order.buy else 0
        return steps if (order.position_side == "LONG") != order.buy else 0

    # Long on purpose: Binance's order rules, checked in the exchange's own order.
    def _check_economics(self, order: Order, market: SymbolMarket) -> None:  # noqa: PLR0912
        """Reduce-only, trigger, post-only, min-notional and margin checks before acceptance."""
        spec = order.spec
        acct = self.account
        closing = order.position_side != "BOTH" and (order.position_side == "LONG") != order.buy
        if order.reduce_only and not order.close_position and self._closable(order) == 0:
            raise ApiError(-2022, "ReduceOnly Order is rejected.")
        if closing and order.type != "LIMIT" and order.qty > self._closable(order):
            raise ApiError(-2022, "ReduceOnly Order is rejected.")
        bb, _, ba, _ = market.top
        if order.type in STOP_TYPES:
            if self._triggered(order, self._reference_ticks(order)):
                raise ApiError(-2021, "Order would immediately trigger.")
            ref_price = self._price(spec, order.stop_price)
        elif order.type == "LIMIT":
            crosses = ba <= order.price if order.buy else bb >= order.price
            if order.tif == "GTX" and crosses:
                raise ApiError(
                    -5022,
                    "Due to the order could not be executed as maker, the Post Only order will "
                    "be rejected. The order will not be recorded in the order history",
                )
            ref_price = self._price(spec, order.price)
        else:
            ref_price = self._price(spec, ba if order.buy else bb)
        notional = ref_price * order.spec_qty(order.qty)
        if not order.reduce_only and not closing and notional < spec.min_notional:
            raise ApiError(
                -4164,
                f"Order's notional must be no smaller than {spec.min_notional} "
                "(unless you choose reduce only).",
            )
        if order.reduce_only or closing or order.type in STOP_TYPES:
            return
        growing = order.spec_qty(order.qty)
        if order.position_side == "BOTH":
            pos = acct.position(spec.symbol, "BOTH")
            if pos.amt and (pos.amt > 0) != order.buy:
                growing = max(ZERO, growing - abs(pos.amt))
        leverage = acct.settings(spec.symbol).leverage
        pos = acct.position(spec.symbol, order.position_side)
        after = abs(pos.amt + (growing if order.buy else -growing)) * ref_price
        if after > acct.max_notional(spec.symbol):
            raise ApiError(-2027, "Exceeded the maximum allowable position at current leverage.")
        required = ref_price * growing / leverage
        if required > acct.available(self.open_order_im()):
            raise ApiError(-2019, "Margin is insufficient.")

    def _reference_ticks(self, order: Order) -> int:
        symbol = order.spec.symbol
        if order.working_type == "MARK_PRICE":
            mark = self.account.mark(symbol)
            return int(mark.scaleb(order.spec.price_precision)) // order.spec.tick
        return self.last_price[symbol]

    def _triggered(self, order: Order, ticks: int) -> bool:
        rising = (order.type == "STOP_MARKET") == order.buy
        return ticks >= order.stop_price if rising else ticks <= order.stop_price

    # -- execution -----------------------------------------------------------------------------

    def _levels(self, market: SymbolMarket, buy: bool) -> Iterator[tuple[int, int]]:
        book = market.asks if buy else market.bids
        for price in sorted(book, reverse=not buy):
            yield price, book[price]

    def _execute(self, order: Order, market: SymbolMarket, now: int) -> None:
        """Take liquidity for a MARKET or LIMIT order; then rest, expire or finish it."""
        limit = order.price if order.type == "LIMIT" else None
        wanted = order.remaining
        if order.reduce_only:
            wanted = min(wanted, self._closable(order))
        if order.tif == "FOK":
            reachable = 0
            for price, qty in self._levels(market, order.buy):
                if limit is not None and (price > limit if order.buy else price < limit):
                    break
                reachable += qty
                if reachable >= wanted:
                    break
            if reachable < order.remaining:
                self._finish(order, "EXPIRED", now)
                return
        for price, qty in self._levels(market, order.buy):
            if wanted <= 0:
                break
            if limit is not None and (price > limit if order.buy else price < limit):
                break
            take = min(wanted, qty)
            self._fill(order, price, take, maker=False, t=now)
            wanted -= take
        if order.status == "FILLED":
            return
        if (
            order.type == "LIMIT"
            and order.tif == "GTC"
            and not (order.reduce_only and self._closable(order) == 0)
        ):
            if order not in self.open.get(order.spec.symbol, ()):
                self.open.setdefault(order.spec.symbol, []).append(order)
            return
        self._finish(order, "EXPIRED", now)

    def _fill(self, order: Order, price_ticks: int, steps: int, *, maker: bool, t: int) -> Fill:
        spec = order.spec
        price = self._price(spec, price_ticks)
        qty = order.spec_qty(steps)
        fill = self.account.apply_fill(
            spec,
            order.order_id,
            order.client_order_id,
            order.side,
            order.position_side,
            price,
            qty,
            maker,
            t,
        )
        order.executed += steps
        order.cum_quote += fill.quote
        order.update_time = t
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        if order.status == "FILLED":
            self._unlist(order)
        self._event(order, "TRADE", t, fill)
        self._account_event("ORDER", t, [self.account.position(spec.symbol, order.position_side)])
        return fill

    def _unlist(self, order: Order) -> None:
        orders = self.open.get(order.spec.symbol)
        if orders and order in orders:
            orders.remove(order)

    def _finish(self, order: Order, status: str, t: int) -> None:
        order.status = status
        order.update_time = t
        self._unlist(order)
        self._event(order, status, t)

    # -- cancelling ----------------------------------------------------------------------------

    def cancel(self, symbol: str, order_id: str | None, client_id: str | None, now: int) -> Order:
        """``DELETE /fapi/v1/order``; -2011 when unknown or no longer open."""
        self.market(symbol)
        order = self.find(symbol, order_id, client_id)
        if order is None or not order.is_open:
            raise ApiError(-2011, "Unknown order sent.")
        self._finish(order, "CANCELED", now)
        return order

    def cancel_all(self, symbol: str, now: int) -> None:
        self.market(symbol)
        for order in list(self.open.get(symbol, ())):
            self._finish(order, "CANCELED", now)

    # -- the market's step ---------------------------------------------------------------------

    # Long on purpose: one market step's consequences (fills, triggers, funding, liquidation) in
    # the order the exchange applies them.
    def on_step(self, market: SymbolMarket, t_end: int) -> None:  # noqa: PLR0912
        """After each market step: fills of resting orders, stop triggers, funding."""
        symbol = market.spec.symbol
        mark_changed = self._note_mark(market)
        resting = self.open.get(symbol)
        for t, price, qty, buyer_taker in market.step_trades:
            self.last_price[symbol] = price
            if not resting:
                continue
            for order in list(resting):
                if not order.is_open:
                    continue
                if order.type == "LIMIT":
                    self._fill_on_trade(order, t, price, qty, buyer_taker)
                elif order.working_type == "CONTRACT_PRICE" and self._triggered(order, price):
                    self._trigger(order, market, t)
        if resting:
            bb, _, ba, _ = market.top
            for order in list(resting):
                if not order.is_open:
                    continue
                if order.type == "LIMIT":
                    if (order.buy and ba <= order.price) or (not order.buy and bb >= order.price):
                        self._fill_resting(order, order.remaining, t_end)
                elif (
                    order.working_type == "MARK_PRICE"
                    and mark_changed
                    and self._triggered(order, self._reference_ticks(order))
                ):
                    self._trigger(order, market, t_end)
        if mark_changed:
            self.check_liquidations(t_end)
        if t_end >= self._next_funding.get(symbol, t_end + 1):
            self._next_funding[symbol] = market.next_funding_ms(t_end)
            self._settle_funding(market, self._next_funding[symbol] - market.funding_interval_ms)

    def on_mark_forced(self, market: SymbolMarket, now: int) -> None:
        """The mark price was set from outside (``POST /_sim/mark``): value and liquidate now."""
        if self._note_mark(market):
            self.check_liquidations(now)

    # -- liquidation ---------------------------------------------------------------------------

    def check_liquidations(self, t: int) -> list[Fill]:
        """Liquidate every position whose margin is at or below its maintenance margin."""
        fills: list[Fill] = []
        doomed = self.account.to_liquidate()
        for pos in doomed:
            if pos.amt != 0:  # a cross sibling may already be gone
                fills.append(self.liquidate(pos, t))
        return fills

    def liquidate(self, pos: Position, t: int) -> Fill:
        """Close ``pos`` at the mark price as Binance's liquidation engine does.

        Open orders of the symbol are cancelled first; the close is a ``LIQUIDATION`` order
        (``autoclose-<time>``, IOC, reduce-only) filled at the mark; its commission is the
        clearance fee ``|notional| × liquidationFee``, capped by the margin left
        (:func:`app.engine.margin.liquidation_fee`).
        """
        acct = self.account
        spec = acct.specs[pos.symbol]
        for order in list(self.open.get(pos.symbol, ())):
            self._finish(order, "CANCELED", t)
        mark = acct.mark(pos.symbol)
        qty = abs(pos.amt)
        side = "SELL" if pos.amt > 0 else "BUY"
        realized = qty * (mark - pos.entry) * (1 if pos.amt > 0 else -1)
        fee = margin.liquidation_fee(
            qty * mark, margin.DEFAULT_LIQUIDATION_FEE, acct.remaining_margin(pos, realized)
        )
        steps = int(qty.scaleb(spec.qty_precision)) // spec.step
        ticks = int(mark.scaleb(spec.price_precision)) // spec.tick
        order = Order(
            spec,
            self._new_id(),
            f"autoclose-{t}",
            side,
            "LIQUIDATION",
            "LIQUIDATION",
            "IOC",
            steps,
            ticks,
            0,
            True,
            False,
            pos.side,
            "CONTRACT_PRICE",
            False,
            t,
            update_time=t,
        )
        self.orders[order.order_id] = order
        self._by_client[(spec.symbol, order.client_order_id)] = order
        self._event(order, "NEW", t)
        fill = acct.apply_fill(
            spec,
            order.order_id,
            order.client_order_id,
            side,
            pos.side,
            mark,
            qty,
            False,
            t,
            fee=fee,
            fee_income="INSURANCE_CLEAR",
        )
        order.executed = steps
        order.cum_quote = fill.quote
        order.status = "FILLED"
        self._event(order, "TRADE", t, fill)
        self._account_event("ORDER", t, [pos])
        return fill

    def _fill_on_trade(self, order: Order, t: int, price: int, qty: int, buyer_taker: bool) -> None:
        # A sell taker trading below our bid (or a buy taker above our ask) went through us;
        # at our very price we get at most the trade's size (as if first in the queue).
        if order.buy and not buyer_taker:
            if price < order.price:
                self._fill_resting(order, order.remaining, t)
            elif price == order.price:
                self._fill_resting(order, min(qty, order.remaining), t)
        elif not order.buy and buyer_taker:
            if price > order.price:
                self._fill_resting(order, order.remaining, t)
            elif price == order.price:
                self._fill_resting(order, min(qty, order.remaining), t)

    def _fill_resting(self, order: Order, steps: int, t: int) -> None:
        if order.reduce_only:
            steps = min(steps, self._closable(order))
            if steps <= 0:
                self._finish(order, "EXPIRED", t)
                return
        self._fill(order, order.price, steps, maker=True, t=t)

    def _trigger(self, order: Order, market: SymbolMarket, t: int) -> None:
        """A stop reached its price: it becomes a MARKET order and takes the book."""
        if order.close_position:
            order.qty = order.executed + self._closable(order)
        order.type = "MARKET"
        order.update_time = t
        if order.remaining <= 0 or (order.reduce_only and self._closable(order) == 0):
            self._finish(order, "EXPIRED", t)
            return
        self._unlist(order)
        self._event(order, "NEW", t)
        self._execute(order, market, t)

    def _settle_funding(self, market: SymbolMarket, t: int) -> None:
        rate = Decimal(market.funding_e8) / _E8
        paid = self.account.fund(market.spec.symbol, rate, t)
        if paid:
            self._account_event("FUNDING_FEE", t, paid)

    # -- settings ------------------------------------------------------------------------------

    def set_leverage(self, symbol: str, leverage_text: str, now: int) -> dict[str, object]:
        self.market(symbol)
        if not leverage_text:
            raise missing("leverage")
        top = self.account.symbol_brackets(symbol)[0].initial_leverage
        if not leverage_text.isdigit() or not 1 <= int(leverage_text) <= top:
            raise ApiError(-4028, f"Leverage {leverage_text} is not valid")
        leverage = int(leverage_text)
        pos_notional = sum(
            (
                abs(p.amt) * self.account.mark(symbol)
                for p in self.account.positions.values()
                if p.symbol == symbol
            ),
            ZERO,
        )
        if pos_notional > margin.max_notional(self.account.symbol_brackets(symbol), leverage):
            raise ApiError(-2027, "Exceeded the maximum allowable position at current leverage.")
        self.account.settings(symbol).leverage = leverage
        self.emit(
            {"e": "ACCOUNT_CONFIG_UPDATE", "E": now, "T": now, "ac": {"s": symbol, "l": leverage}}
        )
        return {
            "leverage": leverage,
            "maxNotionalValue": str(self.account.max_notional(symbol)),
            "symbol": symbol,
        }

    def set_margin_type(self, symbol: str, margin_type: str) -> None:
        self.market(symbol)
        if not margin_type:
            raise missing("marginType")
        if margin_type not in ("ISOLATED", "CROSSED"):
            raise ApiError(-1130, "Data sent for parameter 'marginType' is not valid.")
        settings = self.account.settings(symbol)
        isolated = margin_type == "ISOLATED"
        if settings.isolated == isolated:
            raise ApiError(-4046, "No need to change margin type.")
        if self.account.has_position(symbol):
            raise ApiError(-4048, "Margin type cannot be changed if there exists position.")
        if self.open.get(symbol):
            raise ApiError(-4047, "Margin type cannot be changed if there exists open orders.")
        settings.isolated = isolated

    def set_dual(self, text: str) -> None:
        if not text:
            raise missing("dualSidePosition")
        if text not in ("true", "false"):
            raise ApiError(-1130, "Data sent for parameter 'dualSidePosition' is not valid.")
        dual = text == "true"
        if dual == self.account.dual:
            raise ApiError(-4059, "No need to change position side.")
        if self.open_orders():
            raise ApiError(-4067, "Position side cannot be changed if there exists open orders.")
        if self.account.has_position():
            raise ApiError(-4068, "Position side cannot be changed if there exists position.")
        self.account.dual = dual

    # -- user-data events ----------------------------------------------------------------------

    def _event(self, order: Order, execution: str, t: int, fill: Fill | None = None) -> None:
        s = order.spec
        self.emit(
            {
                "e": "ORDER_TRADE_UPDATE",
                "E": t,
                "T": t,
                "o": {
                    "s": s.symbol,
                    "c": order.client_order_id,
                    "S": order.side,
                    "o": order.type,
                    "f": order.tif,
                    "q": s.qty_str(order.qty),
                    "p": s.price_str(order.price),
                    "ap": dec_str(order.avg_price(), s.price_precision + 3),
                    "sp": s.price_str(order.stop_price),
                    "x": execution,
                    "X": order.status,
                    "i": order.order_id,
                    "l": dec_str(fill.qty, s.qty_precision) if fill else "0",
                    "z": s.qty_str(order.executed),
                    "L": dec_str(fill.price, s.price_precision) if fill else "0",
                    "N": ASSET,
                    "n": money(fill.commission) if fill else "0",
                    "T": t,
                    "t": fill.trade_id if fill else 0,
                    "b": "0",
                    "a": "0",
                    "m": fill.maker if fill else False,
                    "R": order.reduce_only,
                    "wt": order.working_type,
                    "ot": order.orig_type,
                    "ps": order.position_side,
                    "cp": order.close_position,
                    "rp": money(fill.realized_pnl) if fill else "0",
                    "pP": order.price_protect,
                    "si": 0,
                    "ss": 0,
                    "V": "EXPIRE_MAKER",
                    "pm": "NONE",
                    "gtd": 0,
                },
            }
        )

    def _account_event(self, reason: str, t: int, positions: list[Position]) -> None:
        acct = self.account
        _, _, iso = acct.cross_totals()
        self.emit(
            {
                "e": "ACCOUNT_UPDATE",
                "E": t,
                "T": t,
                "a": {
                    "m": reason,
                    "B": [
                        {
                            "a": ASSET,
                            "wb": money(acct.wallet),
                            "cw": money(acct.wallet - iso),
                            "bc": "0",
                        }
                    ],
                    "P": [
                        {
                            "s": p.symbol,
                            "pa": dec_str(p.amt, acct.specs[p.symbol].qty_precision),
                            "ep": money(p.entry),
                            "bep": money(p.entry),
                            "cr": money(p.realized),
                            "up": money(acct.unrealized(p)),
                            "mt": "isolated" if acct.settings(p.symbol).isolated else "cross",
                            "iw": money(acct.isolated_wallet(p)),
                            "ps": p.side,
                        }
                        for p in positions
                    ],
                },
            }
        )

"""The risk gate: the only way an order comes into being.

:meth:`RiskGate.check` turns a model's :class:`Intent` into :class:`Approved` (a sealed
:class:`~app.engine.orders.Order`) or :class:`Rejected` (a :class:`~app.engine.orders.RejectCode`
and a message). Every rejection and every breaker trip is handed to ``on_event`` as a
:class:`RiskEvent` (the engine journals it in ``risk_events``); every change of the breakers is
handed to ``on_state`` (persisted in ``breaker_state`` and given back to the constructor after a
restart).

Paper and live keep separate breakers: each :class:`BreakerState` belongs to one mode and is
persisted under it. :meth:`RiskGate.switch_mode` swaps in the other mode's state (or, the first
time, a fresh one whose baselines are that mode's equity), so a paper peak never trips a live
drawdown and live losses never reach paper. Only the kill switch crosses over: it is the
operator's "stop everything".

Sizing, for an entry of side *s* at price *P* with the model's win probability *p*:

- stop distance ``d = ATR × atr_stop_mult``; take-profit at ``ATR × atr_take_profit_mult``, so the
  payoff ratio is ``b = take_profit_mult / stop_mult``;
- Kelly fraction ``f* = p − (1 − p) / b``; no edge (``f* ≤ 0``) is a rejection;
- the equity risked if the stop is hit is ``equity × min(risk_per_trade, kelly_fraction × f*)``,
  so the quantity is that budget over ``d``;
- the quantity is then capped so that the symbol's position stays within
  ``max_position_notional`` and the account's gross notional within ``max_leverage × equity``,
  rounded down to the step size and checked against the exchange's minimums. When a cap is what
  leaves nothing tradable, the rejection names the cap.

An intent with an explicit ``qty`` is checked against the same limits instead of being sized.

With the account's margin settings in the context (``RiskContext.margin``: leverage, margin type
and the exchange's leverage brackets), an entry is also sized within the bracket (the position
stays under the leverage's ``maxNotionalValue``), refused when the leverage exceeds the symbol's
brackets, and refused when its ATR stop is not at least ``liquidation_buffer_atr`` ATRs before
the position's liquidation price (Binance's formula, :mod:`app.binance.margin`): a stop past the
liquidation price would never be reached. :func:`margin_ratio` gives the account's maintenance
margin over its margin balance, for a margin-ratio breaker.

Breakers (evaluated on every equity sample and again inside every check):

- **kill switch** (:meth:`RiskGate.kill`): halts, and returns the orders that flatten every
  position; only :meth:`RiskGate.resume` clears it;
- **drawdown**: equity at or below ``peak × (1 − max_drawdown)`` halts until ``resume`` (which
  restarts the peak from the current equity);
- **daily loss**: equity at or below ``(start-of-UTC-day equity) × (1 − max_daily_loss)`` blocks
  entries until the next UTC day;
- **losing streak**: ``losing_streak`` losing round trips in a row block entries for
  ``cooldown_minutes``.

Reduce-only intents (closing what is open) pass every breaker: cutting risk is always allowed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, TypeAlias

from app.binance import margin as mg
from app.binance.filters import SymbolFilters
from app.clock import Clock
from app.config import RiskConfig
from app.engine.orders import (
    ZERO,
    ClientOrderIds,
    Order,
    OrderType,
    RejectCode,
    Side,
    Submit,
    check_filters,
    min_qty,
    round_price,
    round_qty,
    transaction,
)
from app.engine.portfolio import AccountSnapshot, TradeClosed

DAY_NS = 86_400 * 1_000_000_000
PAPER, LIVE = "paper", "live"
MODES = (PAPER, LIVE)
_CONFIDENCE_QUANTUM = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class Intent:
    """What the model wants: side, confidence (its win probability) and the market it saw."""

    symbol: str
    side: Side
    confidence: float
    reference_price: Decimal
    atr: Decimal
    model_version: str
    ts_ns: int
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    # An explicit size is checked against the limits instead of being computed.
    qty: Decimal | None = None
    reduce_only: bool = False


@dataclass(frozen=True, slots=True)
class RiskContext:
    """The account and the market rules an intent is judged against.

    ``pending_qty`` is the signed remaining quantity of working orders by symbol (they count as
    if filled).
    """

    account: AccountSnapshot
    filters: SymbolFilters | None
    pending_qty: Mapping[str, Decimal] = field(default_factory=dict)
    # The account's leverage, margin type and brackets; None: no liquidation check.
    margin: mg.MarginSettings | None = None


@dataclass(frozen=True, slots=True)
class Approved:
    order: Order


@dataclass(frozen=True, slots=True)
class Rejected:
    code: RejectCode
    message: str


Decision: TypeAlias = Approved | Rejected


@dataclass(frozen=True, slots=True)
class RiskEvent:
    """A rejection, a breaker trip, a kill, a resume or a mode switch: a ``risk_events`` row."""

    ts_ns: int
    kind: str  # "rejected", "breaker", "kill", "resume", "mode"
    code: str
    symbol: str
    message: str
    detail: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BreakerState:
    """Everything the breakers of one mode remember; persisted (under ``mode``) so that a restart
    changes nothing."""

    mode: str = PAPER
    killed: bool = False
    kill_reason: str = ""
    drawdown_tripped: bool = False
    day: int = -1  # UTC day number (ts_ns // DAY_NS) that day_start_equity belongs to
    day_start_equity: Decimal | None = None
    daily_loss_day: int = -1  # the UTC day on which the daily-loss breaker tripped
    peak_equity: Decimal | None = None
    losing_streak: int = 0
    cooldown_until_ns: int = 0

    def to_json(self) -> str:
        doc = {
            "killed": self.killed,
            "kill_reason": self.kill_reason,
            "drawdown_tripped": self.drawdown_tripped,
            "day": self.day,
            "day_start_equity": _opt_str(self.day_start_equity),
            "daily_loss_day": self.daily_loss_day,
            "peak_equity": _opt_str(self.peak_equity),
            "losing_streak": self.losing_streak,
            "cooldown_until_ns": self.cooldown_until_ns,
        }
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, mode: str = PAPER) -> BreakerState:
        """The state saved by :meth:`to_json` (the mode is its row's key, not part of the text)."""
        doc: dict[str, Any] = json.loads(text)
        return cls(
            mode=mode,
            killed=bool(doc["killed"]),
            kill_reason=str(doc["kill_reason"]),
            drawdown_tripped=bool(doc["drawdown_tripped"]),
            day=int(doc["day"]),
            day_start_equity=_opt_dec(doc["day_start_equity"]),
            daily_loss_day=int(doc["daily_loss_day"]),
            peak_equity=_opt_dec(doc["peak_equity"]),
            losing_streak=int(doc["losing_streak"]),
            cooldown_until_ns=int(doc["cooldown_until_ns"]),
        )


def _opt_str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _opt_dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _ignore(_: object) -> None:
    return None


class RiskGate:
    """Sizes, checks and seals orders; keeps the breakers.

    ``key`` is the seal's HMAC key (random per process by default: a seal is only meaningful to
    the executors of this process).
    """

    def __init__(
        self,
        cfg: RiskConfig,
        clock: Clock,
        ids: ClientOrderIds,
        *,
        state: BreakerState | None = None,
        on_event: Callable[[RiskEvent], None] = _ignore,
        on_state: Callable[[BreakerState], None] = _ignore,
        key: bytes | None = None,
    ) -> None:
        self.cfg = cfg
        self._clock = clock
        self._ids = ids
        self._state = state or BreakerState()
        self._on_event = on_event
        self._on_state = on_state
        self._key = key or secrets.token_bytes(32)

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def mode(self) -> str:
        """The mode whose breakers are in force ("paper" or "live")."""
        return self._state.mode

    # -- seals ---------------------------------------------------------------------------------

    def _seal(self, order: Order) -> Order:
        digest = hmac.new(self._key, order.payload(), hashlib.sha256).digest()
        return replace(order, seal=digest)

    def verify(self, order: Order) -> bool:
        """True when ``order`` was sealed by this gate and not altered since."""
        digest = hmac.new(self._key, order.payload(), hashlib.sha256).digest()
        return hmac.compare_digest(digest, order.seal)

    def _order(
        self,
        symbol: str,
        side: Side,
        otype: OrderType,
        qty: Decimal,
        price: Decimal | None,
        *,
        reduce_only: bool,
        stop: Decimal | None,
        take_profit: Decimal | None,
        ts_ns: int,
        model_version: str,
        purpose: str,
    ) -> Order:
        unsealed = Order(
            client_id=self._ids.next(),
            symbol=symbol,
            side=side,
            type=otype,
            qty=qty,
            price=price,
            reduce_only=reduce_only,
            stop_price=stop,
            take_profit=take_profit,
            ts_created_ns=ts_ns,
            model_version=model_version,
            purpose=purpose,
            seal=b"",
        )
        return self._seal(unsealed)

    def exit_order(
        self, symbol: str, position_qty: Decimal, purpose: str, ts_ns: int
    ) -> Order | None:
        """A sealed reduce-only market order closing ``position_qty`` (signed), None when flat.

        Exits pass every breaker: they only ever reduce risk.
        """
        if not position_qty:
            return None
        side = Side.SELL if position_qty > 0 else Side.BUY
        return self._order(
            symbol,
            side,
            OrderType.MARKET,
            abs(position_qty),
            None,
            reduce_only=True,
            stop=None,
            take_profit=None,
            ts_ns=ts_ns,
            model_version="",
            purpose=purpose,
        )

    # -- breakers ------------------------------------------------------------------------------

    def _set(self, state: BreakerState) -> None:
        if state != self._state:
            self._state = state
            self._on_state(state)

    def _event(self, kind: str, code: str, message: str, symbol: str = "", **detail: str) -> None:
        self._on_event(RiskEvent(self._clock.time_ns(), kind, code, symbol, message, detail))

    def on_equity(self, ts_ns: int, equity: Decimal) -> None:
        """Feed an equity figure (realised + unrealised − fees + funding): rolls the UTC day,
        follows the peak and trips the daily-loss and drawdown breakers."""
        cfg = self.cfg
        s = self._state
        day = ts_ns // DAY_NS
        if day != s.day:
            s = replace(s, day=day, day_start_equity=equity)
        if s.peak_equity is None or equity > s.peak_equity:
            s = replace(s, peak_equity=equity)
        start = s.day_start_equity
        if (
            s.daily_loss_day != day
            and start is not None
            and start > 0
            and equity <= start * (1 - cfg.max_daily_loss)
        ):
            s = replace(s, daily_loss_day=day)
            self._event(
                "breaker",
                RejectCode.DAILY_LOSS,
                f"equity {equity} is {start - equity} below the UTC day's start {start}",
                equity=str(equity),
                day_start_equity=str(start),
            )
        peak = s.peak_equity
        if (
            not s.drawdown_tripped
            and peak is not None
            and peak > 0
            and equity <= peak * (1 - cfg.max_drawdown)
        ):
            s = replace(s, drawdown_tripped=True)
            self._event(
                "breaker",
                RejectCode.DRAWDOWN,
                f"equity {equity} is {peak - equity} below its peak {peak}",
                equity=str(equity),
                peak_equity=str(peak),
            )
        self._set(s)

    def on_trade_closed(self, trade: TradeClosed) -> None:
        """Count losing round trips; ``losing_streak`` of them start a cooldown."""
        s = self._state
        streak = s.losing_streak + 1 if trade.pnl < 0 else 0
        if streak >= self.cfg.losing_streak:
            until = trade.ts_ns + self.cfg.cooldown_minutes * 60 * 1_000_000_000
            self._event(
                "breaker",
                RejectCode.COOLDOWN,
                f"{streak} losing trades in a row: no entries for {self.cfg.cooldown_minutes} min",
                trade.symbol,
                until_ns=str(until),
            )
            # The streak starts over: one more loss after the cooldown does not re-trip at once.
            self._set(replace(s, losing_streak=0, cooldown_until_ns=until))
        else:
            self._set(replace(s, losing_streak=streak))

    def kill(self, reason: str, account: AccountSnapshot) -> list[Order]:
        """The kill switch: halt until :meth:`resume` and return the orders that flatten every
        position (the executor cancels its working orders and submits these)."""
        self._event("kill", RejectCode.KILL_SWITCH, reason or "kill switch")
        self._set(replace(self._state, killed=True, kill_reason=reason or "kill switch"))
        ts_ns = self._clock.time_ns()
        orders = [
            self.exit_order(symbol, view.qty, "kill", ts_ns)
            for symbol, view in sorted(account.positions.items())
        ]
        return [o for o in orders if o is not None]

    def resume(self, equity: Decimal) -> None:
        """Clear the kill switch and the drawdown breaker; the peak restarts at ``equity``.

        The daily-loss breaker still ends only with the UTC day, a cooldown only with its time.
        """
        self._event("resume", "resume", f"resumed at equity {equity}", equity=str(equity))
        self._set(
            replace(
                self._state,
                killed=False,
                kill_reason="",
                drawdown_tripped=False,
                peak_equity=equity,
            )
        )

    def switch_mode(self, mode: str, state: BreakerState | None, equity: Decimal) -> None:
        """Trade under ``mode``'s breakers from now on: its saved ``state``, or (None: the first
        time in that mode) a fresh state whose day start and peak are ``equity``.

        The kill switch carries over; the day start, peak, daily-loss day, drawdown, losing streak
        and cooldown are the mode's own. Nothing happens when ``mode`` is already in force.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if state is not None and state.mode != mode:
            raise ValueError(f"the {state.mode} breakers cannot serve {mode} mode")
        current = self._state
        if mode == current.mode:
            return
        if state is None:
            day = self._clock.time_ns() // DAY_NS
            state = BreakerState(mode, day=day, day_start_equity=equity, peak_equity=equity)
        self._event(
            "mode",
            "mode",
            f"{current.mode} -> {mode}: day start {state.day_start_equity}, "
            f"peak {state.peak_equity}",
            equity=str(equity),
        )
        self._set(replace(state, killed=current.killed, kill_reason=current.kill_reason))

    def blocked(self, ts_ns: int) -> tuple[RejectCode, str] | None:
        """Which breaker stops entries at ``ts_ns``, or None."""
        s = self._state
        if s.killed:
            return RejectCode.KILL_SWITCH, f"kill switch: {s.kill_reason}; 'resume' to trade again"
        if s.drawdown_tripped:
            return RejectCode.DRAWDOWN, f"drawdown from peak {s.peak_equity} exceeded; 'resume'"
        if s.daily_loss_day == ts_ns // DAY_NS:
            return RejectCode.DAILY_LOSS, "daily loss limit reached; entries resume at 00:00 UTC"
        if ts_ns < s.cooldown_until_ns:
            left_s = (s.cooldown_until_ns - ts_ns) // 1_000_000_000
            return RejectCode.COOLDOWN, f"losing-streak cooldown: {left_s} s left"
        return None

    # -- the gate ------------------------------------------------------------------------------

    def _reject(self, intent: Intent, code: RejectCode, message: str) -> Rejected:
        self._event(
            "rejected",
            code,
            message,
            intent.symbol,
            side=str(intent.side),
            confidence=repr(intent.confidence),
            reference_price=str(intent.reference_price),
            model_version=intent.model_version,
        )
        return Rejected(code, message)

    def check(self, intent: Intent, context: RiskContext) -> Decision:
        """Approve (a sealed order) or reject ``intent``; every rejection is reported."""
        now = self._clock.time_ns()
        problem = _validate(intent, context.filters)
        if problem is not None:
            return self._reject(intent, RejectCode.BAD_INTENT, problem)
        filters = context.filters
        assert filters is not None  # _validate checked it
        age_ms = (now - intent.ts_ns) // 1_000_000
        if self.cfg.max_intent_age_ms and age_ms > self.cfg.max_intent_age_ms:
            return self._reject(intent, RejectCode.STALE_INTENT, f"decision is {age_ms} ms old")
        account = context.account
        current = account.qty(intent.symbol) + context.pending_qty.get(intent.symbol, ZERO)
        if intent.reduce_only:
            return self._check_reduce(intent, filters, current, now)
        self.on_equity(now, account.equity)
        blocked = self.blocked(now)
        if blocked is not None:
            return self._reject(intent, *blocked)
        if account.equity <= 0:
            return self._reject(intent, RejectCode.NO_EQUITY, f"equity is {account.equity}")
        return self._check_entry(intent, filters, account, current, now, context.margin)

    def _check_reduce(
        self, intent: Intent, filters: SymbolFilters, current: Decimal, now: int
    ) -> Decision:
        if not current or (current > 0) == (intent.side is Side.BUY):
            return self._reject(
                intent,
                RejectCode.NOTHING_TO_REDUCE,
                f"{intent.symbol}: a reduce-only {intent.side} has nothing to reduce "
                f"(position {current})",
            )
        qty = abs(current) if intent.qty is None else min(abs(current), intent.qty)
        qty = round_qty(qty, filters.step_size)
        price = self._limit_price(intent, filters)
        failed = check_filters(filters, qty, price or intent.reference_price, reduce_only=True)
        if failed is not None:
            return self._reject(intent, *failed)
        order = self._order(
            intent.symbol,
            intent.side,
            intent.order_type,
            qty,
            price,
            reduce_only=True,
            stop=None,
            take_profit=None,
            ts_ns=now,
            model_version=intent.model_version,
            purpose="reduce",
        )
        return Approved(order)

    @staticmethod
    def _limit_price(intent: Intent, filters: SymbolFilters) -> Decimal | None:
        if intent.order_type is not OrderType.LIMIT or intent.limit_price is None:
            return None
        return round_price(intent.limit_price, filters.tick_size, intent.side)

    # Long on purpose: the entry checks in the order the gate applies them; each returns at once.
    def _check_entry(  # noqa: PLR0912
        self,
        intent: Intent,
        filters: SymbolFilters,
        account: AccountSnapshot,
        current: Decimal,
        now: int,
        margin: mg.MarginSettings | None = None,
    ) -> Decision:
        cfg = self.cfg
        equity = account.equity
        if margin is not None:
            bad = margin.leverage_problem(intent.symbol)
            if bad is not None:
                return self._reject(intent, RejectCode.MAX_LEVERAGE, bad)
        price = self._limit_price(intent, filters)
        at = price or intent.reference_price
        p = Decimal(intent.confidence).quantize(_CONFIDENCE_QUANTUM)
        payoff = cfg.atr_take_profit_mult / cfg.atr_stop_mult
        kelly = p - (1 - p) / payoff
        if kelly <= 0:
            return self._reject(
                intent,
                RejectCode.NO_EDGE,
                f"confidence {p} with payoff {payoff:.4} gives Kelly {kelly:.4} <= 0",
            )
        stop_distance = intent.atr * cfg.atr_stop_mult
        risk_budget = equity * min(cfg.risk_per_trade, cfg.kelly_fraction * kelly)
        sign = intent.side.sign
        # Room under each cap, in quantity, for a position moving from `current` towards `sign`.
        toward = current * sign  # > 0 when adding to the position, < 0 when reducing it
        position_cap = cfg.max_position_notional
        if margin is not None:
            # The bracket's maxNotionalValue at this leverage is a position limit as well.
            bracket_cap = mg.max_notional(margin.for_symbol(intent.symbol), margin.leverage)
            position_cap = min(position_cap, bracket_cap)
        room_position = position_cap / at - toward
        held = account.positions.get(intent.symbol)
        others = account.gross_notional - (held.notional if held is not None else ZERO)
        room_leverage = (cfg.max_leverage * equity - others) / at - toward
        if intent.qty is None:
            wanted = risk_budget / stop_distance
            qty = round_qty(max(min(wanted, room_position, room_leverage), ZERO), filters.step_size)
            binding = min(
                (wanted, RejectCode.RISK_PER_TRADE),
                (room_position, RejectCode.MAX_POSITION_NOTIONAL),
                (room_leverage, RejectCode.MAX_LEVERAGE),
                key=lambda item: item[0],
            )[1]
            if binding is not RejectCode.RISK_PER_TRADE and (
                qty < min_qty(filters) or (qty * at < filters.min_notional)
            ):
                limit = (
                    f"max position notional {position_cap}"
                    if binding is RejectCode.MAX_POSITION_NOTIONAL
                    else f"max leverage {cfg.max_leverage} (other gross {others}, equity {equity})"
                )
                return self._reject(
                    intent,
                    binding,
                    f"{intent.symbol}: no room under {limit} for a {intent.side} "
                    f"(position {current})",
                )
        else:
            qty = round_qty(intent.qty, filters.step_size)
            if qty * stop_distance > risk_budget:
                return self._reject(
                    intent,
                    RejectCode.RISK_PER_TRADE,
                    f"{intent.symbol}: {qty} risks {qty * stop_distance} at the stop, "
                    f"budget {risk_budget}",
                )
            if qty > room_position:
                new = abs(current + sign * qty) * at
                return self._reject(
                    intent,
                    RejectCode.MAX_POSITION_NOTIONAL,
                    f"{intent.symbol}: position notional would be {new} > {position_cap}",
                )
            if qty > room_leverage:
                gross = others + abs(current + sign * qty) * at
                return self._reject(
                    intent,
                    RejectCode.MAX_LEVERAGE,
                    f"gross notional would be {gross} > {cfg.max_leverage} × equity {equity}",
                )
        failed = check_filters(filters, qty, at, reduce_only=False)
        if failed is not None:
            return self._reject(intent, *failed)
        stop, take_profit = _brackets(intent, at, filters, cfg)
        if margin is not None and stop is not None:
            problem = _liquidation_problem(intent, account, current, qty, at, stop, margin, cfg)
            if problem is not None:
                return self._reject(intent, RejectCode.LIQUIDATION_BUFFER, problem)
        order = self._order(
            intent.symbol,
            intent.side,
            intent.order_type,
            qty,
            price,
            reduce_only=False,
            stop=stop,
            take_profit=take_profit,
            ts_ns=now,
            model_version=intent.model_version,
            purpose="entry",
        )
        return Approved(order)


def _liquidation_problem(
    intent: Intent,
    account: AccountSnapshot,
    current: Decimal,
    qty: Decimal,
    at: Decimal,
    stop: Decimal,
    margin: mg.MarginSettings,
    cfg: RiskConfig,
) -> str | None:
    """Why the stop is too near (or past) the liquidation price of the position after the
    entry, or None. A few Decimal operations and at most one pass over the brackets."""
    sign = intent.side.sign
    new_qty = current + sign * qty
    if not new_qty or (new_qty > 0) != (sign > 0):
        return None  # the entry closes or reduces: no new exposure to liquidate
    held = account.positions.get(intent.symbol)
    if current and (current > 0) == (sign > 0) and held is not None and held.entry_price:
        entry = (abs(current) * held.entry_price + qty * at) / abs(new_qty)
    else:
        entry = at
    brackets = margin.for_symbol(intent.symbol)
    if margin.isolated:
        wallet = mg.isolated_wallet(new_qty, entry, margin.leverage)
        lp = mg.isolated_liquidation_price(new_qty, entry, wallet, brackets)
        how = "isolated"
    else:
        others = [
            mg.Holding(v.symbol, v.qty, v.entry_price or at, v.mark or at)
            for v in account.positions.values()
            if v.symbol != intent.symbol and v.qty
        ]
        table = {h.symbol: margin.for_symbol(h.symbol) for h in others}
        table[intent.symbol] = brackets
        holding = mg.Holding(intent.symbol, new_qty, entry, at)
        lp = mg.cross_liquidation_price(holding, account.equity - account.unrealized, others, table)
        how = "cross"
    if lp is None:
        return None
    buffer_atr = cfg.liquidation_buffer_atr
    room = (stop - lp) * sign  # > 0 when the stop comes first
    if room >= buffer_atr * intent.atr:
        return None
    tier = mg.bracket_for(brackets, abs(new_qty) * lp)
    where = "past" if room <= 0 else "too near"
    return (
        f"{intent.symbol}: stop {stop} is {where} the liquidation price {lp:.2f} "
        f"({abs(new_qty)} at {entry:.2f}, {margin.leverage}x {how}, bracket {tier.bracket}: "
        f"mmr {tier.maint_margin_ratio}, cum {tier.cum}); it must come at least "
        f"{buffer_atr} ATR ({buffer_atr * intent.atr}) before it"
    )


def margin_ratio(account: AccountSnapshot, brackets: Mapping[str, mg.Brackets]) -> Decimal:
    """The account's margin ratio: maintenance margin of every position (its bracket at the
    mark) over the margin balance (equity). Binance liquidates at 1 (100 %); ``Infinity`` when
    the equity is gone; 0 when flat. A symbol missing from ``brackets`` uses the defaults."""
    maint = ZERO
    for view in account.positions.values():
        table = brackets.get(view.symbol) or mg.default_brackets(view.symbol)
        maint += mg.maintenance_margin(table, view.notional)
    return mg.margin_ratio(maint, account.equity)


def _validate(intent: Intent, filters: SymbolFilters | None) -> str | None:
    """What makes ``intent`` unusable, or None."""
    if filters is None:
        return f"{intent.symbol}: no exchange filters (unknown symbol)"
    if not math.isfinite(intent.confidence) or not 0 <= intent.confidence <= 1:
        return f"confidence {intent.confidence!r} is not a probability"
    if not intent.reference_price.is_finite() or intent.reference_price <= 0:
        return f"reference price {intent.reference_price} is not positive"
    if not intent.reduce_only and (not intent.atr.is_finite() or intent.atr <= 0):
        return f"ATR {intent.atr} is not positive"
    if intent.order_type is OrderType.LIMIT and (
        intent.limit_price is None or not intent.limit_price.is_finite() or intent.limit_price <= 0
    ):
        return "a limit order needs a positive limit price"
    if intent.qty is not None and (not intent.qty.is_finite() or intent.qty <= 0):
        return f"qty {intent.qty} is not positive"
    return None


def _brackets(
    intent: Intent, entry: Decimal, filters: SymbolFilters, cfg: RiskConfig
) -> tuple[Decimal | None, Decimal | None]:
    """ATR stop and take-profit on the tick grid, both rounded towards the entry (so neither the
    risk nor the target is overstated); a stop at or below zero is dropped."""
    stop_d = intent.atr * cfg.atr_stop_mult
    tp_d = intent.atr * cfg.atr_take_profit_mult
    tick = filters.tick_size
    if intent.side is Side.BUY:
        stop = round_price(entry - stop_d, tick, Side.SELL)  # up, towards the entry
        take_profit = round_price(entry + tp_d, tick, Side.BUY)  # down, towards the entry
    else:
        stop = round_price(entry + stop_d, tick, Side.BUY)
        take_profit = round_price(entry - tp_d, tick, Side.SELL)
    return (stop if stop > 0 else None), (take_profit if take_profit > 0 else None)


# -- persistence (tables in store.schema.TRADING_MIGRATIONS) -------------------------------------


def save_breaker_state(conn: sqlite3.Connection, state: BreakerState, ts_ns: int) -> None:
    """Persist the breakers under their own mode (one row per mode, replaced): a state can
    never land in the other mode's row.

    The kill switch is one for every mode: the other modes' rows take its value in the same
    transaction, so whichever mode an engine restarts in, a kill still holds (and a resume is
    not undone by an older kill left in the other row).
    """
    with transaction(conn):
        _upsert_breakers(conn, state, ts_ns)
        for mode in MODES:
            other = load_breaker_state(conn, mode)  # this mode's own row: just written, equal
            if other is not None and _kill_of(other) != _kill_of(state):
                other = replace(other, killed=state.killed, kill_reason=state.kill_reason)
                _upsert_breakers(conn, other, ts_ns)


def _kill_of(state: BreakerState) -> tuple[bool, str]:
    return state.killed, state.kill_reason


def _upsert_breakers(conn: sqlite3.Connection, state: BreakerState, ts_ns: int) -> None:
    conn.execute(
        "INSERT INTO breaker_state (mode, ts_ns, state) VALUES (?, ?, ?) "
        "ON CONFLICT (mode) DO UPDATE SET ts_ns = excluded.ts_ns, state = excluded.state",
        (state.mode, ts_ns, state.to_json()),
    )


def load_breaker_state(conn: sqlite3.Connection, mode: str = PAPER) -> BreakerState | None:
    """``mode``'s persisted breakers, or None when that mode never had any (a fresh database,
    or the first time live)."""
    row = conn.execute("SELECT state FROM breaker_state WHERE mode = ?", (mode,)).fetchone()
    return BreakerState.from_json(row[0], mode) if row else None


def record_risk_event(conn: sqlite3.Connection, event: RiskEvent) -> int:
    """Append ``event`` to ``risk_events``; returns its row id."""
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO risk_events (ts_ns, kind, code, symbol, message, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.ts_ns,
                event.kind,
                str(event.code),
                event.symbol,
                event.message,
                json.dumps(dict(event.detail), sort_keys=True),
            ),
        )
    return int(cursor.lastrowid or 0)


def persisting(
    submit: Submit, clock: Clock
) -> tuple[Callable[[RiskEvent], None], Callable[[BreakerState], None]]:
    """``on_event`` and ``on_state`` callbacks for :class:`RiskGate` that persist through
    ``submit`` (``DbWriter.submit``: the gate never waits for the disk); each state is saved
    under its own mode, the one in force when it changed."""

    def on_event(event: RiskEvent) -> None:
        submit(lambda conn: record_risk_event(conn, event))

    def on_state(state: BreakerState) -> None:
        ts_ns = clock.time_ns()
        submit(lambda conn: save_breaker_state(conn, state, ts_ns))

    return on_event, on_state


def recent_risk_events(conn: sqlite3.Connection, limit: int = 100) -> list[RiskEvent]:
    """The latest risk events, newest first."""
    rows = conn.execute(
        "SELECT ts_ns, kind, code, symbol, message, detail FROM risk_events "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [RiskEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

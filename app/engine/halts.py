"""One answer to "can it trade now, and if not, why": every condition that stops new entries.

:class:`Halts` looks, twice a second, at everything that may make a new position unsafe or
untrustworthy: the operator's pause, the risk gate's breakers (with the time left), each needed
stream's staleness, the clock offset to the exchange and the reconciliation (live), failed writes to
the trading database, and the model's warm-up. The list it keeps (:attr:`Halts.blockers`) is part
of ``status``; before each entry the trader asks :meth:`Halts.entry_block_for` for a short code
("" when entries may go), so the hot path pays one dictionary lookup. Reduce-only exits are never
blocked here: the stop and take-profit rest with the venue, and a signal may still close a
position.

Each blocker that appears raises an alarm (``halt:<code>[:<symbol>]`` in the trading database's
``alarms``, which the panel shows and sends to the webhook) and clears it when it ends; the open
halt alarms found at start are taken over, so a condition that ended while the engine was down is
cleared by the first evaluation. Time-based halts (stale feed, clock) resume by themselves when the
condition clears; the kill switch and the drawdown breaker only by ``resume``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from app import contract
from app.clock import Clock
from app.config import AppConfig
from app.engine.health import FeedHealth
from app.engine.risk import RiskGate
from app.engine.state import EngineState

log = logging.getLogger(__name__)

_NS = 1_000_000_000
DAY_NS = 86_400 * _NS
ALARM_PREFIX = "halt:"
# Streams whose silence means the book or the mark is no longer known; trades may pause for a
# while in a quiet market, so they get a longer allowance (``feed.halt_trades_after_s``).
_BOOK_KINDS = ("depth", "bookTicker", "markPrice")


@dataclass(frozen=True)
class LiveView:
    """What the live side says about itself (None fields: not live)."""

    halted: bool
    halt_reason: str
    clock_offset_ms: int | None


@dataclass(frozen=True)
class Probes:
    """Where :class:`Halts` looks; each a cheap read of state the engine already keeps."""

    state: EngineState
    gate: RiskGate
    feed: FeedHealth
    live: Callable[[], LiveView | None]
    # Symbol -> "" when the model can decide for it, else why not (e.g. "window 12/60 bars").
    warmup: Callable[[], Mapping[str, str]]
    # "" while the trading database takes writes, else its last error.
    db_failing: Callable[[], str]
    # Maintenance margin over equity of the venue in force (Binance liquidates at 1).
    margin_ratio: Callable[[], Decimal] = lambda: Decimal(0)


class Halts:
    """Evaluates the blockers, keeps their alarms in step, and tells the trader."""

    def __init__(
        self,
        cfg: AppConfig,
        clock: Clock,
        probes: Probes,
        raise_alarm: Callable[[str, str], Awaitable[None]],
        clear_alarm: Callable[[str], Awaitable[None]],
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._probes = probes
        self._raise = raise_alarm
        self._clear = clear_alarm
        self.blockers = [contract.Blocker(code="starting", message="the engine is starting")]
        # What the trader reads before an entry: a code for every symbol, or per symbol.
        self._global = "starting"
        self._by_symbol: dict[str, str] = {}
        self._since: dict[str, int] = {}
        self._alarmed: set[str] = set()
        self._ts_started_ns = clock.time_ns()

    def take_over(self, open_alarm_kinds: list[str]) -> None:
        """The halt alarms left open by the last run: cleared unless still true."""
        self._alarmed |= {k for k in open_alarm_kinds if k.startswith(ALARM_PREFIX)}

    # Long on purpose: one check per blocking condition, in the order the operator reads them.
    def evaluate(self, now_ns: int) -> list[contract.Blocker]:  # noqa: PLR0912
        """Every blocker now, most fundamental first (pure: no I/O)."""
        p, cfg = self._probes, self._cfg
        out: list[contract.Blocker] = []

        def add(code: str, message: str, symbol: str = "", until_ns: int = 0) -> None:
            key = f"{code}:{symbol}" if symbol else code
            since = self._since.get(key, now_ns)
            out.append(
                contract.Blocker(
                    code=code,
                    symbol=symbol,
                    message=message,
                    ts_since_ns=since,
                    seconds_left=round((until_ns - now_ns) / _NS, 1) if until_ns else None,
                )
            )

        if p.state.paused:
            add("paused", "paused by the operator; 'resume' to trade again")
        s = p.gate.state
        if s.killed:
            add("kill_switch", f"kill switch: {s.kill_reason}; 'resume' to trade again")
        if s.drawdown_tripped:
            add("drawdown", f"drawdown from the peak {s.peak_equity} exceeded; 'resume' resets it")
        if s.daily_loss_day == now_ns // DAY_NS:
            until = (now_ns // DAY_NS + 1) * DAY_NS
            add(
                "daily_loss",
                "daily loss limit reached; entries resume at 00:00 UTC",
                until_ns=until,
            )
        if now_ns < s.cooldown_until_ns:
            add(
                "cooldown",
                f"{cfg.risk.losing_streak} losing trades in a row: cooling down until "
                f"{datetime.fromtimestamp(s.cooldown_until_ns / _NS, UTC):%H:%M:%S} UTC",
                until_ns=s.cooldown_until_ns,
            )
        live = p.live()
        if live is not None:
            if live.halted:
                add("live_halted", f"live trading halted: {live.halt_reason}")
            offset = live.clock_offset_ms
            if offset is not None and abs(offset) > cfg.live.max_clock_offset_ms:
                add(
                    "clock_offset",
                    f"our clock is {offset} ms off the exchange's "
                    f"(at most {cfg.live.max_clock_offset_ms} ms)",
                )
        ratio = p.margin_ratio()
        if ratio >= cfg.risk.max_margin_ratio:
            add(
                "margin_ratio",
                f"margin ratio {ratio:.0%} (entries stop at {cfg.risk.max_margin_ratio:.0%}; "
                "liquidation at 100%)",
            )
        error = p.db_failing()
        if error:
            add("db_write", f"the trading database refuses writes: {error}")
        for symbol in cfg.feed.symbols:
            self._stale(symbol, now_ns, add)
        for symbol, why in sorted(p.warmup().items()):
            if why:
                add("warming", f"model warming up: {why}", symbol.lower())
        return out

    def _stale(self, symbol: str, now_ns: int, add: Callable[..., None]) -> None:
        feed = self._probes.feed
        cfg = self._cfg.feed
        for name in cfg.streams():
            if not name.startswith(symbol + "@"):
                continue
            limit = (
                cfg.halt_after_s if any(k in name for k in _BOOK_KINDS) else cfg.halt_trades_after_s
            )
            health = feed.streams.get(name)
            last = health.ts_last_recv_ns if health is not None else 0
            if not last:
                # Connecting takes a moment: only a stream that stays silent past the feed's own
                # reconnect deadline is stale (and alarmed); until then it is warming up.
                waited_s = (now_ns - self._ts_started_ns) / _NS
                grace_s = cfg.stale_after_s + cfg.halt_after_s
                code = "stale_feed" if waited_s > grace_s else "warming"
                add(code, f"{name}: no message yet", symbol)
                return
            age_s = (now_ns - last) / _NS
            if age_s > limit:
                add(
                    "stale_feed",
                    f"{name}: no message for {age_s:.0f} s (limit {limit:g} s)",
                    symbol,
                )
                return

    def refresh(self) -> list[contract.Blocker]:
        """Evaluate now and tell the trader at once (no I/O: alarms follow at the next step)."""
        now = self._clock.time_ns()
        blockers = self.evaluate(now)
        keys = {_key(b): b for b in blockers}
        self._since = {k: self._since.get(k, now) for k in keys}
        self.blockers = blockers
        # Warm-up is the trader's own to judge, exactly, at each decision.
        blocking = [b for b in blockers if b.code != "warming"]
        self._global = next((b.code for b in blocking if not b.symbol), "")
        self._by_symbol = {}
        for b in blocking:
            if b.symbol:
                self._by_symbol.setdefault(b.symbol.upper(), b.code)
        return blockers

    async def step(self) -> None:
        """Evaluate, then raise and clear alarms for what appeared and what ended."""
        blockers = self.refresh()
        keys = {_key(b): b for b in blockers}
        wanted = {ALARM_PREFIX + k: b for k, b in keys.items() if b.code != "warming"}
        for kind, b in wanted.items():
            if kind not in self._alarmed:
                log.warning("entries blocked: %s", b.message)
                await self._raise(kind, b.message)
                self._alarmed.add(kind)
        for kind in sorted(self._alarmed - set(wanted)):
            log.info("entries no longer blocked by %s", kind.removeprefix(ALARM_PREFIX))
            await self._clear(kind)
            self._alarmed.discard(kind)

    def entry_block_for(self, symbol: str) -> str:
        """ "" when an entry in ``symbol`` (upper case) may go now, else the blocker's code."""
        return self._global or self._by_symbol.get(symbol, "")

    async def run(self, interval_s: float = 0.5) -> None:
        while True:
            await self.step()
            await asyncio.sleep(interval_s)


def _key(b: contract.Blocker) -> str:
    return f"{b.code}:{b.symbol}" if b.symbol else b.code

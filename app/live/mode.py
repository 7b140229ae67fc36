"""The paper ↔ live switch, persisted, and its control commands.

* Paper is the default at first start. The mode is persisted in the order ledger
  (``live_state.mode``): an engine that restarts while live comes back **live but halted** (no
  new entries) and trades again only once a reconciliation pass succeeds, so open positions are
  never abandoned.
* Live requires keys (``keys.set``), a passing preflight (``mode.preflight``) no older than
  ``PREFLIGHT_VALID_S``, and ``mode.set {"mode": "live", "confirm": <the phrase the preflight
  returned>}``. Each refusal says which of the three is missing.
* Live → paper (``mode.set {"mode": "paper", "policy": ...}``) stops new live orders at once and
  then applies the operator's policy to what is on the exchange: ``keep`` (default: orders and
  positions stay, protected by their exchange-side stops), ``cancel`` (cancel our open orders,
  stops included) or ``flatten`` (cancel, then close every position with reduce-only market
  orders).
* The kill switch, in live mode, cancels every open order and flattens on the exchange.
* The risk gate keeps each mode's breakers apart (:meth:`~app.engine.risk.RiskGate.switch_mode`):
  before the live venue takes an order the gate holds the live breakers (saved ones, or fresh
  ones from the exchange's wallet); back in paper it holds paper's again, from before going live.

:class:`LiveController` owns the live session (client, venue, user stream, reconciliation loop);
``on_change(mode, venue)`` tells the engine which venue the trader should use (None: paper).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from app import contract
from app.binance.filters import SymbolFilters, parse_symbol_filters
from app.binance.margin import Brackets
from app.binance.signed import ExchangeClient, SignedRest, dec
from app.binance.signing import Credentials
from app.clock import Clock
from app.config import AppConfig, LiveConfig
from app.engine.control import Handlers
from app.engine.orders import OrderUpdate, Submit
from app.engine.portfolio import AccountSnapshot, Portfolio
from app.engine.risk import LIVE, PAPER, BreakerState, RiskEvent, RiskGate, record_risk_event
from app.errors import ControlError, ExchangeApiError, LiveModeError, TransientError
from app.live import keys
from app.live.ledger import OrderLedger
from app.live.preflight import PreflightResult, run_preflight
from app.live.reconcile import ReconcileReport, reconcile
from app.live.userstream import UserStream
from app.live.venue import LiveVenue

log = logging.getLogger(__name__)

PREFLIGHT_VALID_S = 600
EXIT_POLICIES = ("keep", "cancel", "flatten")

OnChange = Callable[[str, LiveVenue | None], None]
# A mode's saved breakers (None: that mode never had any), e.g. ``load_breaker_state`` via the
# trading database's writer.
LoadBreakers = Callable[[str], Awaitable[BreakerState | None]]


@dataclass
class LiveSession:
    """One connection to the exchange in live mode and its background tasks."""

    client: SignedRest
    venue: LiveVenue
    stream: UserStream
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.venue.drain()
        await self.client.aclose()


class LiveController:
    """The mode, the live session, and the commands that change them.

    With ``breakers`` and ``paper_equity`` (the paper account's equity now) the gate switches to
    each mode's own breakers; without them one set of breakers serves both modes (as before).
    """

    def __init__(
        self,
        cfg: AppConfig,
        live_cfg: LiveConfig,
        clock: Clock,
        gate: RiskGate,
        filters: dict[str, SymbolFilters],
        *,
        on_change: OnChange = lambda mode, venue: None,
        record_risk: Callable[[RiskEvent], None] = lambda _: None,
        ledger: OrderLedger | None = None,
        breakers: LoadBreakers | None = None,
        paper_equity: Callable[[], Decimal] | None = None,
        brackets: dict[str, Brackets] | None = None,
    ) -> None:
        self.cfg = cfg
        self.live_cfg = live_cfg
        self.clock = clock
        self.gate = gate
        self.filters = filters
        self.symbols = tuple(s.upper() for s in cfg.feed.symbols)
        self.ledger = ledger or OrderLedger(cfg.data_dir / "orders.db")
        self._on_change = on_change
        self._record_risk = record_risk
        self._breakers = breakers
        self._paper_equity = paper_equity
        # The engine's brackets (paper, the gate): replaced by the exchange's at every preflight.
        self.brackets = brackets if brackets is not None else {}
        self.session: LiveSession | None = None
        self._preflight: PreflightResult | None = None
        self.last_report: ReconcileReport | None = None
        self._lock = asyncio.Lock()

    # -- state -----------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.cfg.data_dir

    @property
    def mode(self) -> str:
        return LIVE if self.session is not None else PAPER

    @property
    def venue(self) -> LiveVenue | None:
        return self.session.venue if self.session is not None else None

    @property
    def halted(self) -> bool:
        venue = self.venue
        return venue is not None and venue.halted

    async def persisted_mode(self) -> str:
        return str(await self.ledger.get_state("mode", PAPER))

    # -- lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Supervised task: restore a persisted live mode (halted until reconciled), then keep
        the session's tasks company until cancelled."""
        try:
            await self.restore()
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def restore(self) -> ReconcileReport | None:
        """After a restart: if the engine was live, come back live, halted, and reconcile."""
        if await self.persisted_mode() != LIVE:
            return None
        creds = keys.load_keys(self.data_dir)
        if creds is None:
            log.error("live mode persisted but no API keys: staying halted in paper")
            return None
        async with self._lock:
            await self._open(creds)
            return await self.reconcile_now(self.live_cfg.reconcile_policy)

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()

    async def _open(self, creds: Credentials) -> LiveSession:
        client = SignedRest(self.cfg.exchange.rest_base, creds, self.live_cfg, self.clock)
        await client.sync_time()
        info = await client.exchange_info()
        self.filters.update(parse_symbol_filters(info))
        # The books start from the wallet, not from zero: until reconciliation fills them in,
        # the gate must not read a zero equity as a loss.
        wallet = await _wallet(client)
        # No await from the switch to on_change: the paper venue never trades on live breakers.
        await self._switch_breakers(LIVE, wallet)
        venue = LiveVenue(
            client, self.ledger, self.gate, self.clock, self.filters, self.live_cfg,
            self.symbols, record_risk=self._record_risk, portfolio=Portfolio(wallet),
        )  # fmt: skip
        venue.halt("live start: not reconciled yet")

        async def connected() -> None:
            # Anything filled while the stream was down comes from REST now.
            await venue.resync_open()
            await venue.recover_fills()

        stream = UserStream(
            client, self.cfg.exchange.ws_base, self.live_cfg, venue.on_user_event, connected
        )
        session = LiveSession(client, venue, stream)
        for coro, name in (
            (stream.run(), "live.userstream"),
            (self._reconcile_loop(), "live.reconcile"),
            (self._clock_loop(client), "live.clock"),
        ):
            task = asyncio.create_task(coro, name=name)
            task.add_done_callback(lambda t: _task_ended(t, venue))
            session.tasks.append(task)
        self.session = session
        self._on_change(LIVE, venue)
        return session

    async def _switch_breakers(self, mode: str, equity: Decimal) -> None:
        """Give the gate ``mode``'s breakers (fresh ones from ``equity`` the first time); the
        switch itself is the last step, after the load's await."""
        if self._breakers is None or self._paper_equity is None or self.gate.mode == mode:
            return
        self.gate.switch_mode(mode, await self._breakers(mode), equity)

    async def _clock_loop(self, client: ExchangeClient) -> None:
        """Measure the clock offset to the exchange now and then: signed requests carry the
        correction, but a drifting clock misjudges every market timestamp, so the engine's halts
        stop entries while the offset is beyond ``max_clock_offset_ms``."""
        while True:
            await asyncio.sleep(self.live_cfg.clock_check_interval_s)
            try:
                offset = await client.sync_time()
            except (ExchangeApiError, OSError, TransientError) as exc:
                log.warning("clock check failed: %s", exc)
                continue
            if abs(offset) > self.live_cfg.max_clock_offset_ms:
                log.warning("clock is %d ms off the exchange's", offset)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.live_cfg.reconcile_interval_s)
            try:
                await self.reconcile_now(self.live_cfg.reconcile_policy)
            except (ControlError, OSError) as exc:
                log.warning("periodic reconciliation failed: %s", exc)
            except Exception as exc:  # recorded; trading halts
                venue = self.venue
                if venue is not None:
                    venue.halt(f"reconciliation failed: {type(exc).__name__}: {exc}")
                log.exception("periodic reconciliation failed")

    async def reconcile_now(self, policy: str) -> ReconcileReport:
        venue = self.venue
        if venue is None:
            raise LiveModeError("not in live mode")
        report = await reconcile(venue, self.clock, policy)
        self.last_report = report
        return report

    # -- actions ---------------------------------------------------------------------------------

    async def preflight(self) -> PreflightResult:
        creds = keys.load_keys(self.data_dir)
        if creds is None:
            raise LiveModeError("no API keys: set them first (keys.set)")
        client = SignedRest(self.cfg.exchange.rest_base, creds, self.live_cfg, self.clock)
        try:
            result = await run_preflight(
                client,
                self.live_cfg,
                self.cfg.risk,
                self.symbols,
                self.clock,
                on_brackets=self._adopt_brackets,
            )
        finally:
            await client.aclose()
        self._preflight = result
        return result

    def _adopt_brackets(self, brackets: dict[str, Brackets]) -> None:
        self.brackets.update({s: t for s, t in brackets.items() if s in self.symbols and t})

    async def go_live(self, confirm: str) -> ReconcileReport:
        """Enter live mode (see the module docstring for what it requires)."""
        async with self._lock:
            if self.session is not None:
                raise LiveModeError("already live")
            creds = keys.load_keys(self.data_dir)
            if creds is None:
                raise LiveModeError("refused: no API keys (keys.set first)")
            pre = self._preflight
            age_s = (self.clock.time_ns() - pre.ts_ns) / 1e9 if pre is not None else 0.0
            if pre is None or age_s > PREFLIGHT_VALID_S:
                raise LiveModeError("refused: run mode.preflight first (it must pass)")
            if not pre.ok:
                failed = ", ".join(c.name for c in pre.checks if not c.ok)
                raise LiveModeError(f"refused: the last preflight failed ({failed})")
            if confirm.strip() != pre.phrase:
                raise LiveModeError(f"refused: confirm with the exact phrase {pre.phrase!r}")
            self._preflight = None  # one confirmation, one switch
            await self._open(creds)
            await self.ledger.set_state("mode", LIVE, self.clock.time_ns())
            return await self.reconcile_now(self.live_cfg.reconcile_policy)

    async def go_paper(self, policy: str) -> dict[str, Any]:
        """Leave live mode: new orders stop at once, then ``policy`` applies."""
        if policy not in EXIT_POLICIES:
            raise ControlError(f"policy must be one of {EXIT_POLICIES}")
        async with self._lock:
            session = self.session
            if session is None:
                return {"mode": PAPER, "changed": False}
            venue = session.venue
            venue.halt("switching to paper")
            if self._paper_equity is not None:
                await self._switch_breakers(PAPER, self._paper_equity())
            self._on_change(PAPER, None)
            await self.ledger.set_state("mode", PAPER, self.clock.time_ns())
            cancelled, flattened = 0, 0
            if policy in ("cancel", "flatten"):
                cancelled = await venue.cancel_all(f"mode.set paper ({policy})")
            if policy == "flatten":
                flattened = len(await venue.flatten(self.gate.exit_order, "mode.set paper"))
            await self.close()
            return {
                "mode": PAPER,
                "changed": True,
                "policy": policy,
                "cancelled": cancelled,
                "flatten_orders": flattened,
            }

    async def kill(self, reason: str) -> list[OrderUpdate]:
        """The kill switch in live mode: halt the gate, cancel everything, flatten."""
        venue = self.venue
        self.gate.kill(reason, venue.snapshot() if venue else _empty_snapshot(self.clock))
        if venue is None:
            return []
        venue.halt(f"kill switch: {reason}")
        await venue.cancel_all(f"kill: {reason}")
        return await venue.flatten(self.gate.exit_order, f"kill: {reason}")

    async def resume(self) -> ReconcileReport | None:
        """After the kill switch's ``resume``: a live venue trades again only once a
        reconciliation pass succeeds (None in paper mode)."""
        if self.venue is None:
            return None
        return await self.reconcile_now(self.live_cfg.reconcile_policy)

    async def status(self) -> dict[str, Any]:
        venue = self.venue
        session = self.session
        out: dict[str, Any] = {
            "mode": self.mode,
            "persisted_mode": await self.persisted_mode(),
            "keys": keys.describe(self.data_dir),
            "discrepancies": await self.ledger.open_discrepancies(),
            "last_reconcile": await self.ledger.get_state("last_reconcile"),
        }
        if venue is not None and session is not None:
            client = session.client
            out.update(
                halted=venue.halted,
                halt_reason=venue.halt_reason,
                orders_sent=venue.orders_sent,
                resolved_by_query=venue.resolved_by_query,
                clock_offset_ms=client.offset_ms,
                used_weight=client.used_weight,
                weight_limit=client.weight_limit,
                blocked_until_ms=client.blocked_until_ms,
                stream_connects=session.stream.connects,
                stream_connected=session.stream.connected.is_set(),
            )
        return out


def _task_ended(task: asyncio.Task[None], venue: LiveVenue) -> None:
    """A live task must run until its session closes: if one dies, trading halts, loudly."""
    if task.cancelled():
        return
    exc = task.exception()
    venue.halt(f"{task.get_name()} stopped: {type(exc).__name__ if exc else 'returned'}: {exc}")
    log.error("live task %s ended", task.get_name(), exc_info=exc)


async def _wallet(client: ExchangeClient) -> Decimal:
    """The account's USDT wallet balance on the exchange (0 without a USDT row)."""
    for row in await client.balance():
        if row.get("asset") == "USDT":
            return dec(row["balance"])
    return Decimal(0)


def _empty_snapshot(clock: Clock) -> AccountSnapshot:
    return Portfolio(Decimal(0)).snapshot(clock.time_ns())


def build_live(
    cfg: AppConfig,
    clock: Clock,
    gate: RiskGate,
    filters: dict[str, SymbolFilters],
    submit: Submit,
    on_change: OnChange,
    live_cfg: LiveConfig | None = None,
    *,
    breakers: LoadBreakers | None = None,
    paper_equity: Callable[[], Decimal] | None = None,
    brackets: dict[str, Brackets] | None = None,
) -> LiveController:
    """The engine's live side: rejections recorded in the trading database's ``risk_events``
    through ``submit`` (``DbWriter.submit``), venue changes reported to ``on_change``, each
    mode's breakers loaded through ``breakers`` (see :class:`LiveController`)."""

    def record_risk(event: RiskEvent) -> None:
        submit(lambda conn: record_risk_event(conn, event))

    return LiveController(
        cfg, live_cfg or LiveConfig(), clock, gate, filters,
        on_change=on_change, record_risk=record_risk, breakers=breakers,
        paper_equity=paper_equity, brackets=brackets,
    )  # fmt: skip


def live_commands(live: LiveController) -> Handlers:
    """``mode.preflight``, ``mode.set``, ``keys.set``, ``live.status``, ``live.reconcile``."""

    async def preflight(args: contract.NoArgs) -> contract.Preflight:
        return msgspec.convert((await live.preflight()).as_dict(), contract.Preflight)

    async def set_mode(args: contract.ModeSetArgs) -> contract.ModeChanged:
        if args.mode == LIVE:
            report = await live.go_live(args.confirm)
            venue = live.venue
            return contract.ModeChanged(
                mode=LIVE,
                halted=venue.halted if venue else True,
                halt_reason=venue.halt_reason if venue else "",
                reconcile=msgspec.convert(report.as_dict(), contract.ReconcileReport),
            )
        return msgspec.convert(await live.go_paper(args.policy), contract.ModeChanged)

    async def set_keys(args: contract.KeysSetArgs) -> contract.KeysSaved:
        if live.mode == LIVE:
            raise ControlError("refused: switch to paper before changing the API keys")
        keys.save_keys(
            live.data_dir, args.api_key.strip(), args.api_secret.strip(), live.clock.time_ns()
        )
        return msgspec.convert({"saved": True, **keys.describe(live.data_dir)}, contract.KeysSaved)

    async def status(args: contract.NoArgs) -> contract.LiveStatus:
        return msgspec.convert(await live.status(), contract.LiveStatus)

    async def reconcile_cmd(args: contract.ReconcileArgs) -> contract.ReconcileReport:
        report = await live.reconcile_now(args.policy)
        return msgspec.convert(report.as_dict(), contract.ReconcileReport)

    h = Handlers()
    h.add(contract.MODE_PREFLIGHT, preflight)
    h.add(contract.MODE_SET, set_mode)
    h.add(contract.KEYS_SET, set_keys)
    h.add(contract.LIVE_STATUS, status)
    h.add(contract.LIVE_RECONCILE, reconcile_cmd)
    return h

"""The engine process: wires market data, recording, control channel and housekeeping together.

Everything long-running is a supervised task (restarted with backoff when it crashes); backups are
one-shot jobs with ids. Under systemd the engine reports READY once its control socket listens,
pings the watchdog only while every supervised task is up, and keeps a one-line STATUS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from msgspec.structs import astuple

from app import config, contract
from app.binance.filters import SymbolFilters
from app.binance.margin import MarginSettings, default_brackets
from app.binance.public import PublicRest
from app.clock import Clock
from app.config import AppConfig
from app.engine import gcpolicy, orders, portfolio, risk
from app.engine.backups import backup_commands, service_for
from app.engine.control import ControlServer, Handlers
from app.engine.halts import Halts, LiveView, Probes
from app.engine.inference import InferenceSlot
from app.engine.latency import LatencyRing
from app.engine.loop import paper_loop
from app.engine.market_data import MarketData
from app.engine.paper import PaperExchange, PaperLedger, kill_switch
from app.engine.recording import RecordingSink
from app.engine.risk import RiskGate
from app.engine.sdnotify import Notifier
from app.engine.settings import RuntimeSettings, load_saved
from app.engine.state import EngineState
from app.engine.supervisor import Supervisor
from app.engine.trader import Trader, Venue
from app.errors import ControlError, ModelError, TransientError
from app.live.keys import redact_args
from app.live.mode import build_live, live_commands
from app.live.venue import LiveVenue
from app.models.commands import load_active, model_commands, resume_shadow
from app.models.shadow import ShadowRunner
from app.models.store import ModelStore
from app.models.validate import ValidationLimits
from app.models.warmup import model_ready_frame, warmup_frame
from app.store import backup, schema, trading, weeks
from app.store.recorder import Recorder
from app.store.restore import apply_pending_restore
from app.store.writer import DbWriter

log = logging.getLogger(__name__)

# How often housekeeping looks for closed weeks and expired week backups (the daily archive is
# app.engine.backups').
_HOUSEKEEPING_S = 60.0


class Engine:
    """One engine process's components and their wiring."""

    def __init__(self, cfg: AppConfig, clock: Clock, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.notifier = notifier or Notifier()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(cfg.data_dir, 0o750)  # noqa: S103 - owner and group only, by design
        self.db = DbWriter(
            cfg.trading_db,
            schema.TRADING_MIGRATIONS,
            synchronous="FULL",
            reserve_bytes=cfg.store.trading_reserve_bytes,
        )
        # Saved runtime settings sit between the environment and the CLI's flags.
        cfg, self._settings_problems = config.with_saved(cfg, load_saved(self.db))
        self.cfg = cfg
        self._stop: asyncio.Event | None = None
        self.restart_reason = ""
        self.state = EngineState(ts_started_ns=clock.time_ns())
        self.supervisor = Supervisor(
            clock,
            cfg.engine.restart_backoff_initial_s,
            cfg.engine.restart_backoff_max_s,
            on_crash=self._on_crash,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self.recorder = Recorder(
            cfg.store,
            cfg.market_dir,
            clock,
            on_alarm=self._alarm_from_thread,
            on_week_closed=self._week_closed_from_thread,
        )
        self.market = MarketData(cfg.feed, cfg.exchange, clock, self._on_message)
        self._sink = RecordingSink(self.recorder, cfg.store, self.market.book_view)
        self._latency = LatencyRing()
        self.filters: dict[str, SymbolFilters] = {}
        self.models = ModelStore(cfg.data_dir / "models", clock)
        self.slot = InferenceSlot(symbols=cfg.feed.symbols)
        # The account's margining, as live mode sets it on the exchange: paper and the gate apply
        # the same leverage, margin type and (Binance's published) brackets.
        # Binance's published tiers until a live preflight reads the exchange's own.
        self.brackets = {s.upper(): default_brackets(s) for s in cfg.feed.symbols}
        self.margin = MarginSettings(
            cfg.live.leverage, cfg.live.margin_type == "ISOLATED", self.brackets
        )
        self.shadow = ShadowRunner(
            cfg.feed.symbols, clock, self.filters, self.market.books, self.db.submit,
            cfg.paper, cfg.risk,
        )  # fmt: skip
        self.gate, self.venue = self._trading_state()
        self.state.halted = self.gate.state.killed
        self.state.halt_reason = self.gate.state.kill_reason
        self.trader = Trader(
            cfg.feed.symbols,
            clock,
            self.slot,
            self.gate,
            self.venue,
            self.filters,
            self.market.books,
            # Late-bound: the halts are built after the trader, whose warm-up they read.
            lambda symbol: self.halts.entry_block_for(symbol),  # noqa: PLW0108
            margin=self.margin,
        )
        self.live = build_live(
            cfg, clock, self.gate, self.filters, self.db.submit, self._on_mode, cfg.live,
            breakers=lambda mode: self.db.call(lambda c: risk.load_breaker_state(c, mode)),
            paper_equity=lambda: self.venue.snapshot().equity,
            brackets=self.brackets,
        )  # fmt: skip
        self.halts = Halts(
            cfg,
            clock,
            Probes(
                state=self.state,
                gate=self.gate,
                feed=self.market.health,
                live=self._live_view,
                warmup=self.trader.warmup,
                db_failing=lambda: self.db.last_error if self.db.failing else "",
                margin_ratio=self._margin_ratio,
            ),
            self._alarm,
            self._clear_alarm,
        )
        self.settings = RuntimeSettings(
            cfg, clock, self.db, self.slot, self.filters, self._settings_applied, self._restart
        )
        self.backups = service_for(
            cfg.data_dir,
            cfg.store,
            clock,
            self._restart,
            pause=lambda: self._pause(contract.NoArgs()),
            alarm=self._archive_alarm,
        )
        self.control = ControlServer(
            cfg.control_socket, self._handlers(), self._journal, self.supervisor
        )

    def _trading_state(self) -> tuple[RiskGate, PaperExchange]:
        """Gate and paper venue restored from the trading database (breakers, positions)."""
        cfg, clock, db = self.cfg, self.clock, self.db
        now = clock.time_ns()
        boot = db.call_sync(lambda c: orders.next_boot(c, now))
        # Paper orders live in memory: those open at the last stop did not survive it.
        db.call_sync(lambda c: orders.expire_open_orders(c, now, "engine restarted"))
        on_event, on_state = risk.persisting(db.submit, clock)
        built = paper_loop(
            cfg.risk,
            cfg.paper,
            clock,
            boot,
            self.filters,
            # Paper's until a live session is restored: the trader starts on the paper venue.
            breakers=db.call_sync(lambda c: risk.load_breaker_state(c, risk.PAPER)),
            positions=db.call_sync(portfolio.load_positions),
            on_event=on_event,
            on_state=on_state,
            listener=lambda book, gate: PaperLedger(db.submit, book, gate),
            margin=self.margin,
        )
        gate, venue = built.gate, built.venue
        return gate, venue

    def _on_mode(self, mode: str, venue: LiveVenue | None) -> None:
        """The live side switched mode: the trader sends orders to the venue now in force."""
        self.state.mode = mode
        self.trader.attach(self.gate, venue if venue is not None else self.venue, self.market.books)

    def _live_view(self) -> LiveView | None:
        venue, session = self.live.venue, self.live.session
        if venue is None or session is None:
            return None
        return LiveView(venue.halted, venue.halt_reason, session.client.offset_ms)

    def _margin_ratio(self) -> Decimal:
        return risk.margin_ratio(self._venue_now.snapshot(), self.margin.brackets)

    async def _forced_closes(self) -> None:
        """A liquidation or auto-deleverage on the exchange is an alarm, named as what it is."""
        while True:
            venue = self.live.venue
            while venue is not None and venue.forced_closes:
                kind, symbol, ts_ns = venue.forced_closes.pop(0)
                await self._forced_close_alarm(kind, symbol, ts_ns)
            await asyncio.sleep(1.0)

    async def _forced_close_alarm(self, kind: str, symbol: str, ts_ns: int) -> None:
        message = f"{kind} of {symbol} by the exchange"
        log.error("live: %s", message)
        await self.db.call(lambda c: trading.raise_alarm(c, f"{kind}:{symbol}", message, ts_ns))

    def _settings_applied(self, cfg: AppConfig) -> None:
        self.cfg = cfg
        self.gate.cfg = cfg.risk  # the gate reads its limits at every check

    def _restart(self, reason: str) -> None:
        """Stop cleanly so that the supervisor (systemd, ``appliance run``) starts us again."""
        log.warning("restarting: %s", reason)
        self.restart_reason = reason
        if self._stop is not None:
            # After the reply is on its way: the caller learns that the change was accepted.
            asyncio.get_running_loop().call_later(0.5, self._stop.set)

    @property
    def _venue_now(self) -> Venue:
        return self.live.venue or self.venue

    # -- market data -> consumers (hot path) ----------------------------------------------------

    def _on_message(self, ts_recv_ns: int, raw: bytes, event: Any) -> None:
        self._sink(ts_recv_ns, raw, event)
        if event is not None:
            self.trader.on_event(ts_recv_ns, event)
            self.shadow.on_event(ts_recv_ns, event)
        self._latency.add(self.clock.time_ns() - ts_recv_ns)

    async def _prepare_trading(self) -> None:
        """Load the model, fetch the exchange's filters and warm the risk ATR, with retries."""
        problems: list[str] = []
        try:
            if self.cfg.model.path:  # an operator's explicit choice wins over the store
                await self.slot.swap(Path(self.cfg.model.path))
            else:
                model, problems = await asyncio.to_thread(
                    load_active, self.models, default_model_path()
                )
                # The slot checks the model against this engine's symbols before it trades.
                await self.slot.swap(model.path)
        except ModelError as exc:
            problems.append(str(exc))
        active = self.slot.model
        if active is not None:  # recorded in the swap's loop step: no frame comes between
            frame = model_ready_frame(
                active.sha256, active.contract.model_version, self.clock.time_ns() // 1_000_000
            )
            self.recorder.frame(self.clock.time_ns(), frame)
        for message in problems:
            await self._alarm("model", message)
            log.error("model: %s", message)
        delay = 1.0
        async with PublicRest(self.cfg.exchange.rest_base, self.clock) as rest:
            while True:
                try:
                    self.filters.update(await rest.symbol_filters())
                    now_ms = self.clock.time_ns() // 1_000_000
                    for symbol in self.cfg.feed.symbols:
                        rows = await rest.klines(symbol.upper(), "1m", limit=60)
                        klines = [astuple(r) for r in rows]
                        self.trader.warm_risk(symbol, klines, now_ms)
                        # Recorded where it was used, so a replay warms where the engine did.
                        self.recorder.frame(
                            self.clock.time_ns(), warmup_frame(symbol, "1m", klines, now_ms)
                        )
                    break
                except TransientError as exc:
                    log.warning("exchange not ready (%s); retrying in %.0fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)
        for message in await resume_shadow(self.models, self.slot, self.shadow, self.trader):
            await self._alarm("model", message)
        gcpolicy.settle()  # start-up's objects live as long as the process: never walk them again

    async def _alarm(self, kind: str, message: str) -> None:
        now = self.clock.time_ns()
        await self.db.call(lambda c: trading.raise_alarm(c, kind, message, now))

    async def _clear_alarm(self, kind: str) -> None:
        now = self.clock.time_ns()
        await self.db.call(lambda c: trading.clear_alarm(c, kind, now))

    async def _archive_alarm(self, kind: str, message: str | None) -> None:
        await (self._alarm(kind, message) if message else self._clear_alarm(kind))

    # -- control commands ----------------------------------------------------------------------

    def _handlers(self) -> Handlers:
        h = Handlers()
        h.add(contract.STATUS, self._status)
        h.add(contract.HEALTH, self._health)
        h.add(contract.PAUSE, self._pause)
        h.add(contract.RESUME, self._resume)
        h.add(contract.KILL, self._kill)
        h.update(backup_commands(self.backups))
        h.add(contract.JOURNAL, self._recent_journal)
        h.update(self.settings.handlers())
        h.update(live_commands(self.live))
        h.update(
            model_commands(
                self.models,
                self.slot,
                self.shadow,
                ValidationLimits(baseline=default_model_path()),
                live=lambda: self.trader,
                check_stored=True,
            )
        )
        missing = h.missing()
        if missing:  # a contract command nobody answers is a bug, not a runtime surprise
            raise ControlError(f"the engine has no handler for {', '.join(missing)}")
        return h

    async def _status(self, args: contract.NoArgs) -> contract.Status:
        stats = self.recorder.stats
        venue = self._venue_now
        account = venue.snapshot()
        blocked = self.gate.blocked(self.clock.time_ns())
        blockers = self.halts.evaluate(self.clock.time_ns())  # now, not as of the last step
        return contract.Status(
            trading=not blockers,
            blockers=blockers,
            equity=account.equity,
            realized=account.realized,
            unrealized=account.unrealized,
            fees=account.fees,
            funding=account.funding,
            margin_ratio=self._margin_ratio(),
            positions={s: v.qty for s, v in account.positions.items() if v.qty},
            open_orders=len(venue.open_orders()) if hasattr(venue, "open_orders") else None,
            live=msgspec.convert(await self.live.status(), contract.LiveStatus),
            trader=msgspec.convert(self.trader.status(), contract.TraderStatus),
            shadow=msgspec.convert(self.shadow.status(), contract.ShadowRun),
            latency_us=msgspec.convert(self._latency.percentiles(), contract.LatencyUs),
            breakers=[]
            if blocked is None
            else [contract.Breaker(code=blocked[0], message=blocked[1])],
            pid=os.getpid(),
            mode="live" if self.state.mode == "live" else "paper",
            state=self.state.label,
            halt_reason=self.state.halt_reason,
            uptime_s=round((self.clock.time_ns() - self.state.ts_started_ns) / 1e9, 1),
            symbols=list(self.cfg.feed.symbols),
            exchange=self.cfg.exchange.rest_base,
            messages=self.market.messages,
            recorder=contract.RecorderStatus(
                recording=stats.recording,
                stop_reason=stats.stop_reason,
                frames=stats.frames,
                rows=stats.rows,
                batches=stats.batches,
                dropped_records=stats.dropped_records,
                file=str(stats.current_file),
            ),
            tasks={
                n: contract.TaskBrief(running=t.running, crashes=t.crashes)
                for n, t in self.supervisor.tasks().items()
            },
            alarms=msgspec.convert(await self.db.call(trading.open_alarms), list[contract.Alarm]),
            rules={
                f.symbol: contract.SymbolRules(tick_size=f.tick_size, step_size=f.step_size)
                for s in self.cfg.feed.symbols
                if (f := self.filters.get(s.upper())) is not None
            },
        )

    async def _health(self, args: contract.NoArgs) -> contract.Health:
        return msgspec.convert(
            {
                **self.market.health_snapshot(),
                "tasks": {
                    name: {
                        "running": t.running,
                        "starts": t.starts,
                        "crashes": t.crashes,
                        "last_error": t.last_error,
                    }
                    for name, t in self.supervisor.tasks().items()
                },
                "recorder_alive": self.recorder.alive,
            },
            contract.Health,
        )

    async def _set_flags(self) -> None:
        flags = {
            "paused": self.state.paused,
            "halted": self.state.halted,
            "halt_reason": self.state.halt_reason,
        }
        now = self.clock.time_ns()
        await self.db.call(lambda c: trading.set_setting(c, "engine.flags", flags, now))

    async def _pause(self, args: contract.NoArgs) -> contract.EngineStateResult:
        self.state.paused = True
        self.halts.refresh()
        await self._set_flags()
        return contract.EngineStateResult(state=self.state.label)

    async def _resume(self, args: contract.NoArgs) -> contract.EngineStateResult:
        self.gate.resume(self._venue_now.snapshot().equity)
        # Live trades again only after a reconciliation passes.
        await self.live.resume()
        self.state.paused = self.state.halted = False
        self.state.halt_reason = ""
        self.halts.refresh()
        await self._set_flags()
        return contract.EngineStateResult(state=self.state.label)

    async def _kill(self, args: contract.KillArgs) -> contract.KillResult:
        """Halt and flatten at once (in memory), then save the kill switch before answering."""
        reason = args.reason
        self.state.halted = True
        self.state.halt_reason = reason
        if self.live.mode == "live":
            updates = await self.live.kill(reason)
        else:
            updates = kill_switch(self.gate, self.venue, reason)
        warning = ""
        self.halts.refresh()
        try:
            now = self.clock.time_ns()
            state = self.gate.state
            await self.db.call(lambda c: risk.save_breaker_state(c, state, now))
            await self._set_flags()
        except Exception as exc:  # the halt holds in memory whatever the disk says
            warning = (
                f"halted and flattening, but the kill switch could not be saved ({exc}): "
                "it holds until the engine restarts; free disk space and kill again"
            )
            log.error("kill: %s", warning)
        return contract.KillResult(
            state=self.state.label,
            reason=reason,
            flatten_orders=len(updates),
            persisted=not warning,
            warning=warning,
        )

    async def _recent_journal(self, args: contract.JournalArgs) -> list[contract.JournalEntry]:
        limit = args.limit
        if not 1 <= limit <= 1000:
            raise ControlError("limit must be between 1 and 1000")
        rows = await self.db.call(lambda c: trading.recent_journal(c, limit))
        return msgspec.convert(rows, list[contract.JournalEntry])

    async def _journal(
        self, actor: str, cmd: str, args: dict[str, Any], ok: bool, result: Any
    ) -> None:
        now = self.clock.time_ns()
        args = redact_args(args)  # keys.set must never leave its secret in the journal
        await self.db.call(lambda c: trading.journal(c, now, actor, cmd, args, ok, result))

    # -- alarms, crashes, backups --------------------------------------------------------------

    def _on_crash(self, name: str, exc: BaseException) -> None:
        now = self.clock.time_ns()
        message = f"task {name} crashed: {type(exc).__name__}: {exc}"
        self.db.submit(
            lambda c: trading.journal(c, now, "supervisor", "crash", {"task": name}, False, message)
        )
        self.notifier.status(message)

    def _alarm_from_thread(self, kind: str, message: str, active: bool) -> None:
        now = self.clock.time_ns()
        if active:
            self.db.submit(lambda c: trading.raise_alarm(c, kind, message, now))
        else:
            self.db.submit(lambda c: trading.clear_alarm(c, kind, now))

    def _week_closed_from_thread(self, path: Path) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_week_backup, path)

    def _start_week_backup(self, path: Path) -> str:
        backup_dir = self.cfg.backup_dir
        return self._tracked_job(
            "backup.market", lambda: asyncio.to_thread(backup.backup_market_week, path, backup_dir)
        )

    def _tracked_job(self, kind: str, factory: Callable[[], Awaitable[Any]]) -> str:
        """Start a one-shot job and record its run (and failure, as an alarm) in the database."""
        started = self.clock.time_ns()
        job_id = ""

        async def run() -> Any:
            db = self.db
            await db.call(
                lambda c: trading.record_task_run(c, job_id, kind, started, None, "running")
            )
            try:
                result = await factory()
            except Exception as exc:
                end, error = self.clock.time_ns(), f"{kind}: {exc}"
                await db.call(
                    lambda c: trading.record_task_run(
                        c, job_id, kind, started, end, "failed", error
                    )
                )
                await db.call(lambda c: trading.raise_alarm(c, "backup_failed", error, end))
                raise
            end, detail = self.clock.time_ns(), str(getattr(result, "backup", ""))
            await db.call(
                lambda c: trading.record_task_run(c, job_id, kind, started, end, "done", detail)
            )
            return detail

        job_id = self.supervisor.start_job(kind, run)
        return job_id

    async def _housekeeping(self) -> None:
        while True:
            now = self.clock.time_ns()
            current = weeks.week_of(now)
            for path in backup.pending_market_weeks(self.cfg.market_dir, current):
                if Path(self.recorder.stats.current_file) != path:
                    self._start_week_backup(path)
            await asyncio.to_thread(self.db.ensure_reserve)
            await asyncio.to_thread(
                backup.prune,
                self.cfg.backup_dir,
                now,
                self.cfg.store.retention_weeks,
                self.cfg.store.archive_retention_days,
            )
            await asyncio.sleep(_HOUSEKEEPING_S)

    async def _flush_loop(self) -> None:
        interval = self.cfg.store.flush_interval_s
        while True:
            await asyncio.sleep(interval)
            self.recorder.flush()
            if not self.recorder.alive:
                raise RuntimeError("recorder thread died")

    async def _heartbeat(self) -> None:
        interval = self.notifier.watchdog_interval_s or self.cfg.engine.status_interval_s
        while True:
            if self.supervisor.healthy() and self.recorder.alive:
                self.notifier.watchdog()
            stats = self.recorder.stats
            self.notifier.status(
                f"{self.state.mode} {self.state.label}; {self.market.messages} msgs; "
                f"recorded {stats.frames} frames"
                + ("" if stats.recording else "; RECORDING STOPPED")
            )
            await asyncio.sleep(min(interval, self.cfg.engine.status_interval_s))

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = stop
        for message in self._settings_problems:
            await self._alarm("settings", message)
        # Alarms left open by the last run are judged again, not trusted.
        open_kinds = [a["kind"] for a in await self.db.call(trading.open_alarms)]
        self.halts.take_over(open_kinds)
        if "disk_full" in open_kinds:
            self.recorder.alarm_open()  # cleared by the recorder's next commit
        flags = await self.db.call(lambda c: trading.get_setting(c, "engine.flags", {}))
        self.state.paused = bool(flags.get("paused", False))
        self.state.halted = bool(flags.get("halted", False))
        self.state.halt_reason = str(flags.get("halt_reason", ""))
        self.recorder.start()
        sup = self.supervisor
        sup.add("control", self.control.serve)
        sup.add("market_data", self.market.run)
        sup.add("prepare_trading", self._prepare_trading)
        sup.add("shadow_flush", self.shadow.flush_loop)
        sup.add("live", self.live.run)
        sup.add("recorder_flush", self._flush_loop)
        sup.add("housekeeping", self._housekeeping)
        sup.add("backups", self.backups.run)
        sup.add("halts", self.halts.run)
        sup.add("forced_closes", self._forced_closes)
        for _ in range(100):
            if self.cfg.control_socket.exists():
                break
            await asyncio.sleep(0.05)
        log.info(
            "engine up: %s, symbols %s, exchange %s, data in %s",
            self.state.label,
            ",".join(self.cfg.feed.symbols),
            self.cfg.exchange.rest_base,
            self.cfg.data_dir,
        )
        self.notifier.ready(f"{self.state.mode} {self.state.label}")
        sup.add("heartbeat", self._heartbeat)
        await stop.wait()
        self.notifier.stopping()
        await sup.stop()
        await self.market.close()
        await self.live.close()
        self.live.ledger.close()
        self.recorder.stop()
        self.db.close()


def default_model_path() -> Path:
    """The model shipped with the appliance: in the working copy, or installed beside the app."""
    here = Path(__file__).resolve()
    for candidate in (
        here.parents[2] / "models" / "default.onnx",
        Path("/usr/share/appliance/models/default.onnx"),
    ):
        if candidate.exists():
            return candidate
    return here.parents[2] / "models" / "default.onnx"


# Exit status of an engine that stopped to apply new settings: its supervisor starts it again
# (EX_TEMPFAIL; systemd's Restart=always and ``appliance run`` restart on any exit).
EXIT_RESTART = 75


async def run_engine(cfg: AppConfig, clock: Clock) -> int:
    """Run until SIGTERM or SIGINT (0) or a restart to apply settings (:data:`EXIT_RESTART`),
    then stop cleanly (flushing what is buffered)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    gcpolicy.tune()
    # A restore staged by backup.restore is swapped in now, while no database is open.
    panel_dir = Path(cfg.store.panel_data_dir) if cfg.store.panel_data_dir else None
    restored = apply_pending_restore(cfg.data_dir, panel_dir)
    if restored is not None:
        log.warning("restored %s: %s", restored.archive, restored.replaced)
    engine = Engine(cfg, clock)
    await engine.run(stop)
    return EXIT_RESTART if engine.restart_reason else 0

"""The one answer to "can it trade now": every blocking condition, its alarm, and its end.

Real engine parts (state, risk gate, feed health) on a manual clock; the live side and the
database's health are the probes the engine passes in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from app.clock import ManualClock
from app.config import AppConfig, FeedConfig, LiveConfig
from app.engine.halts import DAY_NS, Halts, LiveView, Probes
from app.engine.health import FeedHealth
from app.engine.orders import ClientOrderIds
from app.engine.portfolio import AccountSnapshot
from app.engine.risk import BreakerState, RiskConfig, RiskGate
from app.engine.state import EngineState

S = 1_000_000_000
T0 = 20_000 * DAY_NS + 3_600 * S  # 01:00 UTC


@dataclass
class Rig:
    clock: ManualClock
    state: EngineState
    gate: RiskGate
    feed: FeedHealth
    halts: Halts
    live: list[LiveView | None] = field(default_factory=lambda: [None])
    warm: dict[str, str] = field(default_factory=dict)
    db_error: list[str] = field(default_factory=lambda: [""])
    ratio: list[Decimal] = field(default_factory=lambda: [Decimal(0)])
    alarms: dict[str, str] = field(default_factory=dict)
    cleared: list[str] = field(default_factory=list)

    def flow(self, *symbols: str) -> None:
        """A message on every stream of ``symbols`` now."""
        now = self.clock.time_ns()
        for name in self.feed.streams:
            if name.split("@")[0] in symbols:
                self.feed.stream(name).on_message(now, now // 1_000_000)

    async def step(self, advance_s: float = 0.0) -> list[str]:
        self.clock.advance(advance_s)
        await self.halts.step()
        return [b.code for b in self.halts.blockers]


def rig(state: BreakerState | None = None) -> Rig:
    cfg = AppConfig(feed=FeedConfig(symbols=("btcusdt", "ethusdt")), live=LiveConfig())
    clock = ManualClock(T0)
    engine_state = EngineState()
    gate = RiskGate(RiskConfig(), clock, ClientOrderIds(1), state=state)
    feed = FeedHealth(clock, cfg.feed.streams())
    holder: list[Rig] = []

    async def raise_alarm(kind: str, message: str) -> None:
        holder[0].alarms[kind] = message

    async def clear_alarm(kind: str) -> None:
        holder[0].alarms.pop(kind, None)
        holder[0].cleared.append(kind)

    probes = Probes(
        state=engine_state,
        gate=gate,
        feed=feed,
        live=lambda: holder[0].live[0],
        warmup=lambda: holder[0].warm,
        db_failing=lambda: holder[0].db_error[0],
        margin_ratio=lambda: holder[0].ratio[0],
    )
    r = Rig(clock, engine_state, gate, feed, Halts(cfg, clock, probes, raise_alarm, clear_alarm))
    holder.append(r)
    return r


async def test_flowing_feeds_and_a_warm_model_trade() -> None:
    r = rig()
    assert r.halts.entry_block_for("BTCUSDT") == "starting"  # nothing trades before a verdict
    r.flow("btcusdt", "ethusdt")
    assert await r.step() == []
    assert r.halts.entry_block_for("BTCUSDT") == "" and r.alarms == {}


async def test_a_stalled_symbol_blocks_its_entries_and_resumes_by_itself() -> None:
    r = rig()
    r.flow("btcusdt", "ethusdt")
    await r.step()
    r.clock.advance(3)
    r.flow("ethusdt")  # btcusdt goes quiet
    assert await r.step(2.5) == ["stale_feed"]  # 5.5 s > 5 s
    blocker = r.halts.blockers[0]
    assert blocker.symbol == "btcusdt" and "no message for 6 s (limit 5 s)" in blocker.message
    assert r.halts.entry_block_for("BTCUSDT") == "stale_feed"
    assert r.halts.entry_block_for("ETHUSDT") == ""  # the other symbol trades on
    assert list(r.alarms) == ["halt:stale_feed:btcusdt"]
    since = blocker.ts_since_ns
    r.flow("ethusdt")
    await r.step(1)
    assert r.halts.blockers[0].ts_since_ns == since  # one episode, one alarm
    r.flow("btcusdt", "ethusdt")
    assert await r.step() == []
    assert r.alarms == {} and r.cleared == ["halt:stale_feed:btcusdt"]


async def test_trades_may_pause_longer_than_the_book() -> None:
    r = rig()
    r.flow("btcusdt", "ethusdt")
    await r.step()
    for _ in range(20):  # 40 s of book and mark updates, no trade
        r.clock.advance(2)
        now = r.clock.time_ns()
        for name in r.feed.streams:
            if "aggTrade" not in name:
                r.feed.stream(name).on_message(now, now // 1_000_000)
    assert await r.step() == []
    r.clock.advance(21)  # 61 s without a trade: even a quiet market trades more than that
    r.flow("ethusdt")
    for name in r.feed.streams:
        if name.startswith("btcusdt") and "aggTrade" not in name:
            r.feed.stream(name).on_message(r.clock.time_ns(), 0)
    assert await r.step() == ["stale_feed"]
    assert "btcusdt@aggTrade: no message for 61 s (limit 60 s)" in r.halts.blockers[0].message


async def test_breakers_say_why_and_how_long() -> None:
    until = T0 + 1_648 * S
    r = rig(BreakerState(cooldown_until_ns=until, daily_loss_day=T0 // DAY_NS))
    r.flow("btcusdt", "ethusdt")
    assert await r.step() == ["daily_loss", "cooldown"]
    daily, cooldown = r.halts.blockers
    assert daily.seconds_left == 23 * 3600  # until 00:00 UTC
    assert cooldown.seconds_left == 1_648 and "until 01:27:28 UTC" in cooldown.message
    assert r.halts.entry_block_for("ETHUSDT") == "daily_loss"
    assert set(r.alarms) == {"halt:daily_loss", "halt:cooldown"}
    r.clock.advance(1_648)
    r.flow("btcusdt", "ethusdt")
    assert await r.step() == ["daily_loss"]  # the cooldown ended by itself
    assert "halt:cooldown" in r.cleared


async def test_kill_pause_live_clock_and_database() -> None:
    r = rig()
    r.flow("btcusdt", "ethusdt")
    r.state.paused = True
    r.gate.kill("test", AccountSnapshot(T0, *[Decimal(100)] * 2, *[Decimal(0)] * 4, {}))
    r.live[0] = LiveView(halted=True, halt_reason="position_mismatch BTCUSDT", clock_offset_ms=3000)
    r.db_error[0] = "OperationalError: database or disk is full"
    assert await r.step() == ["paused", "kill_switch", "live_halted", "clock_offset", "db_write"]
    messages = [b.message for b in r.halts.blockers]
    assert "live trading halted: position_mismatch BTCUSDT" in messages
    assert "our clock is 3000 ms off the exchange's (at most 1000 ms)" in messages
    assert len(r.alarms) == 5
    r.state.paused = False
    r.gate.resume(Decimal(100))
    r.live[0] = LiveView(halted=False, halt_reason="", clock_offset_ms=-20)
    r.db_error[0] = ""
    r.flow("btcusdt", "ethusdt")
    assert await r.step() == []
    assert r.alarms == {}


async def test_warm_up_is_reported_but_judged_by_the_trader() -> None:
    r = rig()
    r.flow("btcusdt", "ethusdt")
    r.warm = {"BTCUSDT": "window 12/60 bars", "ETHUSDT": ""}
    assert await r.step() == ["warming"]
    assert r.halts.blockers[0].symbol == "btcusdt"
    assert r.halts.entry_block_for("BTCUSDT") == ""  # the trader checks its own window
    assert r.alarms == {}  # warming up is normal: no alarm


async def test_alarms_left_open_by_the_last_run_are_judged_again() -> None:
    r = rig()
    r.halts.take_over(["halt:stale_feed:btcusdt", "halt:cooldown", "disk_full"])
    r.flow("btcusdt", "ethusdt")
    assert await r.step() == []
    assert sorted(r.cleared) == ["halt:cooldown", "halt:stale_feed:btcusdt"]  # not disk_full


async def test_a_high_margin_ratio_blocks_entries_until_it_falls() -> None:
    r = rig()
    r.flow("btcusdt", "ethusdt")
    r.ratio[0] = Decimal("0.79")
    assert await r.step() == []
    r.ratio[0] = Decimal("0.8")
    assert await r.step() == ["margin_ratio"]
    assert r.halts.blockers[0].message.startswith("margin ratio 80% (entries stop at 80%")
    assert r.halts.entry_block_for("BTCUSDT") == "margin_ratio"
    assert list(r.alarms) == ["halt:margin_ratio"]
    r.ratio[0] = Decimal("0.5")
    r.flow("btcusdt", "ethusdt")
    assert await r.step() == [] and r.alarms == {}


async def test_a_stream_that_never_spoke_is_warming_then_stale() -> None:
    r = rig()
    r.flow("ethusdt")  # btcusdt has not connected yet
    assert await r.step(1) == ["warming"]  # no alarm for the first seconds of a connection
    assert r.alarms == {} and r.halts.blockers[0].message == "btcusdt@aggTrade: no message yet"
    r.flow("ethusdt")
    r.clock.advance(15)
    r.flow("ethusdt")
    assert await r.step() == ["stale_feed"]  # past the reconnect deadline and then some
    assert list(r.alarms) == ["halt:stale_feed:btcusdt"]

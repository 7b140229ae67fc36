"""The mode switch: each refusal and its reason, keys at rest, live → paper policies, a live
restart that comes back halted until reconciliation, a stop that fires while we are down, and
paper and live keeping their own breakers (a live wallet unequal to the paper equity)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.clock import SystemClock
from app.config import AppConfig, LiveConfig, load
from app.engine.control import Handlers
from app.engine.orders import ClientOrderIds, OrderStatus, RejectCode, Side, round_price
from app.engine.risk import (
    LIVE,
    PAPER,
    Approved,
    BreakerState,
    Intent,
    RiskContext,
    RiskGate,
    load_breaker_state,
    persisting,
)
from app.errors import ConfigError, ControlError, LiveModeError
from app.live import keys
from app.live.mode import LiveController, live_commands
from tests.engine.risk_support import direct, open_db
from tests.handlers import invoke
from tests.live.conftest import (
    FAST,
    KEY,
    KEY_ARGS,
    RISK,
    SECRET,
    SYMBOL,
    entry,
    eventually,
    mark_price,
    sim_fills,
)
from tests.sim.signing import Signed
from tests.simproc import SimHandle, running_sim


def _cfg(sim: SimHandle, data_dir: Path) -> AppConfig:
    return load(
        data_dir,
        environ={},
        exchange={"rest_url": sim.rest_url, "ws_url": sim.ws_url},
        feed={"symbols": "btcusdt"},
    )


def _controller(
    sim: SimHandle,
    data_dir: Path,
    clock: SystemClock,
    live_cfg: LiveConfig = FAST,
    boot: int = 1,
    gate: RiskGate | None = None,
    **kwargs: Any,
) -> tuple[LiveController, RiskGate, list[tuple[str, bool]]]:
    gate = gate or RiskGate(RISK, clock, ClientOrderIds(boot))
    changes: list[tuple[str, bool]] = []
    live = LiveController(
        _cfg(sim, data_dir), live_cfg, clock, gate, {},
        on_change=lambda mode, venue: changes.append((mode, venue is not None)), **kwargs,
    )  # fmt: skip
    return live, gate, changes


async def _call(commands: Handlers, name: str, **args: Any) -> Any:
    return await invoke(commands, name, **args)


async def _go_live(live: LiveController) -> None:
    commands = live_commands(live)
    pre = await _call(commands, "mode.preflight")
    assert pre["ok"], pre
    await _call(commands, "mode.set", mode="live", confirm=pre["phrase"])


async def test_live_needs_keys_preflight_and_confirmation(
    live_sim: SimHandle, tmp_path: Path, clock: SystemClock
) -> None:
    live, _, changes = _controller(live_sim, tmp_path, clock)
    commands = live_commands(live)
    try:
        assert live.mode == "paper" and await live.persisted_mode() == "paper"
        with pytest.raises(LiveModeError, match="no API keys"):
            await _call(commands, "mode.set", mode="live", confirm="GO LIVE")
        with pytest.raises(LiveModeError, match="no API keys"):
            await _call(commands, "mode.preflight")
        with pytest.raises(ControlError, match="letters or digits"):
            await _call(commands, "keys.set", api_key="short", api_secret=SECRET)
        saved = await _call(commands, "keys.set", api_key=KEY, api_secret=SECRET)
        assert saved["present"] is True
        assert KEY not in json.dumps(saved) and SECRET not in json.dumps(saved)
        path = keys.keys_path(tmp_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        with pytest.raises(LiveModeError, match=r"run mode\.preflight first"):
            await _call(commands, "mode.set", mode="live", confirm="GO LIVE")
        # A preflight that fails (the balance is under this configuration's minimum) refuses.
        live.live_cfg = replace(FAST, min_balance=Decimal("1000000"))
        failed = await _call(commands, "mode.preflight")
        assert failed["ok"] is False and failed["phrase"] == ""
        balance = next(c for c in failed["checks"] if c["name"] == "balance")
        assert balance["ok"] is False and "minimum 1000000" in balance["detail"]
        with pytest.raises(LiveModeError, match=r"last preflight failed \(balance\)"):
            await _call(commands, "mode.set", mode="live", confirm="GO LIVE")
        live.live_cfg = FAST
        passed = await _call(commands, "mode.preflight")
        assert passed["ok"] is True and passed["phrase"].startswith("GO LIVE ")
        assert {c["name"] for c in passed["checks"]} >= {"clock", "account", "balance", SYMBOL}
        with pytest.raises(LiveModeError, match="exact phrase"):
            await _call(commands, "mode.set", mode="live", confirm="GO LIVE")
        assert live.mode == "paper" and changes == []
        result = await _call(commands, "mode.set", mode="live", confirm=passed["phrase"])
        assert result["mode"] == "live" and result["halted"] is False
        assert live.mode == "live" and await live.persisted_mode() == "live"
        assert changes == [("live", True)]
        status = await _call(commands, "live.status")
        assert KEY not in json.dumps(status, default=str)
        assert SECRET not in json.dumps(status, default=str)
        with pytest.raises(ControlError, match="switch to paper"):
            await _call(commands, "keys.set", api_key=KEY, api_secret=SECRET)
    finally:
        await live.close()
        live.ledger.close()


def test_keys_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    keys.save_keys(tmp_path, KEY, SECRET, 1)
    assert keys.load_keys(tmp_path) is not None
    os.chmod(keys.keys_path(tmp_path), 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        keys.load_keys(tmp_path)
    assert keys.redact_args({"api_key": KEY, "api_secret": SECRET}) == {
        "api_key": "<redacted>",
        "api_secret": "<redacted>",
    }


async def test_paper_with_flatten_cancels_and_closes_on_the_exchange(
    live_sim: SimHandle, tmp_path: Path, clock: SystemClock
) -> None:
    keys.save_keys(tmp_path, KEY, SECRET, 1)
    live, gate, changes = _controller(live_sim, tmp_path, clock)
    try:
        await _go_live(live)
        venue = live.venue
        assert venue is not None and live.session is not None
        client = live.session.client
        order = entry(gate, live.filters, await mark_price(client), "0.010")
        assert (await venue.place(order)).status is OrderStatus.FILLED
        assert len(await client.open_orders(SYMBOL)) == 2  # its stop and take-profit
        result = await _call(live_commands(live), "mode.set", mode="paper", policy="flatten")
        assert result | {"halted": False, "halt_reason": "", "reconcile": None} == {
            "mode": "paper", "changed": True, "policy": "flatten", "cancelled": 2,
            "flatten_orders": 1, "halted": False, "halt_reason": "", "reconcile": None,
        }  # fmt: skip
        assert changes[-1] == ("paper", False)
        assert live.mode == "paper" and await live.persisted_mode() == "paper"
    finally:
        await live.close()
    raw = Signed(live_sim.rest_url, KEY, SECRET)
    try:
        assert raw.ok("GET", "/fapi/v1/openOrders", {"symbol": SYMBOL}) == []
        rows = raw.ok("GET", "/fapi/v2/positionRisk", {"symbol": SYMBOL})
        assert Decimal(rows[0]["positionAmt"]) == 0
    finally:
        raw.close()
        live.ledger.close()


async def test_live_restart_comes_back_halted_until_reconciled(
    live_sim: SimHandle, tmp_path: Path, clock: SystemClock
) -> None:
    keys.save_keys(tmp_path, KEY, SECRET, 1)
    first, _, _ = _controller(live_sim, tmp_path, clock)
    await _go_live(first)
    assert first.session is not None
    price = await mark_price(first.session.client)
    await first.close()  # the engine stops (as after a crash: nothing switched back)
    first.ledger.close()
    # While it is down, someone places an order by hand: not in our ledger.
    raw = Signed(live_sim.rest_url, KEY, SECRET)
    try:
        limit = (price * Decimal("0.5")).quantize(Decimal("0.1"))
        raw.ok(
            "POST", "/fapi/v1/order",
            {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "quantity": "0.010",
             "price": str(limit), "timeInForce": "GTC", "newClientOrderId": "manual-1"},
            body=True,
        )  # fmt: skip
    finally:
        raw.close()
    second, gate2, changes = _controller(live_sim, tmp_path, clock, boot=2)
    try:
        report = await second.restore()
        assert report is not None and report.ok is False
        assert [d.kind for d in report.discrepancies] == ["foreign_open_order"]
        assert second.mode == "live"
        assert _halted(second)
        assert changes == [("live", True)]
        venue = second.venue
        assert venue is not None
        blocked = venue.submit(entry(gate2, second.filters, price, "0.010"))
        assert blocked.status is OrderStatus.REJECTED and "halted" in blocked.reason
        status = await _call(live_commands(second), "live.status")
        assert status["halted"] and status["discrepancies"][0]["kind"] == "foreign_open_order"
        adopted = await _call(live_commands(second), "live.reconcile", policy="adopt")
        assert adopted["ok"] is True
        assert not _halted(second)
        assert await second.ledger.open_discrepancies() == []
        assert second.session is not None
        fresh = entry(gate2, second.filters, await mark_price(second.session.client), "0.010")
        assert (await venue.place(fresh)).status is OrderStatus.FILLED
    finally:
        await second.close()
        second.ledger.close()


async def test_stop_fires_while_stopped_and_restart_recovers_fill_and_fee(
    live_sim: SimHandle, tmp_path: Path, clock: SystemClock
) -> None:
    keys.save_keys(tmp_path, KEY, SECRET, 1)
    # A stop 2 ticks under the entry and a take-profit far away: the stop fires first.
    gate = RiskGate(replace(RISK, atr_take_profit_mult=Decimal("100000")), clock, ClientOrderIds(1))
    first, _, _ = _controller(live_sim, tmp_path, clock, gate=gate)
    await _go_live(first)
    assert first.session is not None and first.venue is not None
    client = first.session.client
    # The random walk may already be past a tight stop when it is placed (the venue then exits
    # at market instead): try until one stop rests on the exchange.
    for _ in range(5):
        order = entry(gate, first.filters, await mark_price(client), "0.010", atr="2")
        assert (await first.venue.place(order)).status is OrderStatus.FILLED
        resting = [o["clientOrderId"] for o in await client.open_orders(SYMBOL)]
        if f"{order.client_id}-sl" in resting:
            break
    else:
        raise AssertionError("no stop could be placed")
    await first.close()
    stop_id = f"{order.client_id}-sl"
    # The stop may fire in the moment before the first controller has closed its user-data
    # stream: what it recorded then is not the restart's to recover.
    seen = {int(f["trade_id"]) for f in await first.ledger.fills() if f["client_id"] == stop_id}
    first.ledger.close()

    async def stopped_out() -> bool:
        return bool(sim_fills(live_sim, stop_id))

    await eventually(stopped_out, 60, "the protective stop to fire on the simulator")
    stop_fills = sim_fills(live_sim, stop_id)
    second, _, _ = _controller(live_sim, tmp_path, clock, boot=2)
    try:
        report = await second.restore()
        assert report is not None and report.ok, report
        assert not second.halted
        assert report.recovered_fills == len([f for f in stop_fills if int(f["id"]) not in seen])
        recorded = {int(f["trade_id"]): f for f in await second.ledger.fills()}
        for f in stop_fills:
            row = recorded[int(f["id"])]
            assert row["client_id"] == stop_id
            assert int(f["id"]) in seen or row["source"] == "userTrades"
            assert Decimal(row["commission"]) == Decimal(f["commission"]) > 0
        income = await second.ledger.income()
        stop_trades = {int(f["id"]) for f in stop_fills}
        fee_rows = [
            i for i in income
            if i["income_type"] == "COMMISSION" and int(i["trade_id"]) in stop_trades
        ]  # fmt: skip
        assert sum(Decimal(i["amount"]) for i in fee_rows) == -sum(
            Decimal(f["commission"]) for f in stop_fills
        )
        stop_row = await second.ledger.order(stop_id)
        assert stop_row is not None and stop_row["status"] == "FILLED"
        # Flat again: the take-profit that survived is cancelled.
        assert second.session is not None
        assert await second.session.client.open_orders(SYMBOL) == []
        assert venue_qty(second) == 0
    finally:
        await second.close()
        second.ledger.close()


def _halted(live: LiveController) -> bool:
    return live.halted


def venue_qty(live: LiveController) -> Decimal:
    venue = live.venue
    assert venue is not None
    return venue.snapshot().qty(SYMBOL)


async def test_paper_with_keep_leaves_the_protected_position_and_kill_flattens(
    live_sim: SimHandle, tmp_path: Path, clock: SystemClock
) -> None:
    keys.save_keys(tmp_path, KEY, SECRET, 1)
    live, gate, _ = _controller(live_sim, tmp_path, clock)
    raw = Signed(live_sim.rest_url, KEY, SECRET)
    try:
        await _go_live(live)
        assert live.venue is not None and live.session is not None
        order = entry(gate, live.filters, await mark_price(live.session.client), "0.010")
        assert (await live.venue.place(order)).status is OrderStatus.FILLED
        kept = await _call(live_commands(live), "mode.set", mode="paper")
        assert kept["policy"] == "keep" and kept["cancelled"] == 0
        resting = {o["clientOrderId"] for o in raw.ok("GET", "/fapi/v1/openOrders")}
        assert resting == {f"{order.client_id}-sl", f"{order.client_id}-tp"}
        # Back to live (a new preflight and confirmation), then the kill switch.
        await _go_live(live)
        assert live.venue is not None
        updates = await live.kill("test kill")
        assert [u.status for u in updates] == [OrderStatus.FILLED]
        assert gate.state.killed
        assert _halted(live)
        assert raw.ok("GET", "/fapi/v1/openOrders") == []
        rows = raw.ok("GET", "/fapi/v2/positionRisk", {"symbol": SYMBOL})
        assert Decimal(rows[0]["positionAmt"]) == 0
    finally:
        raw.close()
        await live.close()
        live.ledger.close()


@pytest.fixture
def small_wallet_sim() -> Iterator[SimHandle]:
    """An exchange account holding 5,000 USDT: half the paper equity of the tests below."""
    with running_sim("--seed", "11", *KEY_ARGS, "--balance-usdt", "5000") as handle:
        yield handle


async def test_live_keeps_its_own_breakers_from_the_wallet_across_a_restart(
    small_wallet_sim: SimHandle, tmp_path: Path, clock: SystemClock
) -> None:
    """Paper peaked at 10,000 and the wallet holds 5,000: live entries pass (no drawdown, no daily
    loss against paper's figures); a live loss stays live's, through a restart, and paper comes
    back as it was."""
    keys.save_keys(tmp_path, KEY, SECRET, 1)
    conn = open_db(tmp_path / "trading.db")
    paper_equity = Decimal(10000)

    async def breakers(mode: str) -> BreakerState | None:
        return load_breaker_state(conn, mode)

    def engine_gate(boot: int) -> RiskGate:
        """The gate as the engine builds it at start: on the paper venue, paper's breakers."""
        on_event, on_state = persisting(direct(conn), clock)
        return RiskGate(
            RISK, clock, ClientOrderIds(boot), state=load_breaker_state(conn, PAPER),
            on_event=on_event, on_state=on_state,
        )  # fmt: skip

    def controller(gate: RiskGate, boot: int) -> LiveController:
        live, _, _ = _controller(
            small_wallet_sim, tmp_path, clock, boot=boot, gate=gate,
            breakers=breakers, paper_equity=lambda: paper_equity,
        )  # fmt: skip
        return live

    async def live_entry(live: LiveController, gate: RiskGate) -> Approved | RejectCode:
        venue, session = live.venue, live.session
        assert venue is not None and session is not None
        f = live.filters[SYMBOL]
        price = round_price(await mark_price(session.client), f.tick_size, Side.BUY)
        want = Intent(SYMBOL, Side.BUY, 0.9, price, Decimal(50), "test", clock.time_ns())
        decision = gate.check(want, RiskContext(venue.snapshot(), f, venue.pending_qty()))
        return decision if isinstance(decision, Approved) else decision.code

    gate = engine_gate(1)
    gate.on_equity(clock.time_ns(), paper_equity)
    paper = gate.state
    first = controller(gate, 1)
    try:
        await _go_live(first)
        assert first.venue is not None and not first.halted
        assert first.venue.snapshot().equity == Decimal(5000)
        assert gate.mode == LIVE
        assert (gate.state.day_start_equity, gate.state.peak_equity) == (5000, 5000)
        assert isinstance(await live_entry(first, gate), Approved)
        # Live loses 4 % (told to the gate: the simulator's random walk cannot be made to lose).
        gate.on_equity(clock.time_ns(), Decimal(4800))
        assert await live_entry(first, gate) is RejectCode.DAILY_LOSS
    finally:
        await first.close()  # the engine stops while live
        first.ledger.close()

    gate = engine_gate(2)
    second = controller(gate, 2)
    try:
        report = await second.restore()
        assert report is not None and report.ok, report
        assert gate.mode == LIVE
        assert await live_entry(second, gate) is RejectCode.DAILY_LOSS
        await _call(live_commands(second), "mode.set", mode="paper", policy="keep")
        assert gate.mode == PAPER and gate.state == paper
        assert gate.blocked(clock.time_ns()) is None
    finally:
        await second.close()
        second.ledger.close()
        conn.close()


async def test_a_drifting_clock_halts_entries_and_resumes_when_it_is_back(
    live_sim: SimHandle, tmp_path: Path, clock: SystemClock
) -> None:
    """The exchange's clock 3 s off ours while live: the clock check measures it and the halts
    stop entries; back in step, they resume by themselves."""
    from app.engine.halts import Halts, LiveView, Probes
    from app.engine.health import FeedHealth
    from app.engine.state import EngineState

    keys.save_keys(tmp_path, KEY, SECRET, 1)
    live, gate, _ = _controller(
        live_sim, tmp_path, clock, replace(FAST, clock_check_interval_s=0.2)
    )
    cfg = AppConfig(live=replace(FAST, clock_check_interval_s=0.2))

    def view() -> LiveView | None:
        session = live.session
        if session is None or live.venue is None:
            return None
        return LiveView(False, "", session.client.offset_ms)

    halts = Halts(
        cfg,
        clock,
        Probes(EngineState(), gate, FeedHealth(clock), view, dict, lambda: ""),
        _noop_alarm,
        _noop_clear,
    )
    try:
        await _go_live(live)

        def codes() -> set[str]:
            return {b.code for b in halts.evaluate(clock.time_ns())}

        async def blocked() -> bool:
            return "clock_offset" in codes()

        async def clear() -> bool:
            return "clock_offset" not in codes()

        assert await clear()
        live_sim.set_faults(clock_offset_ms=3000)
        await eventually(blocked, what="the clock check to see the offset")
        offset = view()
        assert offset is not None and offset.clock_offset_ms is not None
        assert 2_500 < offset.clock_offset_ms < 3_500
        live_sim.set_faults(clock_offset_ms=0)
        await eventually(clear, what="the offset back in bounds")
    finally:
        live_sim.set_faults(clock_offset_ms=0)
        await live.close()


async def _noop_alarm(kind: str, message: str) -> None:
    return None


async def _noop_clear(kind: str) -> None:
    return None


async def test_preflight_reads_the_exchanges_brackets(
    live_sim: SimHandle, tmp_path: Path, clock: SystemClock
) -> None:
    from app.binance.margin import BTCUSDT_BRACKETS

    keys.save_keys(tmp_path, KEY, SECRET, 1)
    shared: dict[str, Any] = {}
    live, _, _ = _controller(live_sim, tmp_path, clock, brackets=shared)
    try:
        pre = await live.preflight()
        assert pre.ok, pre.checks
        # The engine's dictionary (paper and the gate read it) now holds the exchange's tiers.
        assert shared[SYMBOL] == BTCUSDT_BRACKETS
        too_high = replace(FAST, leverage=200)
        live2, _, _ = _controller(live_sim, tmp_path, clock, too_high)
        refused = await live2.preflight()
        # The exchange itself refuses leverage above its brackets when preflight sets it.
        assert not refused.ok
        assert any("-4028" in c.detail for c in refused.checks if not c.ok), refused.checks
    finally:
        await live.close()

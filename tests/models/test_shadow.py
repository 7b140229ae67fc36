"""Shadow mode against the simulator's market: both models' signals are recorded, the shadow
places no order on the live venue, and promotion and rollback are journalled switches."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.clock import ManualClock
from app.engine.control import ControlServer
from app.engine.events import DepthUpdate
from app.engine.inference import load_model
from app.engine.supervisor import Supervisor
from app.models.commands import model_commands
from app.models.replay import ReplayBooks, Replayed, SimSeries, sim_events, sim_filters
from app.models.sandbox import make_sandbox
from app.models.shadow import ShadowRunner
from app.models.store import ModelStore
from app.store import schema, trading
from app.store.writer import DbWriter
from tests.models.support import DEFAULT, variant

SYMBOLS = ("BTCUSDT", "ETHUSDT")


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.ids = reader, writer, itertools.count(1)

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        body = {"id": next(self.ids), "cmd": cmd, "args": args, "actor": "test"}
        self.writer.write(json.dumps(body).encode() + b"\n")
        await self.writer.drain()
        reply: dict[str, Any] = json.loads(await self.reader.readline())
        return reply

    async def job(self, cmd: str, **args: Any) -> dict[str, Any]:
        reply = await self.call(cmd, **args)
        assert reply["ok"], reply
        job_id = reply["result"]["job"]
        for _ in range(600):  # the validator child takes about a second; bounded at 60 s
            state = (await self.call("job.status", job=job_id))["result"]
            if state["state"] != "running":
                return dict(state)
            await asyncio.sleep(0.1)
        raise AssertionError(f"job {job_id} still running")


@pytest.mark.slow
async def test_shadow_promote_rollback(tmp_path: Path) -> None:
    clock = ManualClock(0)
    db = DbWriter(tmp_path / "trading.db", schema.TRADING_MIGRATIONS)
    store = ModelStore(tmp_path / "models", clock)
    active = load_model(DEFAULT)
    store.ensure_active(DEFAULT, active.contract.model_version)
    books = ReplayBooks()
    filters = sim_filters(s.lower() for s in SYMBOLS)
    live = make_sandbox(active, SYMBOLS, clock, filters, books.books)  # the live trader's stand-in
    runner = ShadowRunner(SYMBOLS, clock, filters, books.books, db.submit)
    commands = model_commands(store, live.slot, runner, live=lambda: live.trader)

    async def journal(actor: str, cmd: str, args: dict[str, Any], ok: bool, result: Any) -> None:
        now = clock.time_ns()
        await db.call(lambda c: trading.journal(c, now, actor, cmd, args, ok, result))

    sock = tmp_path / "control.sock"
    server = ControlServer(sock, commands, journal, Supervisor(clock))
    serving = asyncio.create_task(server.serve())
    events: Iterator[Replayed] = sim_events(SimSeries(("btcusdt", "ethusdt"), 3, minutes=21))

    def feed(minutes: float) -> None:
        end = clock.now_ns + int(minutes * 60e9) if clock.now_ns else 0
        for ts_ns, stream, ev in events:
            clock.now_ns = ts_ns
            end = end or ts_ns + int(minutes * 60e9)
            if type(ev) is DepthUpdate:
                books.on_event(stream, ev)
            live.trader.on_event(ts_ns, ev)
            runner.on_event(ts_ns, ev)
            if ts_ns >= end:
                return

    try:
        for _ in range(200):
            if sock.exists():
                break
            await asyncio.sleep(0.01)
        client = Client(*await asyncio.open_unix_connection(str(sock)))
        feed(16)  # the live trader's windows and 1-minute ATR warm up
        candidate = variant(tmp_path, "candidate", 0.52, 0.48)
        added = await client.job("model.add", path=str(candidate))
        assert added["state"] == "done", added
        cand_sha = added["result"]["added"]["sha256"]
        reply = await client.call("model.shadow", sha256=cand_sha[:12])
        assert reply["ok"], reply
        feed(4.5)
        status = runner.status()
        assert status["shadow"]["decisions"] > 0 and status["active"]["decisions"] > 0
        assert status["shadow"]["orders"] > 0  # inside its own sandbox only
        # Exits made by the gate (stops, take-profits) carry no model version.
        assert "candidate" not in live.tally.model_versions
        assert live.tally.model_versions <= {active.contract.model_version, ""}
        assert runner_versions(runner) - {""} == {"candidate"}

        promoted = await client.call("model.promote")
        assert promoted["ok"], promoted
        assert live.slot.model is not None and live.slot.model.sha256 == cand_sha
        assert store.state.active == cand_sha and store.state.shadow is None
        assert runner.run is None
        rolled = await client.call("model.rollback")
        assert rolled["ok"], rolled
        assert live.slot.model.sha256 == active.sha256 == store.state.active
        refused = await client.call("model.delete", sha256=active.sha256)
        assert not refused["ok"] and "active model" in refused["error"]
        await db.call(lambda c: None)  # everything submitted before is written
        client.writer.close()
        await client.writer.wait_closed()
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        db.close()

    conn = sqlite3.connect(tmp_path / "trading.db")
    roles = dict(conn.execute("SELECT role, count(*) FROM model_signals GROUP BY role").fetchall())
    assert roles["active"] > 100 and roles["shadow"] > 100
    versions = {r[0] for r in conn.execute("SELECT DISTINCT model_version FROM model_signals")}
    assert versions == {active.contract.model_version, "candidate"}
    run = conn.execute("SELECT shadow_sha256, outcome, ts_ended_ns FROM shadow_runs").fetchall()
    assert run == [(cand_sha, "promoted", run[0][2])] and run[0][2] is not None
    pnl = dict(conn.execute("SELECT role, orders FROM shadow_pnl").fetchall())
    assert pnl["shadow"] > 0
    cmds = [
        (r[0], r[1])
        for r in conn.execute("SELECT cmd, ok FROM journal ORDER BY id").fetchall()
        if not r[0].startswith("job.")
    ]
    assert cmds == [
        ("model.add", 1), ("model.add:done", 1), ("model.shadow", 1), ("model.promote", 1),
        ("model.rollback", 1), ("model.delete", 0),
    ]  # fmt: skip
    conn.close()


def runner_versions(runner: ShadowRunner) -> set[str]:
    """Model versions on the orders of the shadow's own sandbox."""
    boxes = runner._boxes  # the test looks inside: these orders never left the sandbox
    assert boxes is not None
    return boxes[1].tally.model_versions

"""The supervisor restarts what crashes and runs one-shot jobs with ids."""

from __future__ import annotations

import asyncio

import pytest

from app.clock import SystemClock
from app.engine.supervisor import Supervisor
from app.errors import ControlError


async def test_a_task_that_raises_is_restarted() -> None:
    crashes: list[str] = []
    sup = Supervisor(SystemClock(), backoff_initial_s=0.01, on_crash=lambda n, e: crashes.append(n))
    runs = 0
    third = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError(f"boom {runs}")
        third.set()
        await asyncio.Event().wait()

    sup.add("flaky", flaky)
    await asyncio.wait_for(third.wait(), 5)
    state = sup.tasks()["flaky"]
    assert (state.starts, state.crashes, state.running) == (3, 2, True)
    assert state.last_error == "RuntimeError: boom 2"
    assert crashes == ["flaky", "flaky"]
    assert sup.healthy()
    await sup.stop()
    assert not sup.tasks()["flaky"].running


async def test_backoff_grows_between_restarts() -> None:
    sup = Supervisor(SystemClock(), backoff_initial_s=0.05, backoff_max_s=0.2)
    stamps: list[float] = []
    loop = asyncio.get_running_loop()
    enough = asyncio.Event()

    async def always_fails() -> None:
        stamps.append(loop.time())
        if len(stamps) == 4:
            enough.set()
        raise ValueError("no")

    sup.add("bad", always_fails)
    await asyncio.wait_for(enough.wait(), 5)
    assert not sup.healthy()
    await sup.stop()
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[2] >= 0.19


async def test_a_task_that_returns_is_finished_not_restarted() -> None:
    sup = Supervisor(SystemClock(), backoff_initial_s=0.01)
    calls = 0

    async def once() -> None:
        nonlocal calls
        calls += 1

    sup.add("once", once)
    await asyncio.sleep(0.05)
    assert calls == 1 and sup.tasks()["once"].finished and sup.healthy()
    with pytest.raises(ValueError, match="already"):
        sup.add("once", once)
    await sup.stop()


async def test_jobs_have_ids_and_outcomes() -> None:
    sup = Supervisor(SystemClock())
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 42

    async def fails() -> None:
        raise OSError("disk gone")

    async def refuses() -> None:
        raise ControlError("archive.tar.zst is truncated")

    ok_id, bad_id = sup.start_job("backup", work), sup.start_job("backup", fails)
    refused_id = sup.start_job("backup.import", refuses)
    assert ok_id != bad_id and ok_id.startswith("backup-")
    await asyncio.sleep(0.01)
    assert sup.job(ok_id).state == "running"  # type: ignore[union-attr]
    gate.set()
    await asyncio.sleep(0.01)
    done, failed = sup.job(ok_id), sup.job(bad_id)
    assert done is not None and (done.state, done.result) == ("done", 42)
    assert failed is not None and (failed.state, failed.error) == ("failed", "OSError: disk gone")
    refused = sup.job(refused_id)  # a planned refusal reads as its message, for a person
    assert refused is not None and refused.error == "archive.tar.zst is truncated"
    assert sup.job("nope") is None
    await sup.stop()

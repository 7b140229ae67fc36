"""The engine's task supervisor: long-running tasks restarted with backoff, one-shot jobs with ids.

A long-running task is registered with a *factory* (a function that returns a fresh coroutine),
because a crashed coroutine cannot be resumed, only replaced. When one raises, the supervisor
records the error, tells whoever listens (the engine journals it and updates systemd's STATUS) and
starts a new one after an exponential backoff that resets once the task has stayed up for a while.
A task that returns normally is finished and is not restarted.

One-shot jobs (backups, slow control commands) get an id that can be polled until they end.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.clock import Clock
from app.errors import ApplianceError

log = logging.getLogger(__name__)

Factory = Callable[[], Awaitable[None]]
JobFactory = Callable[[], Awaitable[Any]]

# A task that ran this long before crashing starts again from the initial backoff.
_STABLE_AFTER_NS = 60_000_000_000


@dataclass
class TaskState:
    name: str
    running: bool = False
    starts: int = 0
    crashes: int = 0
    last_error: str = ""
    ts_last_crash_ns: int = 0
    finished: bool = False


@dataclass
class JobState:
    id: str
    kind: str
    state: str = "running"  # running | done | failed
    ts_started_ns: int = 0
    ts_ended_ns: int = 0
    result: Any = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "ts_started_ns": self.ts_started_ns,
            "ts_ended_ns": self.ts_ended_ns,
            "result": self.result,
            "error": self.error,
        }


@dataclass
class _Entry:
    factory: Factory
    state: TaskState
    task: asyncio.Task[None] | None = None


@dataclass
class Supervisor:
    """Runs and restarts the engine's tasks."""

    clock: Clock
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    on_crash: Callable[[str, BaseException], None] = lambda name, exc: None
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _jobs: dict[str, JobState] = field(default_factory=dict)
    _job_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _stopping: bool = False

    def add(self, name: str, factory: Factory) -> None:
        """Register and start a long-running task."""
        if name in self._entries:
            raise ValueError(f"task {name!r} is already supervised")
        entry = _Entry(factory, TaskState(name))
        self._entries[name] = entry
        entry.task = asyncio.get_running_loop().create_task(self._keep(entry), name=name)

    async def _keep(self, entry: _Entry) -> None:
        delay = self.backoff_initial_s
        state = entry.state
        while not self._stopping:
            state.running, state.starts = True, state.starts + 1
            started = self.clock.monotonic_ns()
            try:
                await entry.factory()
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as exc:
                state.running = False
                state.crashes += 1
                state.last_error = f"{type(exc).__name__}: {exc}"
                state.ts_last_crash_ns = self.clock.time_ns()
                log.error(
                    "task %s crashed (%d so far), restarting in %.1fs\n%s",
                    state.name,
                    state.crashes,
                    delay,
                    "".join(traceback.format_exception(exc)),
                )
                self.on_crash(state.name, exc)
                if self.clock.monotonic_ns() - started > _STABLE_AFTER_NS:
                    delay = self.backoff_initial_s
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
                continue
            state.running, state.finished = False, True
            return

    def start_job(self, kind: str, factory: JobFactory) -> str:
        """Run a one-shot job in the background; return its id for polling."""
        job = JobState(f"{kind}-{next(self._ids)}", kind, ts_started_ns=self.clock.time_ns())
        self._jobs[job.id] = job
        task = asyncio.get_running_loop().create_task(self._run_job(job, factory), name=job.id)
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)
        # Keep the last 200 jobs: enough to poll, bounded for a process that runs for months.
        for old in list(self._jobs)[:-200]:
            if self._jobs[old].state != "running":
                del self._jobs[old]
        return job.id

    async def _run_job(self, job: JobState, factory: JobFactory) -> None:
        try:
            job.result = await factory()
            job.state = "done"
        except Exception as exc:
            # A refusal meant for a person (a slow command's "archive truncated", "model refused")
            # reads as its message; anything unplanned keeps its type for whoever debugs it.
            planned = isinstance(exc, ApplianceError)
            job.state, job.error = "failed", str(exc) if planned else f"{type(exc).__name__}: {exc}"
            log.error("job %s failed: %s", job.id, job.error)
        finally:
            job.ts_ended_ns = self.clock.time_ns()

    def job(self, job_id: str) -> JobState | None:
        return self._jobs.get(job_id)

    def tasks(self) -> dict[str, TaskState]:
        return {name: entry.state for name, entry in self._entries.items()}

    def healthy(self) -> bool:
        """All long-running tasks are up (or finished on purpose)."""
        return all(e.state.running or e.state.finished for e in self._entries.values())

    async def stop(self) -> None:
        """Cancel everything and wait for it to end."""
        self._stopping = True
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        tasks += list(self._job_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

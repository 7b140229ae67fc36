"""One writer thread per database, awaited from asyncio (datasette's pattern).

SQLite allows one writer at a time; giving it a thread of its own keeps a slow ``fsync`` (trading
state is ``synchronous=FULL``) off the event loop, and callers simply ``await writer.call(fn)``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from app.store import db

log = logging.getLogger(__name__)

T = TypeVar("T")

_Job = tuple[Callable[[sqlite3.Connection], Any], Future[Any]] | None


class DbWriter:
    """Owns the only writing connection to one database.

    Every failed job is counted and logged here, whoever submitted it (fire-and-forget callers
    never look at their future): :attr:`failures`, :attr:`last_error`, and :attr:`failing` from a
    failure until the next job that succeeds. ``reserve`` names a file of ``reserve_bytes``
    pre-allocated beside the database: when SQLite reports the disk full, it is deleted and the
    job tried once more, so that a full disk still takes the kill switch.
    """

    def __init__(
        self,
        path: Path,
        migrations: Sequence[str],
        synchronous: db.Synchronous = "FULL",
        reserve_bytes: int = 0,
    ) -> None:
        self.path = path
        self.failures = 0
        self.last_error = ""
        self.failing = False
        self.reserve = path.with_name(f".{path.name}.reserve")
        self.reserve_bytes = reserve_bytes
        self.ensure_reserve()
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._conn = db.connect(path, synchronous=synchronous)
        db.migrate(self._conn, migrations)
        self._thread = threading.Thread(target=self._run, name=f"writer-{path.stem}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (job := self._queue.get()) is not None:
                fn, future = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(self._attempt(fn))
                    self.failing = False
                except BaseException as exc:
                    self.failures += 1
                    self.failing = True
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.error(
                        "%s: write failed (%d so far): %s", self.path.name, self.failures, exc
                    )
                    future.set_exception(exc)
        finally:
            self._conn.close()

    def _attempt(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._conn)
        except sqlite3.OperationalError as exc:
            self._rollback()
            if "full" not in str(exc) or not self.reserve.exists():
                raise
            # The disk is full: give SQLite the reserve and try once more.
            self.reserve.unlink()
            log.error(
                "%s: disk full; released the %d-byte reserve", self.path.name, self.reserve_bytes
            )
            return fn(self._conn)
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.error("%s: rollback failed: %s", self.path.name, exc)

    def ensure_reserve(self) -> bool:
        """Make the reserve file if it is missing and there is room; True when it exists."""
        if not self.reserve_bytes or self.reserve.exists():
            return self.reserve.exists()
        try:
            with self.reserve.open("wb") as fh:
                # Real blocks (not a sparse file): the space must be there when it is given back.
                os.posix_fallocate(fh.fileno(), 0, self.reserve_bytes)
        except OSError as exc:
            self.reserve.unlink(missing_ok=True)
            log.warning("%s: no room for the reserve yet: %s", self.path.name, exc)
            return False
        return True

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the writer thread and await its result."""
        return await asyncio.wrap_future(self.submit(fn))

    def call_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Blocking variant for start-up and shutdown, outside the event loop's hot path."""
        return self.submit(fn).result()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

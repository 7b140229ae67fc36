"""One writer thread per database, awaited from asyncio (datasette's pattern).

SQLite allows one writer at a time; giving it a thread of its own keeps a slow ``fsync`` (trading
state is ``synchronous=FULL``) off the event loop, and callers simply ``await writer.call(fn)``.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from app.store import db

T = TypeVar("T")

_Job = tuple[Callable[[sqlite3.Connection], Any], Future[Any]] | None


class DbWriter:
    """Owns the only writing connection to one database."""

    def __init__(
        self, path: Path, migrations: Sequence[str], synchronous: db.Synchronous = "FULL"
    ) -> None:
        self.path = path
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
                    future.set_result(fn(self._conn))
                except BaseException as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    future.set_exception(exc)
        finally:
            self._conn.close()

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

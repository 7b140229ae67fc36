"""Password throttling per key: a few free attempts, then a delay that doubles per failure up to
a cap (HTTP 429 with ``Retry-After`` meanwhile); failures are forgotten after a quiet hour, so a
forgotten password never locks the owner out for good.

An attempt is counted *before* its password is checked (``attempt``): the read of the allowance and
the count are one transaction, so any number of concurrent attempts get at most the allowance of
real checks between them; a right password then clears the count (``success``).

Keys name who is throttled: ``address_key`` for logins and set-up (no session yet: the client's
address is all there is), ``session_key`` for passwords re-entered inside a session (going live,
deleting a model, changing the password). The two never share a count, so wrong logins from the
operator's own address never block the logged-in operator.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from app.admin.config import AdminConfig
from app.admin.paneldb import PanelDb
from app.clock import Clock


def address_key(client: str) -> str:
    return f"addr:{client}"


def session_key(id_hash: str) -> str:
    return f"session:{id_hash}"


@dataclass(frozen=True)
class Attempt:
    """The answer to ``Throttle.attempt``: refused while ``wait_s`` > 0; when granted,
    ``delay_s`` is the wait a wrong password now imposes (already in force)."""

    wait_s: float
    delay_s: float = 0.0

    @property
    def granted(self) -> bool:
        return self.wait_s <= 0


class Throttle:
    """Per-key failure counts and the earliest time of the next attempt."""

    def __init__(self, cfg: AdminConfig, pdb: PanelDb, clock: Clock) -> None:
        self._cfg = cfg
        self._db = pdb
        self._clock = clock

    def wait_s(self, key: str) -> float:
        """Seconds ``key`` must wait before its next attempt (0: go ahead)."""
        rows = self._db.rows("SELECT ts_next_ns FROM throttle WHERE client = ?", (key,))
        if not rows:
            return 0.0
        return max(0.0, (int(rows[0][0]) - self._clock.time_ns()) / 1e9)

    def delay_after(self, failures: int) -> float:
        """The delay imposed after ``failures`` consecutive failures."""
        extra = failures - self._cfg.throttle_free_attempts
        if extra < 0:
            return 0.0
        return min(self._cfg.throttle_base_delay_s * 2.0**extra, self._cfg.throttle_max_delay_s)

    def attempt(self, key: str) -> Attempt:
        """Claim one attempt for ``key``. Granted, it is already counted as a failure (``success``
        clears the count); refused, nothing is counted and ``wait_s`` says how long to wait."""
        now = self._clock.time_ns()
        forget_ns = int(self._cfg.throttle_forget_after_s * 1e9)

        def claim(conn: sqlite3.Connection) -> Attempt:
            row = conn.execute(
                "SELECT failures, ts_last_ns, ts_next_ns FROM throttle WHERE client = ?", (key,)
            ).fetchone()
            failures = 1
            if row is not None and now - int(row[1]) < forget_ns:
                if int(row[2]) > now:
                    return Attempt(wait_s=(int(row[2]) - now) / 1e9)
                failures = int(row[0]) + 1
            delay = self.delay_after(failures)
            conn.execute(
                "INSERT INTO throttle (client, failures, ts_last_ns, ts_next_ns) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (client) DO UPDATE SET "
                "failures = excluded.failures, ts_last_ns = excluded.ts_last_ns, "
                "ts_next_ns = excluded.ts_next_ns",
                (key, failures, now, now + int(delay * 1e9)),
            )
            # Keys nobody has used for the forget period (ended sessions, passing addresses).
            conn.execute("DELETE FROM throttle WHERE ts_last_ns < ?", (now - forget_ns,))
            return Attempt(wait_s=0.0, delay_s=delay)

        return self._db.atomic(claim)

    def success(self, key: str) -> None:
        self._db.write("DELETE FROM throttle WHERE client = ?", (key,))

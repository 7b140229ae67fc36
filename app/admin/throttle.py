"""Login throttling per client: a few free attempts, then a delay that doubles per failure up to
a cap (HTTP 429 with ``Retry-After`` meanwhile); failures are forgotten after a quiet hour, so a
forgotten password never locks the owner out for good."""

from __future__ import annotations

from app.admin.config import AdminConfig
from app.admin.paneldb import PanelDb
from app.clock import Clock


class Throttle:
    """Per-client failure counts and the earliest time of the next attempt."""

    def __init__(self, cfg: AdminConfig, pdb: PanelDb, clock: Clock) -> None:
        self._cfg = cfg
        self._db = pdb
        self._clock = clock

    def wait_s(self, client: str) -> float:
        """Seconds ``client`` must wait before its next attempt (0: go ahead)."""
        rows = self._db.rows("SELECT ts_next_ns FROM throttle WHERE client = ?", (client,))
        if not rows:
            return 0.0
        return max(0.0, (int(rows[0][0]) - self._clock.time_ns()) / 1e9)

    def delay_after(self, failures: int) -> float:
        """The delay imposed after ``failures`` consecutive failures."""
        extra = failures - self._cfg.throttle_free_attempts
        if extra < 0:
            return 0.0
        return min(self._cfg.throttle_base_delay_s * 2.0**extra, self._cfg.throttle_max_delay_s)

    def failure(self, client: str) -> float:
        """Count a failed attempt; returns the delay now imposed."""
        now = self._clock.time_ns()
        rows = self._db.rows(
            "SELECT failures, ts_last_ns FROM throttle WHERE client = ?", (client,)
        )
        failures = 1
        if rows and now - rows[0][1] < self._cfg.throttle_forget_after_s * 1e9:
            failures = rows[0][0] + 1
        delay = self.delay_after(failures)
        self._db.write(
            "INSERT INTO throttle (client, failures, ts_last_ns, ts_next_ns) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (client) DO UPDATE SET failures = excluded.failures, "
            "ts_last_ns = excluded.ts_last_ns, ts_next_ns = excluded.ts_next_ns",
            (client, failures, now, now + int(delay * 1e9)),
        )
        return delay

    def success(self, client: str) -> None:
        self._db.write("DELETE FROM throttle WHERE client = ?", (client,))

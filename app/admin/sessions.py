"""Login sessions: random ids in an HttpOnly cookie, only their SHA-256 stored; idle and absolute
timeouts; list and revoke."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from app.admin.config import AdminConfig
from app.admin.paneldb import PanelDb
from app.clock import Clock

COOKIE = "panel_session"
# Writing "last seen" on every request would turn each page view into a write; a minute of
# slack on a 30-minute idle timeout is harmless.
_TOUCH_EVERY_NS = 60 * 1_000_000_000


@dataclass(frozen=True)
class Session:
    id_hash: str
    user: str
    client: str
    user_agent: str
    ts_created_ns: int
    ts_seen_ns: int


def hash_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """The session table and its timeouts."""

    def __init__(self, cfg: AdminConfig, pdb: PanelDb, clock: Clock) -> None:
        self._db = pdb
        self._clock = clock
        self._idle_ns = int(cfg.idle_timeout_s * 1e9)
        self._absolute_ns = int(cfg.absolute_timeout_s * 1e9)

    def create(self, user: str, client: str, user_agent: str) -> str:
        """A new session; returns the token for the cookie (never stored)."""
        token = secrets.token_urlsafe(32)
        now = self._clock.time_ns()
        self._db.write(
            "INSERT INTO sessions (id_hash, user, client, user_agent, ts_created_ns, ts_seen_ns) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (hash_id(token), user, client, user_agent[:200], now, now),
        )
        return token

    def lookup(self, token: str) -> Session | None:
        """The live session for ``token``, touched; None if unknown, revoked or timed out."""
        if not token or len(token) > 200:
            return None
        id_hash = hash_id(token)
        rows = self._db.rows(
            "SELECT id_hash, user, client, user_agent, ts_created_ns, ts_seen_ns FROM sessions "
            "WHERE id_hash = ? AND ts_revoked_ns IS NULL",
            (id_hash,),
        )
        if not rows:
            return None
        session = Session(*rows[0])
        now = self._clock.time_ns()
        if (
            now - session.ts_seen_ns > self._idle_ns
            or now - session.ts_created_ns > self._absolute_ns
        ):
            self.revoke(id_hash)
            return None
        if now - session.ts_seen_ns > _TOUCH_EVERY_NS:
            self._db.write("UPDATE sessions SET ts_seen_ns = ? WHERE id_hash = ?", (now, id_hash))
        return session

    def revoke(self, id_hash: str) -> bool:
        return (
            self._db.write(
                "UPDATE sessions SET ts_revoked_ns = ? WHERE id_hash = ? AND ts_revoked_ns IS NULL",
                (self._clock.time_ns(), id_hash),
            )
            == 1
        )

    def revoke_all(self) -> int:
        """End every session (after a password change)."""
        return self._db.write(
            "UPDATE sessions SET ts_revoked_ns = ? WHERE ts_revoked_ns IS NULL",
            (self._clock.time_ns(),),
        )

    def active(self) -> list[Session]:
        """Sessions not revoked and not timed out, newest first."""
        now = self._clock.time_ns()
        rows = self._db.rows(
            "SELECT id_hash, user, client, user_agent, ts_created_ns, ts_seen_ns FROM sessions "
            "WHERE ts_revoked_ns IS NULL AND ts_seen_ns > ? AND ts_created_ns > ? "
            "ORDER BY ts_created_ns DESC",
            (now - self._idle_ns, now - self._absolute_ns),
        )
        return [Session(*r) for r in rows]

"""Faults on demand: the set in force, shared by the stream hub, the handlers and the protocol.

Changed from CLI flags at start and from ``POST /_sim/faults`` at runtime; listeners (the hub)
are told so open connections re-read the set at once (a new ``drop_after_s`` applies to them too).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from app.clock import Clock
from app.sim.config import FaultSettings

FAULT_KEYS = frozenset(
    {
        "drop_after_s",
        "stall",
        "stall_for_s",
        "malformed_every",
        "pong_delay_s",
        # The signed side's: an order placed but answered 503 -1007; an order placed but its
        # response held N s; user-data streams closed (and refused) while true; the server's
        # clock (``/fapi/v1/time`` and the recvWindow check) offset by N ms.
        "order_unknown_503",
        "order_timeout_s",
        "drop_user_stream",
        "clock_offset_ms",
    }
)
_FOREVER = -1


def _seconds(key: str, value: object, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a number of seconds")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{key} must be >= 0")
    return seconds


def _flag(key: str, changes: Mapping[str, object], current: bool) -> bool:
    if key not in changes:
        return current
    value = changes[key]
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false")
    return value


class Faults:
    """The faults in force. Reads are cheap: the hub consults :meth:`stalled` per frame."""

    def __init__(self, settings: FaultSettings, clock: Clock) -> None:
        self._clock = clock
        self._listeners: list[Callable[[], None]] = []
        self.drop_after_s: float | None = None
        self.malformed_every = 0
        self.pong_delay_s = 0.0
        self.order_unknown_503 = False
        self.order_timeout_s: float | None = None
        self.drop_user_stream = False
        self.clock_offset_ms = 0
        self._stall_until_ns: int | None = None
        initial: dict[str, object] = {
            "drop_after_s": settings.drop_after_s,
            "malformed_every": settings.malformed_every,
            "pong_delay_s": settings.pong_delay_s,
            "order_unknown_503": settings.order_unknown_503,
            "order_timeout_s": settings.order_timeout_s,
            "drop_user_stream": settings.drop_user_stream,
            "clock_offset_ms": settings.clock_offset_ms,
        }
        if settings.stall or settings.stall_for_s is not None:
            initial["stall"] = True
            initial["stall_for_s"] = settings.stall_for_s
        self.apply(initial)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change."""
        self._listeners.append(listener)

    # Long on purpose: one branch per fault setting.
    def apply(self, changes: Mapping[str, object]) -> None:  # noqa: PLR0912
        """Change the keys given (``None`` clears a key); raise ValueError naming a bad one.

        ``stall: true`` stalls until ``stall: false``; with ``stall_for_s`` (alone or with
        ``stall: true``) it ends by itself after that many seconds.
        """
        unknown = set(changes) - FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(FAULT_KEYS)}")
        drop = self.drop_after_s
        malformed = self.malformed_every
        pong = self.pong_delay_s
        stall_until = self._stall_until_ns
        unknown_503 = _flag("order_unknown_503", changes, self.order_unknown_503)
        drop_user = _flag("drop_user_stream", changes, self.drop_user_stream)
        order_timeout = self.order_timeout_s
        if "order_timeout_s" in changes:
            order_timeout = _seconds("order_timeout_s", changes["order_timeout_s"], allow_none=True)
        offset = self.clock_offset_ms
        if "clock_offset_ms" in changes:
            value = changes["clock_offset_ms"]
            if value is None:
                value = 0
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("clock_offset_ms must be an integer (ms, may be negative)")
            offset = value
        if "drop_after_s" in changes:
            drop = _seconds("drop_after_s", changes["drop_after_s"], allow_none=True)
        if "malformed_every" in changes:
            value = changes["malformed_every"]
            if value is None:
                value = 0
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("malformed_every must be an integer >= 0 (0 turns it off)")
            malformed = value
        if "pong_delay_s" in changes:
            pong = _seconds("pong_delay_s", changes["pong_delay_s"], allow_none=True) or 0.0
        stall_for = _seconds("stall_for_s", changes.get("stall_for_s"), allow_none=True)
        if "stall" in changes:
            stall = changes["stall"]
            if stall is not None and not isinstance(stall, bool):
                raise ValueError("stall must be true or false")
            stall_until = _FOREVER if stall else None
        if stall_for is not None and changes.get("stall", True):
            stall_until = self._clock.monotonic_ns() + int(stall_for * 1e9)
        self.drop_after_s = drop
        self.malformed_every = malformed
        self.pong_delay_s = pong
        self._stall_until_ns = stall_until
        self.order_unknown_503 = unknown_503
        self.order_timeout_s = order_timeout or None
        self.drop_user_stream = drop_user
        self.clock_offset_ms = offset
        for listener in self._listeners:
            listener()

    def stalled(self) -> bool:
        """Whether data frames are being withheld right now."""
        until = self._stall_until_ns
        if until is None:
            return False
        if until == _FOREVER:
            return True
        if self._clock.monotonic_ns() < until:
            return True
        self._stall_until_ns = None
        return False

    def as_dict(self) -> dict[str, object]:
        """The current set, as ``GET /_sim/faults`` returns it."""
        stalled = self.stalled()
        until = self._stall_until_ns
        remaining: float | None = None
        if stalled and until is not None and until != _FOREVER:
            remaining = round((until - self._clock.monotonic_ns()) / 1e9, 3)
        return {
            "drop_after_s": self.drop_after_s,
            "stall": stalled,
            "stall_for_s": remaining,
            "malformed_every": self.malformed_every,
            "pong_delay_s": self.pong_delay_s,
            "order_unknown_503": self.order_unknown_503,
            "order_timeout_s": self.order_timeout_s,
            "drop_user_stream": self.drop_user_stream,
            "clock_offset_ms": self.clock_offset_ms,
        }

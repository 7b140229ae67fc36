"""The engine's operating state as the control channel and the panel see it.

``halted`` is the kill switch: it survives a restart (persisted in the trading database's settings)
and only ``resume`` clears it. ``paused`` stops new decisions but is also persisted, so that an
operator's pause is not undone by a crash and a systemd restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class EngineState:
    mode: str = "paper"
    paused: bool = False
    halted: bool = False
    halt_reason: str = ""
    ts_started_ns: int = 0

    @property
    def trading_allowed(self) -> bool:
        return not (self.paused or self.halted)

    @property
    def label(self) -> Literal["running", "paused", "halted"]:
        if self.halted:
            return "halted"
        return "paused" if self.paused else "running"

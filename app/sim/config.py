"""The simulator's settings: one frozen object built by the CLI and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.config import DEFAULT_SIM_PORT

DEFAULT_SYMBOLS = ("btcusdt", "ethusdt")
# Binance settles funding every 8 hours; tests compress it.
DEFAULT_FUNDING_INTERVAL_S = 8 * 3600


@dataclass(frozen=True)
class FaultSettings:
    """Faults active from the start; the same keys can be changed at runtime (``/_sim/faults``)."""

    drop_after_s: float | None = None
    stall: bool = False
    stall_for_s: float | None = None
    malformed_every: int = 0
    pong_delay_s: float = 0.0


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator process needs.

    ``symbols`` empty means the defaults in live mode and "whatever the recording holds" in replay
    mode. ``api_key``/``api_secret`` are kept for the signed trading endpoints to come.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_SIM_PORT
    seed: int = 1
    symbols: tuple[str, ...] = ()
    step_ms: int = 100
    funding_interval_s: int = DEFAULT_FUNDING_INTERVAL_S
    replay: Path | None = None
    speed: float = 1.0
    loop: bool = False
    snapshots: Path | None = None
    exchange_info: Path | None = None
    api_key: str = ""
    api_secret: str = ""
    faults: FaultSettings = field(default_factory=FaultSettings)

    @property
    def live_symbols(self) -> tuple[str, ...]:
        return self.symbols or DEFAULT_SYMBOLS

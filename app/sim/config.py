"""The simulator's settings: one frozen object built by the CLI and passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.config import DEFAULT_SIM_PORT

DEFAULT_SYMBOLS = ("btcusdt", "ethusdt")
# Binance settles funding every 8 hours; tests compress it.
DEFAULT_FUNDING_INTERVAL_S = 8 * 3600
# Used when no --api-key/--api-secret is given, so `appliance sim` can trade out of the box.
DEFAULT_API_KEY = "sim-api-key"
DEFAULT_API_SECRET = "sim-api-secret"  # noqa: S105 (a public test value)


@dataclass(frozen=True)
class FaultSettings:
    """Faults active from the start; the same keys can be changed at runtime (``/_sim/faults``)."""

    drop_after_s: float | None = None
    stall: bool = False
    stall_for_s: float | None = None
    malformed_every: int = 0
    pong_delay_s: float = 0.0
    order_unknown_503: bool = False
    order_timeout_s: float | None = None
    drop_user_stream: bool = False
    clock_offset_ms: int = 0


@dataclass(frozen=True)
class TradingSettings:
    """The signed side: limits (Binance's defaults), the account's start, listenKey validity."""

    weight_limit: int = 2400
    order_limit_1m: int = 1200
    order_limit_10s: int = 300
    # Requests answered 429 that a client may still send in the same window before an IP ban.
    ban_after_429s: int = 5
    ban_s: float = 120.0
    listen_key_validity_s: float = 3600.0
    balance_usdt: str = "10000"
    default_leverage: int = 20


@dataclass(frozen=True)
class SimConfig:
    """Everything the simulator process needs.

    ``symbols`` empty means the defaults in synthetic mode (markets generated from ``seed``) and
    "whatever the recording holds" in replay mode. ``api_key``/``api_secret`` authenticate the
    signed endpoints (empty: the defaults :data:`DEFAULT_API_KEY`/:data:`DEFAULT_API_SECRET`).
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
    trading: TradingSettings = field(default_factory=TradingSettings)

    @property
    def synthetic_symbols(self) -> tuple[str, ...]:
        return self.symbols or DEFAULT_SYMBOLS

    @property
    def credentials(self) -> tuple[str, str]:
        """The API key and secret the signed endpoints accept."""
        return (self.api_key or DEFAULT_API_KEY, self.api_secret or DEFAULT_API_SECRET)

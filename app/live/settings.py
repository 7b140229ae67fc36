"""The live side's settings: one frozen object, passed in (the lead adds it to ``AppConfig``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class LiveConfig:
    """How live execution talks to the exchange and what it requires before trading.

    Times are seconds unless named ``*_ms``.
    """

    recv_window_ms: int = 5000
    # A read that takes longer fails (and is retried by its caller); an order that takes longer
    # is in an unknown state and is resolved by querying it, never by sending it again blindly.
    timeout_s: float = 10.0
    order_timeout_s: float = 5.0
    # Slow down (wait for the next minute) once this share of the weight limit is used; the limit
    # itself comes from exchangeInfo's REQUEST_WEIGHT rate limit.
    weight_soft_fraction: float = 0.8
    # The longest a request waits for the weight budget before it fails with RateLimitedError.
    max_budget_wait_s: float = 5.0
    # Binance expires a listenKey 60 minutes after its last keep-alive; it recommends one every
    # 30 minutes.
    keepalive_s: float = 30 * 60.0
    stream_backoff_initial_s: float = 0.2
    stream_backoff_max_s: float = 10.0
    reconcile_interval_s: float = 60.0
    # Preflight bounds.
    max_clock_offset_ms: int = 1000
    min_balance: Decimal = Decimal("100")
    # Account settings that are set and then checked, never assumed.
    leverage: int = 3
    margin_type: str = "CROSSED"
    # What reconciliation does with a difference: "adopt" the exchange's state, or "wait" (stay
    # halted until the operator resolves it with ``live.reconcile {"policy": "adopt"}``).
    reconcile_policy: str = "wait"
    # How long an order query keeps trying (timeouts, 5xx) before the order is left "unknown"
    # and trading halts.
    resolve_attempts: int = 5

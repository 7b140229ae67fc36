"""The signed client is tested as live trading uses it: against the live side's simulator with
alphanumeric keys, through the same client fixture (one definition, in tests/live/conftest.py)."""

from __future__ import annotations

from tests.live.conftest import client, clock, live_sim

__all__ = ["client", "clock", "live_sim"]

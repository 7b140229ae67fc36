"""The local Binance USD-M futures exchange simulator.

One Starlette app on one port serves Binance's REST market endpoints and WebSocket market streams
from either a seeded synthetic market (:mod:`app.sim.market`) or a recording
(:mod:`app.sim.replay`), with faults injectable at runtime (:mod:`app.sim.faults`), and the
signed trading side: HMAC-authenticated order and account endpoints (:mod:`app.sim.trading_rest`),
matching against the seeded book (:mod:`app.sim.orders`), the account (:mod:`app.sim.account`),
the user-data stream (:mod:`app.sim.userstream`) and rate limits (:mod:`app.sim.ratelimit`).
Run it with ``appliance sim`` or ``python -m app.sim``.
"""

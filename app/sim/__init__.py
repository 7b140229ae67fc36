"""The local Binance USD-M futures exchange simulator.

One Starlette app on one port serves Binance's REST market endpoints and WebSocket market streams
from either a seeded synthetic market (:mod:`app.sim.market`) or a recording
(:mod:`app.sim.replay`), with faults injectable at runtime (:mod:`app.sim.faults`). Run it with
``appliance sim`` or ``python -m app.sim``.
"""

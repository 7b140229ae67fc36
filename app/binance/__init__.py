"""Binance USD-M futures, once, as a library below everything that trades or simulates.

- :mod:`~app.binance.transport`: one pooled HTTP session per client, with the clock offset, the
  request-weight budget, the 429/418 blocks, and the one translation of failures into
  :mod:`app.errors`.
- :mod:`~app.binance.public`: the public endpoints market data needs (time, exchangeInfo, depth
  snapshots, klines).
- :mod:`~app.binance.signed`: the account's signed endpoints (orders, account, settings, listen
  key) behind the :class:`~app.binance.signed.ExchangeClient` protocol live trading uses.
- :mod:`~app.binance.signing`: the request signature and the API credentials.
- :mod:`~app.binance.weights`: what each request weighs (the client, the download and the
  simulator all count by it).
- :mod:`~app.binance.filters`: a symbol's trading rules (tick, step, minimum notional).
- :mod:`~app.binance.margin`: the margin rules (leverage brackets, margins, liquidation prices)
  that the paper exchange, the risk gate and the exchange simulator apply alike.

Imports nothing of the appliance but :mod:`app.errors` and :mod:`app.clock`.
"""

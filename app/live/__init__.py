"""Live execution on Binance USD-M futures: signed REST, user-data stream, a write-ahead order
journal, reconciliation, preflight, API keys and the paper ↔ live mode switch.

Everything here talks to the exchange through :class:`app.live.client.ExchangeClient` (one
interface: REST today, Binance's WebSocket API later) and is tested against the simulator only.
"""

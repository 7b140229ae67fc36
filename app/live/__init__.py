"""Live execution on Binance USD-M futures: signed REST, user-data stream, a write-ahead order
ledger, reconciliation, preflight, API keys and the paper ↔ live mode switch.

Everything here talks to the exchange through :class:`app.binance.signed.ExchangeClient` (one
interface: REST today, Binance's WebSocket API later) and is tested against the simulator only.
"""

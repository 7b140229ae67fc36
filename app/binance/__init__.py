"""Binance USD-M futures' own rules, as a library below everything that trades or simulates:
the margin rules (leverage brackets, margins, liquidation prices) that the paper exchange, the risk
gate and the exchange simulator apply alike. Imports nothing of the appliance."""

"""The preflight checklist that must pass before live trading, and the phrase that confirms it.

Checks, each reported with a detail whether it passed or not:

- ``clock``: the offset to the exchange's clock is within ``max_clock_offset_ms``;
- ``account``: ``/fapi/v2/account`` is readable with these keys and ``canTrade`` is true;
- ``balance``: the USDT wallet balance is at least ``min_balance``;
- ``position_mode``: one-way mode is set (and read back);
- per symbol, ``<SYMBOL>``: listed and ``TRADING``; margin type and leverage set and read back
  (``positionRisk``); the minimum notional reachable within ``max_position_notional`` and the
  balance times the leverage.

Setting leverage, margin type and position mode is deliberate: they are set and then checked,
never assumed. The confirmation phrase names the account (``GO LIVE <last 4 of its alias>``), so
a confirmation typed for one account cannot switch another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from app.binance.filters import parse_symbol_filters
from app.binance.margin import Brackets
from app.binance.signed import ExchangeClient, dec
from app.clock import Clock
from app.config import LiveConfig, RiskConfig
from app.errors import ApiKeyError, ExchangeApiError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class PreflightResult:
    """All checks; ``ok`` only when every one passed. ``phrase`` confirms ``mode.set``."""

    ok: bool
    checks: tuple[Check, ...]
    phrase: str
    ts_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [asdict(c) for c in self.checks],
            "phrase": self.phrase if self.ok else "",
            "ts_ns": self.ts_ns,
        }


def confirm_phrase(alias: str) -> str:
    return f"GO LIVE {alias[-4:].upper()}" if alias else "GO LIVE"


async def run_preflight(
    client: ExchangeClient,
    cfg: LiveConfig,
    risk: RiskConfig,
    symbols: tuple[str, ...],
    clock: Clock,
    on_brackets: Callable[[dict[str, Brackets]], None] | None = None,
) -> PreflightResult:
    """Run every check against the exchange (see the module docstring)."""
    checks: list[Check] = []
    alias = ""
    balance = Decimal(0)
    try:
        offset = await client.sync_time()
        checks.append(
            Check(
                "clock",
                abs(offset) <= cfg.max_clock_offset_ms,
                f"offset {offset} ms (limit ±{cfg.max_clock_offset_ms} ms)",
            )
        )
        account = await client.account()
        checks.append(
            Check("account", bool(account.get("canTrade")), f"canTrade={account.get('canTrade')}")
        )
        for row in await client.balance():
            if row.get("asset") == "USDT":
                balance = dec(row["balance"])
                alias = str(row.get("accountAlias", ""))
        checks.append(
            Check(
                "balance",
                balance >= cfg.min_balance,
                f"{balance} USDT (minimum {cfg.min_balance})",
            )
        )
        try:
            await client.set_position_mode(False)
        except ExchangeApiError as exc:
            checks.append(Check("position_mode.set", False, str(exc)))
        dual = await client.position_mode()
        checks.append(Check("position_mode", not dual, "hedge mode" if dual else "one-way"))
        checks.extend(await _symbol_checks(client, cfg, risk, symbols, balance, on_brackets))
    except ApiKeyError as exc:
        checks.append(Check("keys", False, f"refused by the exchange: {exc}"))
    except ExchangeApiError as exc:
        checks.append(Check("exchange", False, f"{exc}"))
    ok = bool(checks) and all(c.ok for c in checks)
    return PreflightResult(ok, tuple(checks), confirm_phrase(alias), clock.time_ns())


async def _symbol_checks(
    client: ExchangeClient,
    cfg: LiveConfig,
    risk: RiskConfig,
    symbols: tuple[str, ...],
    balance: Decimal,
    on_brackets: Callable[[dict[str, Brackets]], None] | None,
) -> list[Check]:
    info = await client.exchange_info()
    status = {str(s["symbol"]): str(s.get("status", "")) for s in info.get("symbols", ())}
    filters = parse_symbol_filters(info)
    brackets = await client.leverage_brackets()
    if on_brackets is not None:
        on_brackets(brackets)
    checks: list[Check] = []
    for symbol in symbols:
        problems: list[str] = []
        if status.get(symbol) != "TRADING":
            checks.append(Check(symbol, False, f"status {status.get(symbol, 'not listed')}"))
            continue
        await client.set_margin_type(symbol, cfg.margin_type)
        await client.set_leverage(symbol, cfg.leverage)
        rows = [r for r in await client.position_risk() if r.get("symbol") == symbol]
        margin = str(rows[0].get("marginType", "")) if rows else ""
        leverage = int(rows[0].get("leverage", 0)) if rows else 0
        want_margin = "isolated" if cfg.margin_type == "ISOLATED" else "cross"
        if margin != want_margin:
            problems.append(f"margin type {margin!r}, wanted {want_margin!r}")
        if leverage != cfg.leverage:
            problems.append(f"leverage {leverage}, wanted {cfg.leverage}")
        f = filters.get(symbol)
        reach = min(risk.max_position_notional, balance * cfg.leverage)
        if f is None:
            problems.append("no filters in exchangeInfo")
        elif f.min_notional > reach:
            problems.append(f"min notional {f.min_notional} > reachable {reach}")
        table = brackets.get(symbol)
        if not table:
            problems.append("no leverage brackets")
        elif cfg.leverage > table[0].initial_leverage:
            problems.append(
                f"leverage {cfg.leverage} above the first bracket's {table[0].initial_leverage}x"
            )
        detail = "; ".join(problems) or (
            f"TRADING, {want_margin} {leverage}x, min notional "
            f"{f.min_notional if f else '?'} <= {reach}"
        )
        checks.append(Check(symbol, not problems, detail))
    return checks

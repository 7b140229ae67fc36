"""The gate's liquidation check, number by number: which entry price and which wallet the
liquidation price is computed from (averaging in, flipping, reducing, cross with other positions),
the exact one-ATR buffer, the bracket named in the reason, and the account's margin ratio.

Every expected liquidation price is worked out in a comment from Binance's formula
(:mod:`app.binance.margin`); the gate must reach the same figure to the cent.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from app.binance.margin import BTCUSDT_BRACKETS, UNCAPPED, MarginSettings, ladder
from app.clock import ManualClock
from app.config import RiskConfig
from app.engine.orders import RejectCode, Side
from app.engine.portfolio import AccountSnapshot
from app.engine.risk import Approved, Decision, Rejected, margin_ratio
from tests.engine.risk_support import BTC, context, flat_account, gate, holding_account, intent

ETH = "ETHUSDT"
WIDE = RiskConfig(max_position_notional=Decimal("1000000"), max_leverage=Decimal("100"))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _btc_entry(
    clock: ManualClock,
    account: AccountSnapshot,
    side: Side,
    qty: str,
    *,
    leverage: int,
    isolated: bool = True,
    cfg: RiskConfig = WIDE,
    price: str = "65000",
    atr: str = "300",
) -> Decision:
    """A BTCUSDT entry of an explicit ``qty`` under the given margin settings."""
    ctx = dataclasses.replace(
        context(account, BTC),
        margin=MarginSettings(leverage, isolated, {BTC: BTCUSDT_BRACKETS}),
    )
    the_intent = intent(clock, side, symbol=BTC, price=price, atr=atr, qty=Decimal(qty))
    return gate(clock, cfg).check(the_intent, ctx)


def _rejected(decision: Decision) -> str:
    """The reason of a liquidation-buffer rejection."""
    assert isinstance(decision, Rejected), decision
    assert decision.code is RejectCode.LIQUIDATION_BUFFER
    return decision.message


def _reason(stop: str, where: str, lp: str, position: str, how: str, atr: str) -> str:
    return (
        f"BTCUSDT: stop {stop} is {where} the liquidation price {lp} ({position}, {how}, "
        f"bracket 1: mmr 0.004, cum 0); it must come at least 1 ATR ({atr}) before it"
    )


# -- which entry price -------------------------------------------------------------------------


def test_adding_to_a_position_is_judged_at_the_average_entry(clock: ManualClock) -> None:
    # Long 0.01 from 66,000, adding 0.01 at 65,000 (100x isolated): the position after the entry
    # is 0.02 at 65,500, so LP = 65,500 × 0.99 / 0.996 = 65,105.42, above the stop at 64,400.
    above = holding_account(clock, (BTC, Side.BUY, "0.01", "66000"), marks={BTC: "65000"})
    reason = _rejected(_btc_entry(clock, above, Side.BUY, "0.01", leverage=100))
    assert reason == _reason(
        "64400", "past", "65105.42", "0.02 at 65500.00", "100x isolated", "300"
    )
    # Long 0.01 from 60,000: 0.02 at 62,500, LP = 62,500 × 0.99 / 0.996 = 62,123.49, far
    # enough under the stop (the same entry alone would be refused: LP 64,608.43).
    below = holding_account(clock, (BTC, Side.BUY, "0.01", "60000"), marks={BTC: "65000"})
    order = _btc_entry(clock, below, Side.BUY, "0.01", leverage=100)
    assert isinstance(order, Approved), order
    assert (order.order.qty, order.order.stop_price) == (Decimal("0.01"), Decimal(64400))


def test_a_flip_is_judged_at_the_new_price_alone(clock: ManualClock) -> None:
    # Long 0.01 from 60,000, selling 0.03 at 65,000: short 0.02, all of it opened at 65,000
    # (the long's entry price is gone with the long). LP = 65,000 × 1.01 / 1.004 = 65,388.45,
    # under the short's stop at 65,600.
    account = holding_account(clock, (BTC, Side.BUY, "0.01", "60000"), marks={BTC: "65000"})
    reason = _rejected(_btc_entry(clock, account, Side.SELL, "0.03", leverage=100))
    assert reason == _reason(
        "65600", "past", "65388.45", "0.02 at 65000.00", "100x isolated", "300"
    )


@pytest.mark.parametrize("qty", ["0.01", "0.02"], ids=["reduces", "closes"])
def test_an_entry_that_only_reduces_has_no_liquidation_to_check(
    clock: ManualClock, qty: str
) -> None:
    # At 100x the long left over (0.01 at 65,000) would liquidate at 64,608.43, far past a
    # sell's stop at 65,600; but the sell adds no exposure, so nothing is refused.
    account = holding_account(clock, (BTC, Side.BUY, "0.02", "65000"))
    decision = _btc_entry(clock, account, Side.SELL, qty, leverage=100)
    assert isinstance(decision, Approved), decision
    assert (decision.order.side, decision.order.qty, decision.order.stop_price) == (
        Side.SELL,
        Decimal(qty),
        Decimal(65600),
    )


def test_cross_counts_the_other_positions_and_the_wallet_without_unrealised_pnl(
    clock: ManualClock,
) -> None:
    """Cross margin: the wallet is the equity less all unrealised PnL; the *other* positions
    add their maintenance margin and unrealised PnL, the symbol's own position is averaged in."""
    account = holding_account(
        clock,
        (BTC, Side.BUY, "0.01", "64000"),
        (ETH, Side.BUY, "10", "2000"),
        balance="1000",
        marks={BTC: "65000", ETH: "1916.5"},
    )
    assert (account.equity, account.unrealized) == (Decimal(175), Decimal(-825))
    # Wallet 1,000. ETH: notional 19,165 (ALT tier 2: MMR 1 %, cum 35) → maintenance 156.65,
    # unrealised −835. BTC after the entry: 0.02 at 64,500. Tier 1 (MMR 0.4 %, cum 0):
    # LP = (1,000 − 156.65 − 835 − 0.02 × 64,500) / (0.02 × 0.004 − 0.02) = 64,339.86,
    # 60.14 under the stop at 64,400: less than the one ATR (300) required.
    cfg = RiskConfig(
        max_position_notional=Decimal(1_000_000),
        max_leverage=Decimal(200),  # 19,815 of gross notional on 175 of equity
        risk_per_trade=Decimal("0.05"),  # 6 at the stop, of 8.75
    )
    decision = _btc_entry(clock, account, Side.BUY, "0.01", leverage=20, isolated=False, cfg=cfg)
    reason = _rejected(decision)
    assert reason == _reason(
        "64400", "too near", "64339.86", "0.02 at 64500.00", "20x cross", "300"
    )


# -- the buffer, to the cent -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("atr", "verdict"),
    [
        ("400", None),  # the stop exactly one ATR before the liquidation price: enough
        ("400.01", ("73899.98", "too near")),  # 399.98 before it, one ATR is 400.01
        ("599.75", ("73500.50", "too near")),  # 0.50 before it
        ("600", ("73500", "past")),  # the stop is the liquidation price
    ],
    ids=["one ATR exactly", "one cent short", "half a dollar before", "at the price"],
)
def test_the_stop_must_come_at_least_one_atr_before_liquidation(
    clock: ManualClock, atr: str, verdict: tuple[str, str] | None
) -> None:
    # 50x isolated long at 74,700: LP = 74,700 × 0.98 / 0.996 = 73,500 exactly; the stop is
    # 2 ATR under the entry.
    decision = _btc_entry(
        clock,
        flat_account(clock),
        Side.BUY,
        "0.01",
        leverage=50,
        cfg=RiskConfig(),
        price="74700",
        atr=atr,
    )
    if verdict is None:
        assert isinstance(decision, Approved), decision
        assert decision.order.stop_price == Decimal(73900)
    else:
        stop, where = verdict
        assert _rejected(decision) == _reason(
            stop, where, "73500.00", "0.01 at 74700.00", "50x isolated", atr
        )


def test_the_reason_names_the_bracket_at_the_liquidation_notional(clock: ManualClock) -> None:
    # 1 BTC at 65,000, 100x isolated: 650 of margin. Tier 1 gives 64,608.43, whose notional is
    # over tier 1's 50,000 cap; tier 2 (MMR 0.5 %, cum 50) gives
    # (650 − 65,000 + 50) / (0.005 − 1) = 64,623.12, inside it.
    cfg = RiskConfig(
        max_position_notional=Decimal(1_000_000),
        max_leverage=Decimal(100),
        risk_per_trade=Decimal("0.1"),  # 300 at the stop
    )
    decision = _btc_entry(
        clock, flat_account(clock), Side.BUY, "1", leverage=100, atr="150", cfg=cfg
    )
    assert _rejected(decision) == (
        "BTCUSDT: stop 64700 is too near the liquidation price 64623.12 (1 at 65000.00, "
        "100x isolated, bracket 2: mmr 0.005, cum 50); it must come at least 1 ATR (150) "
        "before it"
    )


# -- the margin ratio --------------------------------------------------------------------------


def test_margin_ratio_sums_every_position_with_its_own_or_the_default_brackets(
    clock: ManualClock,
) -> None:
    account = holding_account(
        clock, (BTC, Side.BUY, "0.1", "65000"), (ETH, Side.SELL, "2", "2000"), balance="1000"
    )
    flat_rate = ladder(((0, str(UNCAPPED), 10, "0.02"),))
    # BTCUSDT by the given table: 6,500 × 2 % = 130. ETHUSDT is not in it: the default (ALT)
    # tier 1, 4,000 × 0.65 % = 26. Over the equity of 1,000.
    assert margin_ratio(account, {BTC: flat_rate}) == Decimal("0.156")
    # With no table at all, BTCUSDT's own default: 6,500 × 0.4 % = 26.
    assert margin_ratio(account, {}) == Decimal("0.052")

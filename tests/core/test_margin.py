"""The margin library against Binance's published rules and worked examples.

Sources (Binance's own pages):

- "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts",
  https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93 : the formula
  ``LP = (WB − TMM + UPNL + cum − side × qty × EP) / (qty × MMR − side × qty)``; "in isolated
  margin mode, WB is isolatedWalletBalance, TMM = 0, UPNL = 0"; BTCUSDT examples: a 264,000 USDT
  position has MMR 1 %, a 500,000 USDT position has maintenance amount 1,300, and "Maintenance
  Amount on Level 3 = 250,000 × (1 % − 0.5 %) + 50 = 1,300".
- "How to avoid liquidation",
  https://www.binance.com/en/support/faq/25edcd7fe0e544839d0847b8cbb2e400 :
  "wallet balance of 500 USDT ... a long BTCUSDT position worth 1,000 USDT with 20x leverage at
  $50,000 ... your liquidation price will be $25,100.40" (cross margin: the whole wallet backs it).
  The same page's follow-up figure ($35,857.67 after adding 1,000 USDT at $45,000) does not follow
  from the formula with any consistent inputs (it needs WB ≈ 492.07), so it is not used.
- ``GET /fapi/v1/leverageBracket`` (developers.binance.com, USDⓈ-M "Notional and Leverage
  Brackets"): the response shape :func:`parse_brackets` reads.

No Binance page found gives a numeric *isolated* example; the isolated cases apply the FAQ's
substitution (WB = isolated wallet = notional / leverage) to the same position, and are checked
against the closed form ``EP × (1 − 1/L) / (1 − MMR)`` that the substitution reduces to.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.binance import margin as m

D = Decimal
BTC = m.BTCUSDT_BRACKETS


def test_btcusdt_brackets_follow_the_faq() -> None:
    assert m.bracket_for(BTC, D("264000")).maint_margin_ratio == D("0.01")
    assert m.bracket_for(BTC, D("500000")).cum == D("1300")
    assert [b.cum for b in BTC[:4]] == [D(0), D(50), D(1300), D(16300)]
    assert m.bracket_for(BTC, D("49999.99")).bracket == 1
    assert m.bracket_for(BTC, D("50000")).bracket == 2
    assert m.max_leverage(BTC, D("1000")) == 125
    assert m.max_leverage(BTC, D("300000")) == 50
    assert m.max_notional(BTC, 125) == D("50000")
    assert m.max_notional(BTC, 20) == D("5000000")
    # Maintenance margin is continuous across a tier boundary thanks to cum.
    assert m.maintenance_margin(BTC, D("250000")) == D("250000") * D("0.005") - 50
    assert m.maintenance_margin(BTC, D("250000")) == D("250000") * D("0.01") - 1300


def test_cross_worked_example_from_binance() -> None:
    qty = D("1000") / D("50000")
    lp = m.liquidation_price(wallet=D("500"), qty=qty, entry=D("50000"), brackets=BTC)
    assert lp is not None
    assert lp.quantize(D("0.01")) == D("25100.40")
    # At that price the margin balance equals the maintenance margin: the ratio is 100 %.
    balance = D("500") + qty * (lp - D("50000"))
    assert m.margin_ratio(m.maintenance_margin(BTC, qty * lp), balance) == pytest.approx(1)


def test_cross_with_other_positions_moves_the_price() -> None:
    eth = m.Holding("ETHUSDT", D("-2"), D("3000"), D("3100"))
    btc = m.Holding("BTCUSDT", D("0.02"), D("50000"), D("50000"))
    brackets = {"BTCUSDT": BTC, "ETHUSDT": m.ALT_BRACKETS}
    lp = m.cross_liquidation_price(btc, D("500"), [eth], brackets)
    tmm = m.maintenance_margin(m.ALT_BRACKETS, D("6200"))
    expected = (D("500") - tmm + D("-200") - D("1000")) / (D("0.02") * D("0.004") - D("0.02"))
    assert lp == expected
    assert lp is not None and lp > D("25100.40")  # losses elsewhere bring it closer


@pytest.mark.parametrize(
    ("qty", "leverage", "expected"),
    [
        # Long 0.02 BTC at 50,000, 20x: WB = 50; (50 − 1000) / (0.02 × 0.004 − 0.02).
        (D("0.02"), 20, D("47690.76")),
        # Long at 10x: 50,000 × 0.9 / 0.996.
        (D("0.02"), 10, D("45180.72")),
        # Short at 10x: (100 + 1000) / (0.02 × 0.004 + 0.02) = 50,000 × 1.1 / 1.004.
        (D("-0.02"), 10, D("54780.88")),
    ],
)
def test_isolated_applies_the_faq_substitution(
    qty: Decimal, leverage: int, expected: Decimal
) -> None:
    wallet = m.isolated_wallet(qty, D("50000"), leverage)
    lp = m.isolated_liquidation_price(qty, D("50000"), wallet, BTC)
    assert lp is not None
    assert lp.quantize(D("0.01")) == expected
    side = 1 if qty > 0 else -1
    closed_form = D("50000") * (1 - side * D(1) / leverage) / (1 - side * D("0.004"))
    assert lp == pytest.approx(closed_form, rel=D("1e-20"))


def test_isolated_position_in_a_higher_tier_uses_the_tier_at_the_liquidation_price() -> None:
    # 6 BTC at 50,000 = 300,000 (tier 3, MMR 1 %, cum 1,300) at 20x: WB = 15,000.
    lp = m.isolated_liquidation_price(D("6"), D("50000"), D("15000"), BTC)
    assert lp == (D("15000") + 1300 - D("300000")) / (D("6") * D("0.01") - 6)
    # 5.5 BTC at 50,000 = 275,000 (tier 3), but at its liquidation price the notional falls
    # under 250,000: tier 2's rate and amount apply, as the FAQ's note requires.
    qty, wallet = D("5.5"), D("27500")  # 10x
    lp2 = m.isolated_liquidation_price(qty, D("50000"), wallet, BTC)
    tier2 = (wallet + 50 - qty * 50000) / (qty * D("0.005") - qty)
    assert lp2 == tier2
    assert qty * tier2 < 250000


def test_no_liquidation_price_at_one_x_long() -> None:
    assert m.isolated_liquidation_price(D("1"), D("100"), D("100"), BTC) is None
    assert m.liquidation_price(wallet=D(0), qty=D(0), entry=D(1), brackets=BTC) is None


def test_liquidation_fee_is_capped_by_what_is_left() -> None:
    assert m.liquidation_fee(D("1000"), D("0.012"), D("100")) == D("12.000")
    assert m.liquidation_fee(D("1000"), D("0.012"), D("3")) == D("3")
    assert m.liquidation_fee(D("1000"), D("0.012"), D("-5")) == D(0)
    assert m.should_liquidate(D("4"), D("4"))
    assert not m.should_liquidate(D("4.01"), D("4"))


def test_parse_brackets_reads_binance_shapes() -> None:
    doc = {
        "symbol": "ETHUSDT",
        "notionalCoef": 1.50,
        "brackets": [
            {
                "bracket": 1,
                "initialLeverage": 75,
                "notionalCap": 10000,
                "notionalFloor": 0,
                "maintMarginRatio": 0.0065,
                "cum": 0,
            }
        ],
    }
    parsed = m.parse_brackets(doc)
    assert parsed["ETHUSDT"][0].maint_margin_ratio == D("0.0065")
    assert m.parse_brackets([doc]) == parsed
    round_trip = m.parse_brackets([{"symbol": "BTCUSDT", "brackets": [b.as_json() for b in BTC]}])
    assert round_trip["BTCUSDT"] == BTC
    with pytest.raises(ValueError, match="leverageBracket"):
        m.parse_brackets("nope")

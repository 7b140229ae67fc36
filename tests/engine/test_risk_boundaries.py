"""The gate's limits at their exact edges: the Kelly edge, the risk budget, the position and
leverage caps (explicit quantities one step either side of the cap, sized ones shrunk to it), the
exchange minimums, the intent's age, the bracket prices, malformed intents and reduce-only exits.

A limit is "at most": an order exactly at a cap passes and one step over is refused, with a
reason that names the cap and the figure that broke it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.clock import ManualClock
from app.config import RiskConfig
from app.engine.orders import OrderType, RejectCode, Side
from app.engine.risk import Approved, Decision, Rejected
from tests.engine.risk_support import (
    BTC,
    SUSHI,
    context,
    flat_account,
    gate,
    holding_account,
    intent,
)

AKRO = "AKROUSDT"
# The position cap out of the way, so that leverage (3 × equity) is what binds.
LEVERAGE_BINDS = RiskConfig(max_position_notional=Decimal(1_000_000))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def _approved(decision: Decision) -> Approved:
    assert isinstance(decision, Approved), decision
    return decision


def _rejected(decision: Decision, code: RejectCode) -> str:
    assert isinstance(decision, Rejected), decision
    assert decision.code is code, decision
    return decision.message


# -- the edge ----------------------------------------------------------------------------------


def test_zero_kelly_is_no_edge(clock: ManualClock) -> None:
    # p = 0.4, b = 3/2: Kelly = 0.4 − 0.6 / 1.5 = 0 exactly; no edge is a refusal, not a zero
    # size.
    decision = gate(clock).check(intent(clock, confidence=0.4), context(flat_account(clock)))
    assert _rejected(decision, RejectCode.NO_EDGE) == (
        "confidence 0.400000 with payoff 1.5 gives Kelly 0.000000 <= 0"
    )


def test_an_edge_too_thin_for_one_contract_names_the_minimum_not_a_cap(
    clock: ManualClock,
) -> None:
    # Kelly at p = 0.400001 is 1.7e-6: a quarter of it risks 0.004 of 10,000, 0.1 contract.
    # The risk budget, not a cap, is what left nothing: the exchange minimum says so.
    decision = gate(clock).check(intent(clock, confidence=0.400001), context(flat_account(clock)))
    assert _rejected(decision, RejectCode.QTY_BELOW_MIN) == "SUSHIUSDT: qty 0 < minimum 1"


def test_when_the_budget_and_a_cap_allow_the_same_size_the_budget_is_named(
    clock: ManualClock,
) -> None:
    # Equity 1: 0.01 at risk over a stop 0.02 away is 0.5 contract; the position cap of 4 at a
    # price of 8 is 0.5 as well. The tie goes to the budget: the order is merely too small.
    cfg = RiskConfig(max_position_notional=Decimal(4), max_leverage=Decimal(100))
    decision = gate(clock, cfg).check(
        intent(clock, price="8", atr="0.01"), context(flat_account(clock, "1"))
    )
    assert _rejected(decision, RejectCode.QTY_BELOW_MIN) == "SUSHIUSDT: qty 0 < minimum 1"


# -- explicit quantities at the caps -----------------------------------------------------------


def test_an_explicit_qty_may_risk_exactly_the_budget(clock: ManualClock) -> None:
    g = gate(clock, RiskConfig(max_position_notional=Decimal(1_000_000), max_leverage=Decimal(100)))
    # 1 % of 10,000 is 100; the stop is 2 × 0.02 away: 2,500 risks exactly 100.
    exact = g.check(intent(clock, qty=Decimal(2500)), context(flat_account(clock)))
    assert _approved(exact).order.qty == Decimal(2500)
    decision = g.check(intent(clock, qty=Decimal(2501)), context(flat_account(clock)))
    assert _rejected(decision, RejectCode.RISK_PER_TRADE) == (
        "SUSHIUSDT: 2501 risks 100.04 at the stop, budget 100.00"
    )


def test_an_explicit_qty_may_fill_the_position_cap_exactly(clock: ManualClock) -> None:
    # Long 50; at a price of 8 the 1,000 cap is 125 contracts, so 75 more fill it exactly.
    account = holding_account(clock, (SUSHI, Side.BUY, "50", "7.612"))
    g = gate(clock)
    order = _approved(g.check(intent(clock, price="8", qty=Decimal(75)), context(account))).order
    assert (order.qty, order.purpose, order.ts_created_ns) == (
        Decimal(75),
        "entry",
        clock.time_ns(),
    )
    decision = g.check(intent(clock, price="8", qty=Decimal(76)), context(account))
    assert _rejected(decision, RejectCode.MAX_POSITION_NOTIONAL) == (
        "SUSHIUSDT: position notional would be 1008 > 1000"  # (50 + 76) × 8
    )


def test_an_explicit_qty_may_fill_the_leverage_cap_exactly(clock: ManualClock) -> None:
    # 3 × 10,000 of gross notional: 8,000 of BTC elsewhere and 250 SUSHI at 8 (2,000) already.
    # The SUSHI position itself is not "other" gross: (30,000 − 8,000) / 8 − 250 = 2,500 more.
    account = holding_account(clock, (BTC, Side.BUY, "0.2", "40000"), (SUSHI, Side.BUY, "250", "8"))
    g = gate(clock, LEVERAGE_BINDS)
    order = _approved(
        g.check(intent(clock, price="8", atr="0.01", qty=Decimal(2500)), context(account))
    ).order
    assert order.qty == Decimal(2500)
    decision = g.check(intent(clock, price="8", atr="0.01", qty=Decimal(2501)), context(account))
    assert _rejected(decision, RejectCode.MAX_LEVERAGE) == (
        "gross notional would be 30008.0 > 3 × equity 10000.0"  # 8,000 + (250 + 2,501) × 8
    )


# -- sized orders at the caps ------------------------------------------------------------------


def test_a_sized_order_is_shrunk_to_the_leverage_room_left_by_its_own_position(
    clock: ManualClock,
) -> None:
    # Long 2,000 SUSHI (15,224 of the 30,000 allowed): a buy may add 30,000 / 7.612 − 2,000 =
    # 1,941.1; a sell may go 2,000 through flat and on to the same gross, so the budget (2,500)
    # binds instead.
    account = holding_account(clock, (SUSHI, Side.BUY, "2000", "7.612"))
    g = gate(clock, LEVERAGE_BINDS)
    assert _approved(g.check(intent(clock), context(account))).order.qty == Decimal(1941)
    assert _approved(g.check(intent(clock, Side.SELL), context(account))).order.qty == Decimal(2500)


def test_a_sized_order_refused_at_a_cap_names_that_cap(clock: ManualClock) -> None:
    full = holding_account(clock, (SUSHI, Side.BUY, "131", "7.612"))
    decision = gate(clock).check(intent(clock), context(full))
    assert _rejected(decision, RejectCode.MAX_POSITION_NOTIONAL) == (
        "SUSHIUSDT: no room under max position notional 1000 for a BUY (position 131)"
    )
    elsewhere = holding_account(clock, (BTC, Side.BUY, "0.9", "33330"))  # 29,997 of 30,000
    decision = gate(clock, RiskConfig(max_position_notional=Decimal(100_000))).check(
        intent(clock), context(elsewhere)
    )
    assert _rejected(decision, RejectCode.MAX_LEVERAGE) == (
        "SUSHIUSDT: no room under max leverage 3 (other gross 29997.0, equity 10000.0) "
        "for a BUY (position 0)"
    )


def test_a_cap_that_leaves_less_than_the_minimum_notional_is_named(clock: ManualClock) -> None:
    # A cap of 2 leaves 115 AKRO (1.998 of notional): a whole contract, but under the
    # exchange's 5 minimum, and it is the cap's doing.
    decision = gate(clock, RiskConfig(max_position_notional=Decimal(2))).check(
        intent(clock, symbol=AKRO, price="0.01737", atr="0.0001"),
        context(flat_account(clock), AKRO),
    )
    assert _rejected(decision, RejectCode.MAX_POSITION_NOTIONAL) == (
        "AKROUSDT: no room under max position notional 2 for a BUY (position 0)"
    )


def test_a_cap_that_leaves_exactly_the_minimums_still_trades(clock: ManualClock) -> None:
    # A cap of 5 at a price of 5: one contract, the minimum quantity, worth the minimum 5.
    g = gate(clock, RiskConfig(max_position_notional=Decimal(5)))
    order = _approved(g.check(intent(clock, price="5"), context(flat_account(clock)))).order
    assert (order.qty, order.qty * Decimal(5)) == (Decimal(1), Decimal(5))


# -- the intent itself -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age_ns", "stale"),
    [
        (2_000_000_000, False),  # exactly the 2,000 ms allowed
        (2_000_999_999, False),  # still 2,000 whole milliseconds
        (2_001_000_000, True),
    ],
    ids=["2000ms", "2000.999ms", "2001ms"],
)
def test_an_intent_may_be_exactly_max_intent_age_old(
    clock: ManualClock, age_ns: int, stale: bool
) -> None:
    the_intent = intent(clock)
    clock.now_ns += age_ns
    decision = gate(clock).check(the_intent, context(flat_account(clock)))
    if stale:
        assert _rejected(decision, RejectCode.STALE_INTENT) == "decision is 2001 ms old"
    else:
        _approved(decision)


def test_equity_must_be_positive_but_any_positive_equity_is_judged(clock: ManualClock) -> None:
    g = gate(clock)
    message = _rejected(
        g.check(intent(clock), context(flat_account(clock, "-5"))), RejectCode.NO_EQUITY
    )
    assert message == "equity is -5"
    # One dollar of equity is an account: it is sized (to nothing, here), not refused as empty.
    decision = gate(clock).check(intent(clock), context(flat_account(clock, "1")))
    assert _rejected(decision, RejectCode.QTY_BELOW_MIN) == "SUSHIUSDT: qty 0 < minimum 1"


def test_confidence_zero_and_one_are_probabilities(clock: ManualClock) -> None:
    none = gate(clock).check(intent(clock, confidence=0.0), context(flat_account(clock)))
    assert _rejected(none, RejectCode.NO_EDGE) == (
        "confidence 0.000000 with payoff 1.5 gives Kelly -0.6667 <= 0"
    )
    sure = _approved(gate(clock).check(intent(clock, confidence=1.0), context(flat_account(clock))))
    assert sure.order.qty == Decimal(131)  # the position cap, not the intent, limits it


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 1.5}, "confidence 1.5 is not a probability"),
        ({"confidence": -0.1}, "confidence -0.1 is not a probability"),
        ({"confidence": float("inf")}, "confidence inf is not a probability"),
        ({"price": "0"}, "reference price 0 is not positive"),
        ({"price": "-7.612"}, "reference price -7.612 is not positive"),
        ({"price": "Infinity"}, "reference price Infinity is not positive"),
        ({"order_type": OrderType.LIMIT}, "a limit order needs a positive limit price"),
        (
            {"order_type": OrderType.LIMIT, "limit_price": Decimal(0)},
            "a limit order needs a positive limit price",
        ),
        (
            {"order_type": OrderType.LIMIT, "limit_price": Decimal(-1)},
            "a limit order needs a positive limit price",
        ),
        (
            {"order_type": OrderType.LIMIT, "limit_price": Decimal("NaN")},
            "a limit order needs a positive limit price",
        ),
        ({"qty": Decimal(0)}, "qty 0 is not positive"),
        ({"qty": Decimal(-3)}, "qty -3 is not positive"),
        ({"qty": Decimal("Infinity")}, "qty Infinity is not positive"),
    ],
    ids=[
        "confidence>1",
        "confidence<0",
        "confidence inf",
        "price 0",
        "price<0",
        "price inf",
        "limit without price",
        "limit 0",
        "limit<0",
        "limit NaN",
        "qty 0",
        "qty<0",
        "qty inf",
    ],
)
def test_a_malformed_intent_is_refused_with_what_is_wrong(
    clock: ManualClock, kwargs: dict[str, Any], message: str
) -> None:
    decision = gate(clock).check(intent(clock, **kwargs), context(flat_account(clock)))
    assert _rejected(decision, RejectCode.BAD_INTENT) == message


def test_a_limit_price_below_one_is_a_price(clock: ManualClock) -> None:
    the_intent = intent(
        clock,
        symbol=AKRO,
        price="0.01737",
        atr="0.0001",
        order_type=OrderType.LIMIT,
        limit_price=Decimal("0.01736"),
    )
    order = _approved(gate(clock).check(the_intent, context(flat_account(clock), AKRO))).order
    assert (order.type, order.price) == (OrderType.LIMIT, Decimal("0.01736"))


def test_a_market_intent_ignores_a_limit_price(clock: ManualClock) -> None:
    # Sized at the reference price (1,000 / 7.612 = 131), not at the stray limit of 5 (200).
    decision = gate(clock).check(
        intent(clock, limit_price=Decimal(5)), context(flat_account(clock))
    )
    order = _approved(decision).order
    assert (order.type, order.price, order.qty) == (OrderType.MARKET, None, Decimal(131))


# -- stop and take-profit prices ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "symbol", "price", "atr", "stop", "take_profit"),
    [
        # The stop would be exactly 0 (7.612 − 2 × 3.806): dropped, the target kept.
        (Side.BUY, SUSHI, "7.612", "3.806", None, "19.030"),
        # The target would be exactly 0 (7.5 − 3 × 2.5): dropped, the stop kept.
        (Side.SELL, SUSHI, "7.5", "2.5", "12.500", None),
        # Sub-unit prices are prices: both kept.
        (Side.BUY, AKRO, "0.01737", "0.0001", "0.01717", "0.01767"),
        (Side.SELL, AKRO, "0.01737", "0.0001", "0.01757", "0.01707"),
    ],
    ids=["long stop at 0", "short target at 0", "long below 1", "short below 1"],
)
def test_a_bracket_price_at_or_below_zero_is_dropped(
    clock: ManualClock,
    side: Side,
    symbol: str,
    price: str,
    atr: str,
    stop: str | None,
    take_profit: str | None,
) -> None:
    decision = gate(clock).check(
        intent(clock, side, symbol=symbol, price=price, atr=atr),
        context(flat_account(clock), symbol),
    )
    order = _approved(decision).order
    assert order.stop_price == (None if stop is None else Decimal(stop))
    assert order.take_profit == (None if take_profit is None else Decimal(take_profit))


# -- reduce-only -------------------------------------------------------------------------------


def test_a_reduce_only_exit_is_sealed_now_for_the_whole_position(clock: ManualClock) -> None:
    account = holding_account(clock, (BTC, Side.BUY, "0.005", "33330"))  # under one contract
    clock.advance(1)
    the_intent = intent(clock, Side.SELL, symbol=BTC, price="33330", reduce_only=True)
    g = gate(clock)
    order = _approved(g.check(the_intent, context(account, BTC))).order
    assert (order.side, order.qty, order.reduce_only, order.purpose) == (
        Side.SELL,
        Decimal("0.005"),
        True,
        "reduce",
    )
    assert (order.stop_price, order.take_profit) == (None, None)
    assert order.ts_created_ns == clock.time_ns()
    assert g.verify(order)


@pytest.mark.parametrize(("wanted", "qty"), [("20", "20"), ("80", "50")])
def test_a_reduce_only_qty_is_capped_by_the_position(
    clock: ManualClock, wanted: str, qty: str
) -> None:
    account = holding_account(clock, (SUSHI, Side.BUY, "50", "7.612"))
    the_intent = intent(clock, Side.SELL, reduce_only=True, qty=Decimal(wanted))
    assert _approved(gate(clock).check(the_intent, context(account))).order.qty == Decimal(qty)


def test_a_reduce_only_limit_keeps_its_price_on_the_tick(clock: ManualClock) -> None:
    account = holding_account(clock, (SUSHI, Side.BUY, "50", "7.612"))
    the_intent = intent(
        clock,
        Side.SELL,
        reduce_only=True,
        order_type=OrderType.LIMIT,
        limit_price=Decimal("7.61201"),
    )
    order = _approved(gate(clock).check(the_intent, context(account))).order
    assert (order.type, order.price, order.qty) == (OrderType.LIMIT, Decimal("7.613"), Decimal(50))


def test_a_reduce_only_exit_under_the_minimum_notional_still_passes(clock: ManualClock) -> None:
    # 100 AKRO is worth 1.74, under the 5 minimum: an entry that small is refused, but closing
    # it must stay possible (Binance exempts reduce-only orders from MIN_NOTIONAL).
    account = holding_account(clock, (AKRO, Side.BUY, "100", "0.01737"))
    the_intent = intent(clock, Side.SELL, symbol=AKRO, price="0.01737", reduce_only=True)
    order = _approved(gate(clock).check(the_intent, context(account, AKRO))).order
    assert (order.qty, order.reduce_only) == (Decimal(100), True)


def test_a_reduce_only_qty_under_one_step_is_refused(clock: ManualClock) -> None:
    account = holding_account(clock, (SUSHI, Side.BUY, "50", "7.612"))
    the_intent = intent(clock, Side.SELL, reduce_only=True, qty=Decimal("0.5"))
    decision = gate(clock).check(the_intent, context(account))
    assert _rejected(decision, RejectCode.QTY_BELOW_MIN) == "SUSHIUSDT: qty 0 < minimum 1"


def test_kill_exits_sell_a_long_under_one_contract(clock: ManualClock) -> None:
    account = holding_account(clock, (BTC, Side.BUY, "0.5", "33330"))
    (order,) = gate(clock).kill("stop", account)
    assert (order.side, order.qty, order.reduce_only, order.purpose) == (
        Side.SELL,
        Decimal("0.5"),
        True,
        "kill",
    )
    assert (order.model_version, order.stop_price, order.price) == ("", None, None)
    assert order.ts_created_ns == clock.time_ns()

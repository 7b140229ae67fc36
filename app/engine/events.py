"""Typed market-data events of Binance USD-M futures streams, decoded straight from JSON.

Each event is a :class:`msgspec.Struct` whose readable attribute names are mapped onto Binance's
one-letter keys, and tagged on the ``e`` key so one decoder dispatches on the event type without
decoding twice (see :mod:`app.engine.decode`).

Prices and quantities stay the exchange's decimal strings: exact, and the cheapest thing to decode
(no conversion at all); whoever needs numbers converts them (the order book to integers, features
to floats). Ids and times are ints; times are ``ts_*_ms`` milliseconds since the Unix epoch.

The structs are ``gc=False`` (they hold only strings, ints and lists of string pairs, so they cannot
be part of a reference cycle, and the collector need not track the millions that pass through) and
frozen (an event is a fact: consumers must not rewrite it under the feet of the others).

The engine is USD-M only. Spot payloads that carry the same fields decode as well (spot
``aggTrade``, ``kline``); spot shapes that lack USD-M fields (spot ``bookTicker`` has no ``e``,
spot ``depthUpdate`` has no ``pu``, spot partial depth is ``{lastUpdateId, bids, asks}``) and
events the engine does not know (``trade``, ``serverShutdown``) are rejected as malformed.
"""

from __future__ import annotations

from typing import TypeAlias

import msgspec
from msgspec import field

# A price level: (price, quantity), both decimal strings as sent.
Level = tuple[str, str]


class AggTrade(msgspec.Struct, tag_field="e", tag="aggTrade", frozen=True, gc=False):
    """``<symbol>@aggTrade``: trades aggregated by taker order and price."""

    ts_event_ms: int = field(name="E")
    symbol: str = field(name="s")
    agg_trade_id: int = field(name="a")
    price: str = field(name="p")
    qty: str = field(name="q")
    first_trade_id: int = field(name="f")
    last_trade_id: int = field(name="l")
    ts_trade_ms: int = field(name="T")
    # True when the buyer was the maker, i.e. the taker sold.
    buyer_is_maker: bool = field(name="m")


class DepthUpdate(msgspec.Struct, tag_field="e", tag="depthUpdate", frozen=True, gc=False):
    """``<symbol>@depth<N>@100ms`` (partial: the top N levels) and ``<symbol>@depth@100ms``
    (diff: changed levels, quantity ``"0"`` removes a level). USD-M sends both in this shape.

    ``first_update_id``, ``final_update_id``, ``prev_final_update_id`` are Binance's ``U``,
    ``u``, ``pu``.
    Bids come best (highest) first, asks best (lowest) first.
    """

    ts_event_ms: int = field(name="E")
    ts_trans_ms: int = field(name="T")
    symbol: str = field(name="s")
    first_update_id: int = field(name="U")
    final_update_id: int = field(name="u")
    prev_final_update_id: int = field(name="pu")
    bids: list[Level] = field(name="b")
    asks: list[Level] = field(name="a")


class BookTicker(msgspec.Struct, tag_field="e", tag="bookTicker", frozen=True, gc=False):
    """``<symbol>@bookTicker``: best bid and ask, pushed on every change of either.

    ``update_id`` (``u``) is the same sequence as a depth event's ``final_update_id``.
    """

    update_id: int = field(name="u")
    ts_event_ms: int = field(name="E")
    ts_trans_ms: int = field(name="T")
    symbol: str = field(name="s")
    bid_price: str = field(name="b")
    bid_qty: str = field(name="B")
    ask_price: str = field(name="a")
    ask_qty: str = field(name="A")


class MarkPriceUpdate(msgspec.Struct, tag_field="e", tag="markPriceUpdate", frozen=True, gc=False):
    """``<symbol>@markPrice@1s``: mark and index price, funding rate and next funding time."""

    ts_event_ms: int = field(name="E")
    symbol: str = field(name="s")
    mark_price: str = field(name="p")
    index_price: str = field(name="i")
    # Only meaningful in the last hour before a settlement; Binance always sends it.
    est_settle_price: str = field(name="P")
    funding_rate: str = field(name="r")
    ts_next_funding_ms: int = field(name="T")


class KlineBar(msgspec.Struct, frozen=True, gc=False):
    """The candle inside a :class:`Kline` event (Binance's ``k`` object)."""

    ts_open_ms: int = field(name="t")
    ts_close_ms: int = field(name="T")
    symbol: str = field(name="s")
    interval: str = field(name="i")
    first_trade_id: int = field(name="f")
    last_trade_id: int = field(name="L")
    open: str = field(name="o")
    close: str = field(name="c")
    high: str = field(name="h")
    low: str = field(name="l")
    volume: str = field(name="v")
    trades: int = field(name="n")
    # True once the candle is final; until then it is updated in place.
    closed: bool = field(name="x")
    quote_volume: str = field(name="q")
    taker_buy_volume: str = field(name="V")
    taker_buy_quote_volume: str = field(name="Q")


class Kline(msgspec.Struct, tag_field="e", tag="kline", frozen=True, gc=False):
    """``<symbol>@kline_<interval>``: the current candle, pushed on every change."""

    ts_event_ms: int = field(name="E")
    symbol: str = field(name="s")
    bar: KlineBar = field(name="k")


Event: TypeAlias = AggTrade | DepthUpdate | BookTicker | MarkPriceUpdate | Kline
"""Any stream event; dispatch with ``type(event) is ...`` (cheapest) or ``match``."""

EVENT_TYPES: tuple[type[Event], ...] = (AggTrade, DepthUpdate, BookTicker, MarkPriceUpdate, Kline)


class Frame(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream frame: ``{"stream": "<name>", "data": <event>}``."""

    stream: str
    data: Event


class StreamOnly(msgspec.Struct):
    """A combined-stream frame read for its stream name alone. Defined here, not in the compiled
    decode module: mypyc (1.15, the image's) cannot compile a class with a metaclass."""

    stream: str

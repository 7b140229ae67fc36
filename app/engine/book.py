"""Order books: exact, fast, and synced by Binance's documented USD-M procedure.

:class:`OrderBook` holds one symbol's levels. Each side is a ``dict`` from an integer price key to
the level as the exchange sent it (``(price, qty)`` decimal strings, so nothing is re-formatted)
plus a sorted ``list`` of the keys: ``bisect`` keeps it sorted in C, the best level is ``keys[0]``
and the top N is a slice. Bid keys are negated so both sides sort best-first. A key is the price
as an integer in units of ``10**-scale`` (default 8 decimals, as many as Binance ever sends), so it
is exact and needs no per-symbol tick size.

:class:`DiffDepthSync` wraps a book fed by ``<symbol>@depth@100ms`` diff events: it buffers events
until a REST snapshot arrives, drops events older than the snapshot, requires the first applied
event to bridge it (``U <= lastUpdateId <= u``) and every later one to continue the previous one
(``pu`` == previous ``u``); anything else raises :class:`~app.errors.BookGapError` and the book
waits for a new snapshot without losing the buffered events.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from app.binance.public import DepthSnapshot
from app.engine.events import BookTicker, DepthUpdate, Level
from app.errors import BookGapError, SnapshotError

DEFAULT_SCALE = 8
# Price strings → keys already parsed: the same few hundred prices recur all day, and a dict hit
# costs a tenth of parsing. Cleared when full, which only costs re-parsing.
PRICE_CACHE_MAX = 65_536
_POW10: tuple[int, ...] = tuple(int(10**i) for i in range(40))


def to_scaled(value: str, scale: int = DEFAULT_SCALE) -> int:
    """The decimal string ``value`` as an integer count of ``10**-scale``: exact.

    ``to_scaled("7.6110", 8) == 761_100_000``. Raises ``ValueError`` when ``value`` is not a
    decimal number or has non-zero digits beyond ``scale`` decimals.
    """
    dot = value.find(".")
    if dot < 0:
        return int(value) * _POW10[scale]
    frac = len(value) - dot - 1
    digits = int(value[:dot] + value[dot + 1 :])
    if frac <= scale:
        return digits * _POW10[scale - frac]
    whole, rest = divmod(digits, _POW10[frac - scale])
    if rest:
        raise ValueError(f"{value!r} has more than {scale} decimals")
    return whole


def from_scaled(value: int, scale: int = DEFAULT_SCALE) -> str:
    """The inverse of :func:`to_scaled`, without trailing zeros (``761_100_000`` → ``"7.611"``)."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), _POW10[scale])
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{scale}d}".rstrip("0")


def _is_zero(qty: str) -> bool:
    # A zero quantity is made only of "0" and "." ("0", "0.000"): exact, and no number is built.
    return not qty.strip("0.")


class _Side:
    """One side of a book, kept up to date level by level: nothing is rebuilt per message.

    ``levels`` maps a key to the level as sent and ``keys`` holds the keys sorted best first (bid
    keys are negated). ``top`` is the float quantities of the best ``top_n`` levels, the view the
    book features read on every depth event: it is patched in place when an update touches a
    level inside it, so reading it costs nothing and changing a level beyond it costs no float.
    ``top_n`` is 0 until someone asks for quantities.
    """

    __slots__ = ("keys", "levels", "prices", "sign", "top", "top_n")

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []
        # Price strings → signed keys already parsed: the same few hundred prices recur all day,
        # and a dict hit costs a tenth of parsing. One per side so the sign is parsed in too.
        self.prices: dict[str, int] = {}
        self.top: list[float] = []
        self.top_n = 0

    def key(self, price: str, scale: int) -> int:
        """The signed key of ``price``, parsed once and then taken from the cache."""
        prices = self.prices
        key = prices.get(price)
        if key is None:
            if len(prices) >= PRICE_CACHE_MAX:
                prices.clear()  # only costs re-parsing
            key = prices[price] = self.sign * to_scaled(price, scale)
        return key

    def load(self, levels: Iterable[Level], scale: int) -> None:
        """Replace every level (skipping zero quantities)."""
        self.levels = {self.key(lv[0], scale): lv for lv in levels if not _is_zero(lv[1])}
        self.keys = sorted(self.levels)
        self._fill_top()

    def _fill_top(self) -> None:
        # In place: a view handed out earlier stays the live one.
        levels = self.levels
        self.top[:] = [float(levels[k][1]) for k in self.keys[: self.top_n]]

    def apply(self, updates: Iterable[Level], scale: int) -> None:
        """Set or remove each level of ``updates`` (the per-message hot loop)."""
        levels = self.levels
        keys = self.keys
        prices = self.prices
        top = self.top
        n = self.top_n
        bisect = bisect_left  # a global is a dict lookup per use once compiled
        # Any on purpose: compiled, a typed tuple or int is unboxed to C values and boxed again
        # (a new object) each time it goes back into a dict or a list. As Any the event's own
        # tuple and the cache's own int are stored, and ``lv`` reads the fields without a call.
        stream: Iterable[Any] = updates
        key: Any
        for level in stream:
            lv: Level = level
            price = lv[0]
            key = prices.get(price)
            if key is None:
                key = self.key(price, scale)
            qty = lv[1]
            if not qty.strip("0."):  # _is_zero, inlined: this loop runs for every level
                # Removing a level we never had is normal (it was beyond the snapshot's depth).
                if levels.pop(key, None) is not None:
                    self._removed(key)
                continue
            # One hash lookup tells a new level from a changed one: the size grows only if new.
            size = len(levels)
            levels[key] = level
            if len(levels) != size:
                i: int = bisect(keys, key)
                keys.insert(i, key)
                if i < n:
                    top.insert(i, float(qty))
                    if len(top) > n:
                        top.pop()  # pushed out of the top n
            elif n:
                k: int = key  # unboxed for the comparison, which then allocates nothing
                if len(keys) <= n or k <= keys[n - 1]:  # a changed level inside the top n
                    # At most n comparisons in C: cheaper than a call to bisect for a top n.
                    top[keys.index(key)] = float(qty)

    def _removed(self, key: Any) -> None:
        """Take out of ``keys`` and the top view a key just popped from ``levels``."""
        keys = self.keys
        i: int = bisect_left(keys, key)
        del keys[i]
        n = self.top_n
        if i < n:
            top = self.top
            del top[i]
            if len(keys) >= n:  # the next level moves up into the top n
                top.append(float(self.levels[keys[n - 1]][1]))

    def qtys(self, n: int) -> Sequence[float]:
        """The live top-``n`` quantity view (tracking ``n`` from now on)."""
        if n != self.top_n:
            if n < 1:  # nothing to track; the slice semantics of the old rebuild, kept
                levels = self.levels
                return [float(levels[k][1]) for k in self.keys[:n]]
            self.top_n = n
            self._fill_top()
        return self.top

    def first(self, n: int) -> list[Level]:
        """The best ``n`` levels, best first, in a fresh list."""
        levels = self.levels
        return [levels[k] for k in self.keys[:n]]


class OrderBook:
    """One symbol's order book.

    ``synced`` is False until the book reflects the exchange (first partial event, or a diff book
    bridged to its snapshot) and again while a diff book waits for a new snapshot: do not trade
    on an unsynced book.
    """

    __slots__ = ("_asks", "_bids", "last_update_id", "scale", "symbol", "synced", "ts_event_ms")

    def __init__(self, symbol: str, scale: int = DEFAULT_SCALE) -> None:
        self.symbol = symbol
        self.scale = scale
        self.last_update_id = -1
        self.ts_event_ms = 0
        self.synced = False
        self._bids = _Side(-1)  # negated prices, ascending: best bid first
        self._asks = _Side(1)

    # -- updates -------------------------------------------------------------------------------

    def replace(
        self, bids: Iterable[Level], asks: Iterable[Level], last_update_id: int, ts_event_ms: int
    ) -> None:
        """Replace both sides, from a partial-depth event or a snapshot (skipping zero levels)."""
        # Through the price caches, so the diff events that follow a snapshot find their prices.
        self._bids.load(bids, self.scale)
        self._asks.load(asks, self.scale)
        self.last_update_id = last_update_id
        self.ts_event_ms = ts_event_ms

    def apply_partial(self, event: DepthUpdate) -> None:
        """A ``depth<N>`` event: it is the whole top of the book, so it replaces both sides."""
        self.replace(event.bids, event.asks, event.final_update_id, event.ts_event_ms)
        self.synced = True

    def apply_diff(self, event: DepthUpdate) -> None:
        """Apply a diff event's levels as they are; sequencing is :class:`DiffDepthSync`'s job."""
        self._bids.apply(event.bids, self.scale)
        self._asks.apply(event.asks, self.scale)
        self.last_update_id = event.final_update_id
        self.ts_event_ms = event.ts_event_ms

    def clear(self) -> None:
        """Forget every level (the book no longer reflects the exchange)."""
        self.replace((), (), -1, 0)
        self.synced = False

    # -- reads ---------------------------------------------------------------------------------

    def best_bid(self) -> Level | None:
        """The highest bid as ``(price, qty)`` decimal strings, or None when the side is empty."""
        side = self._bids
        return side.levels[side.keys[0]] if side.keys else None

    def best_ask(self) -> Level | None:
        """The lowest ask as ``(price, qty)`` decimal strings, or None when the side is empty."""
        side = self._asks
        return side.levels[side.keys[0]] if side.keys else None

    def best_bid_scaled(self) -> int | None:
        """The best bid price as an integer of ``10**-scale`` units (for arithmetic)."""
        keys = self._bids.keys
        return -keys[0] if keys else None

    def best_ask_scaled(self) -> int | None:
        """The best ask price as an integer of ``10**-scale`` units (for arithmetic)."""
        keys = self._asks.keys
        return keys[0] if keys else None

    def bids(self, n: int) -> list[Level]:
        """The best ``n`` bids, best first (a fresh list: the caller may keep it)."""
        return self._bids.first(n)

    def asks(self, n: int) -> list[Level]:
        """The best ``n`` asks, best first (a fresh list: the caller may keep it)."""
        return self._asks.first(n)

    def bid_qtys(self, n: int) -> Sequence[float]:
        """The quantities of the best ``n`` bids as floats, best first (for features).

        A live view the book keeps up to date, not a copy: read it, do not keep or change it
        (``list()`` it to keep it). The book tracks the last ``n`` asked for.
        """
        return self._bids.qtys(n)

    def ask_qtys(self, n: int) -> Sequence[float]:
        """The quantities of the best ``n`` asks as floats, best first: see :meth:`bid_qtys`."""
        return self._asks.qtys(n)

    def depth(self) -> tuple[int, int]:
        """How many bid and ask levels the book holds."""
        return len(self._bids.keys), len(self._asks.keys)

    def matches_ticker(self, ticker: BookTicker) -> bool:
        """True when the top of the book equals ``ticker``'s best bid and ask (prices and sizes)."""
        bid, ask = self.best_bid(), self.best_ask()
        if bid is None or ask is None:
            return False
        return (
            Decimal(bid[0]) == Decimal(ticker.bid_price)
            and Decimal(bid[1]) == Decimal(ticker.bid_qty)
            and Decimal(ask[0]) == Decimal(ticker.ask_price)
            and Decimal(ask[1]) == Decimal(ticker.ask_qty)
        )

    def snapshot(self, n: int) -> dict[str, object]:
        """A JSON-able view of the top ``n`` levels, for status and recording."""
        return {
            "symbol": self.symbol,
            "synced": self.synced,
            "last_update_id": self.last_update_id,
            "ts_event_ms": self.ts_event_ms,
            "bids": [list(lv) for lv in self.bids(n)],
            "asks": [list(lv) for lv in self.asks(n)],
        }


class DiffDepthSync:
    """Keeps an :class:`OrderBook` in sync from diff-depth events and REST snapshots.

    Feed it every diff event with :meth:`on_event`; whenever :attr:`needs_snapshot` is True fetch
    ``GET /fapi/v1/depth`` (off the hot path: events keep buffering meanwhile) and hand it to
    :meth:`apply_snapshot`.
    """

    _NEED_SNAPSHOT = 0
    _AWAITING_FIRST = 1  # snapshot loaded; waiting for the event that bridges it
    _SYNCED = 2

    __slots__ = ("_buffer", "_state", "book")

    def __init__(self, book: OrderBook, max_buffer: int = 10_000) -> None:
        self.book = book
        self._state = self._NEED_SNAPSHOT
        # Bounded: if snapshots keep failing, the oldest events go first, and a later snapshot is
        # newer than them anyway.
        self._buffer: deque[DepthUpdate] = deque(maxlen=max_buffer)

    @property
    def needs_snapshot(self) -> bool:
        """True while the book waits for a (new) REST snapshot."""
        return self._state == self._NEED_SNAPSHOT

    @property
    def buffered(self) -> int:
        """How many events wait for a snapshot."""
        return len(self._buffer)

    def reset(self) -> None:
        """Forget the book and the buffer (after a reconnect the stream restarts elsewhere)."""
        self._state = self._NEED_SNAPSHOT
        self._buffer.clear()
        self.book.clear()

    def on_event(self, event: DepthUpdate) -> bool:
        """Apply or buffer ``event``; True when the book was updated.

        Raises :class:`BookGapError` when ``event`` does not continue the book; the sync has then
        already reset itself, kept ``event`` for the next snapshot and needs a snapshot.
        """
        state = self._state
        book = self.book
        if state == self._SYNCED:
            if event.prev_final_update_id != book.last_update_id:
                last = book.last_update_id
                self.reset()
                self._buffer.append(event)
                raise BookGapError(
                    f"{book.symbol}: event pu={event.prev_final_update_id} does not continue "
                    f"u={last}"
                )
            book.apply_diff(event)
            return True
        if state == self._AWAITING_FIRST:
            snapshot_id = book.last_update_id
            if event.final_update_id < snapshot_id:
                return False  # already in the snapshot
            if event.first_update_id <= snapshot_id:
                book.apply_diff(event)
                book.synced = True
                self._state = self._SYNCED
                return True
            # The stream is already past the snapshot: it is too old to bridge.
            self._state = self._NEED_SNAPSHOT
            book.synced = False
        self._buffer.append(event)
        return False

    def apply_snapshot(self, snapshot: DepthSnapshot) -> bool:
        """Load ``snapshot`` and replay the buffered events onto it; True when in sync.

        False means the snapshot is newer than every buffered event: the next live event bridges
        it. Raises :class:`SnapshotError` when the buffered events start after the snapshot (it is
        too old; fetch another) and :class:`BookGapError` when they have a gap among themselves.
        Either way the events that may still be useful stay buffered.
        """
        book = self.book
        book.replace(snapshot.bids, snapshot.asks, snapshot.last_update_id, snapshot.ts_event_ms)
        book.synced = False
        self._state = self._AWAITING_FIRST
        pending = list(self._buffer)
        self._buffer.clear()
        for i, event in enumerate(pending):
            try:
                self.on_event(event)
            except BookGapError:
                self._buffer.extend(pending[i + 1 :])
                raise
        if self._state == self._NEED_SNAPSHOT:
            raise SnapshotError(
                f"{book.symbol}: snapshot lastUpdateId={snapshot.last_update_id} is older than "
                f"the buffered events (first U={self._buffer[0].first_update_id})"
            )
        return self._state == self._SYNCED

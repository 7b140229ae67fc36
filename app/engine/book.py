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

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable
from decimal import Decimal

from app.engine.events import BookTicker, DepthSnapshot, DepthUpdate, Level
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


def _key(price: str, scale: int, cache: dict[str, int]) -> int:
    key = cache.get(price)
    if key is None:
        key = cache[price] = to_scaled(price, scale)
    return key


def _apply(
    levels: dict[int, Level],
    keys: list[int],
    updates: Iterable[Level],
    sign: int,
    *,
    scale: int,
    cache: dict[str, int],
) -> None:
    """Set or remove each level of ``updates`` on one side (the per-message hot loop)."""
    for level in updates:
        price = level[0]
        key = cache.get(price)
        if key is None:
            if len(cache) >= PRICE_CACHE_MAX:
                cache.clear()
            key = cache[price] = to_scaled(price, scale)
        key *= sign
        if not level[1].strip("0."):  # _is_zero, inlined: this loop runs for every level
            # Removing a level we never had is normal (it was beyond the snapshot's depth).
            if levels.pop(key, None) is not None:
                del keys[bisect_left(keys, key)]
        else:
            if key not in levels:
                insort(keys, key)
            levels[key] = level


class OrderBook:
    """One symbol's order book.

    ``synced`` is False until the book reflects the exchange (first partial event, or a diff book
    bridged to its snapshot) and again while a diff book waits for a new snapshot: do not trade
    on an unsynced book.
    """

    __slots__ = (
        "_ask_keys",
        "_asks",
        "_bid_keys",
        "_bids",
        "_price_cache",
        "last_update_id",
        "scale",
        "symbol",
        "synced",
        "ts_event_ms",
    )

    def __init__(self, symbol: str, scale: int = DEFAULT_SCALE) -> None:
        self.symbol = symbol
        self.scale = scale
        self.last_update_id = -1
        self.ts_event_ms = 0
        self.synced = False
        self._bids: dict[int, Level] = {}
        self._asks: dict[int, Level] = {}
        self._bid_keys: list[int] = []  # negated prices, ascending: best bid first
        self._ask_keys: list[int] = []
        self._price_cache: dict[str, int] = {}

    # -- updates -------------------------------------------------------------------------------

    def replace(
        self, bids: Iterable[Level], asks: Iterable[Level], last_update_id: int, ts_event_ms: int
    ) -> None:
        """Replace both sides, from a partial-depth event or a snapshot (skipping zero levels)."""
        # Through the price cache, so the diff events that follow a snapshot find their prices.
        cache = self._price_cache
        if len(cache) >= PRICE_CACHE_MAX:
            cache.clear()
        self._bids = {-_key(lv[0], self.scale, cache): lv for lv in bids if not _is_zero(lv[1])}
        self._asks = {_key(lv[0], self.scale, cache): lv for lv in asks if not _is_zero(lv[1])}
        self._bid_keys = sorted(self._bids)
        self._ask_keys = sorted(self._asks)
        self.last_update_id = last_update_id
        self.ts_event_ms = ts_event_ms

    def apply_partial(self, event: DepthUpdate) -> None:
        """A ``depth<N>`` event: it is the whole top of the book, so it replaces both sides."""
        self.replace(event.bids, event.asks, event.final_update_id, event.ts_event_ms)
        self.synced = True

    def apply_diff(self, event: DepthUpdate) -> None:
        """Apply a diff event's levels as they are; sequencing is :class:`DiffDepthSync`'s job."""
        cache = self._price_cache
        _apply(self._bids, self._bid_keys, event.bids, -1, scale=self.scale, cache=cache)
        _apply(self._asks, self._ask_keys, event.asks, 1, scale=self.scale, cache=cache)
        self.last_update_id = event.final_update_id
        self.ts_event_ms = event.ts_event_ms

    def clear(self) -> None:
        """Forget every level (the book no longer reflects the exchange)."""
        self.replace((), (), -1, 0)
        self.synced = False

    # -- reads ---------------------------------------------------------------------------------

    def best_bid(self) -> Level | None:
        """The highest bid as ``(price, qty)`` decimal strings, or None when the side is empty."""
        return self._bids[self._bid_keys[0]] if self._bid_keys else None

    def best_ask(self) -> Level | None:
        """The lowest ask as ``(price, qty)`` decimal strings, or None when the side is empty."""
        return self._asks[self._ask_keys[0]] if self._ask_keys else None

    def best_bid_scaled(self) -> int | None:
        """The best bid price as an integer of ``10**-scale`` units (for arithmetic)."""
        return -self._bid_keys[0] if self._bid_keys else None

    def best_ask_scaled(self) -> int | None:
        """The best ask price as an integer of ``10**-scale`` units (for arithmetic)."""
        return self._ask_keys[0] if self._ask_keys else None

    def bids(self, n: int) -> list[Level]:
        """The best ``n`` bids, best first."""
        levels = self._bids
        return [levels[k] for k in self._bid_keys[:n]]

    def asks(self, n: int) -> list[Level]:
        """The best ``n`` asks, best first."""
        levels = self._asks
        return [levels[k] for k in self._ask_keys[:n]]

    def bid_qtys(self, n: int) -> list[float]:
        """The quantities of the best ``n`` bids as floats, best first (for features)."""
        levels = self._bids
        return [float(levels[k][1]) for k in self._bid_keys[:n]]

    def ask_qtys(self, n: int) -> list[float]:
        """The quantities of the best ``n`` asks as floats, best first (for features)."""
        levels = self._asks
        return [float(levels[k][1]) for k in self._ask_keys[:n]]

    def depth(self) -> tuple[int, int]:
        """How many bid and ask levels the book holds."""
        return len(self._bid_keys), len(self._ask_keys)

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

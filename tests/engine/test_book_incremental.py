"""The incremental order book against a naive one that rebuilds every view from scratch.

:class:`OrderBook` patches its sorted keys and its top-N quantity view in place on each diff event
(see ``_Side`` in :mod:`app.engine.book`). :class:`NaiveBook` keeps a plain dict per side keyed by
``Decimal`` and sorts on every read, sharing no code with it. Every view the engine reads (best
levels, scaled best prices, depth, the top ``n`` levels, the top ``n`` quantities the book
features take) must agree after every update: over the reference recording, over seeded random
sequences, and over sequences Hypothesis generates and shrinks. The same tests run compiled and
as Python (``APPLIANCE_NATIVE=0``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from decimal import Decimal

import pytest

from app.engine.book import OrderBook
from app.engine.decode import decode_frame
from app.engine.events import DepthUpdate, Level
from tests.engine.reference import recorded_frames, recorded_snapshots

ALL = 1_000_000  # "every level"


class NaiveBook:
    """The obvious book: a dict per side, sorted on every read."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Level] = {}
        self.asks: dict[Decimal, Level] = {}

    def replace(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        # Zero levels are skipped, not applied: a snapshot or partial event lists no removals.
        self.bids = {Decimal(p): (p, q) for p, q in bids if Decimal(q) != 0}
        self.asks = {Decimal(p): (p, q) for p, q in asks if Decimal(q) != 0}

    def apply(self, bids: Iterable[Level], asks: Iterable[Level]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = (price, qty)

    def levels(self, bid: bool, n: int) -> list[Level]:
        side = self.bids if bid else self.asks
        return [side[p] for p in sorted(side, reverse=bid)][:n]

    def qtys(self, bid: bool, n: int) -> list[float]:
        return [float(q) for _, q in self.levels(bid, n)]

    def best_scaled(self, bid: bool) -> int | None:
        side = self.bids if bid else self.asks
        if not side:
            return None
        return int((max(side) if bid else min(side)).scaleb(8))


def assert_same(book: OrderBook, ref: NaiveBook, n: int) -> None:
    """Every view agrees; ``n`` is the depth the book tracks (only that one is asked for, so
    the book keeps patching the view it has rather than rebuilding it)."""
    assert book.bids(ALL) == ref.levels(True, ALL)
    assert book.asks(ALL) == ref.levels(False, ALL)
    for k in (1, 2, 5):
        assert book.bids(k) == ref.levels(True, k)
        assert book.asks(k) == ref.levels(False, k)
    assert book.best_bid() == (ref.levels(True, 1) or [None])[0]
    assert book.best_ask() == (ref.levels(False, 1) or [None])[0]
    assert book.best_bid_scaled() == ref.best_scaled(True)
    assert book.best_ask_scaled() == ref.best_scaled(False)
    assert book.depth() == (len(ref.bids), len(ref.asks))
    assert list(book.bid_qtys(n)) == ref.qtys(True, n)
    assert list(book.ask_qtys(n)) == ref.qtys(False, n)


# -- the reference recording -------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 20])
def test_recording_every_view_matches_a_naive_book_after_every_event(n: int) -> None:
    """Each symbol's snapshot, then every diff event that continues it, as the sync applies
    them (the sequencing itself is tested in test_book.py)."""
    events = [e for e in (decode_frame(r.raw).data for r in recorded_frames())]
    checked = 0
    for symbol, snap in recorded_snapshots().items():
        book, ref = OrderBook(symbol), NaiveBook()
        snapshot = snap.snapshot
        book.replace(snapshot.bids, snapshot.asks, snapshot.last_update_id, 0)
        ref.replace(snapshot.bids, snapshot.asks)
        bid_view, ask_view = book.bid_qtys(n), book.ask_qtys(n)
        assert_same(book, ref, n)
        for event in events:
            if type(event) is not DepthUpdate or event.symbol != symbol:
                continue
            if event.final_update_id < snapshot.last_update_id:
                continue  # already in the snapshot
            book.apply_diff(event)
            ref.apply(event.bids, event.asks)
            assert_same(book, ref, n)
            # The views handed out before are the live ones, not stale copies.
            assert list(bid_view) == ref.qtys(True, n)
            assert list(ask_view) == ref.qtys(False, n)
            checked += 1
    assert checked > 700


def test_recording_top_levels_change_often_enough_to_test_the_patching() -> None:
    """A guard on the test above: the recording must move the top 5, or it proves little."""
    snapshots = recorded_snapshots()
    ref = {symbol: NaiveBook() for symbol in snapshots}
    for symbol, snap in snapshots.items():
        ref[symbol].replace(snap.snapshot.bids, snap.snapshot.asks)
    moved = 0
    for rec in recorded_frames():
        event = decode_frame(rec.raw).data
        if type(event) is DepthUpdate and event.symbol in ref:
            book = ref[event.symbol]
            before = book.levels(True, 5), book.levels(False, 5)
            book.apply(event.bids, event.asks)
            moved += (book.levels(True, 5), book.levels(False, 5)) != before
    assert moved > 300


# -- generated sequences -----------------------------------------------------------------------

# A few prices, some spelled two ways (the book must treat "10.5" and "10.50" as one level and
# keep the spelling it was last sent), so that levels collide, move into and out of the top N.
PRICES = [f"{Decimal(p) / 4}" for p in range(36, 52)] + ["10.50", "11.0", "9.000", "12.2500"]
QTYS = ["0", "0.000", "00", "0.", "1", "2.5", "0.5", "10", "3.000", "0.001", "7", "0.10"]

# An operation: ("diff", 0, bids, asks), ("replace", 0, bids, asks) or ("read", n, [], []), the
# last making ``n`` the depth the book tracks from then on.
Op = tuple[str, int, list[Level], list[Level]]


def run_ops(ops: Sequence[Op], n: int) -> None:
    book, ref = OrderBook("TESTUSDT"), NaiveBook()
    bid_view, ask_view = book.bid_qtys(n), book.ask_qtys(n)
    for kind, depth, bids, asks in ops:
        if kind == "read":
            n = depth
            bid_view, ask_view = book.bid_qtys(n), book.ask_qtys(n)
        elif kind == "replace":
            book.replace(bids, asks, 1, 0)
            ref.replace(bids, asks)
        else:
            book.apply_diff(DepthUpdate(0, 0, "TESTUSDT", 1, 1, 0, bids, asks))
            ref.apply(bids, asks)
        # n < 1 tracks nothing and gives what the old rebuild gave (a slice of no levels or all
        # but the last), checked by assert_same; n >= 1 hands out live views.
        assert_same(book, ref, n)
        if n >= 1:
            assert list(bid_view) == ref.qtys(True, n)
            assert list(ask_view) == ref.qtys(False, n)


def random_ops(rng: random.Random, count: int) -> list[Op]:
    def levels() -> list[Level]:
        return [(rng.choice(PRICES), rng.choice(QTYS)) for _ in range(rng.randint(0, 8))]

    ops: list[Op] = []
    for _ in range(count):
        kind = rng.choices(("diff", "replace", "read"), weights=(20, 1, 2))[0]
        if kind == "read":
            ops.append((kind, rng.randint(-1, 8), [], []))
        else:
            ops.append((kind, 0, levels(), levels()))
    return ops


@pytest.mark.parametrize("seed", range(40))
def test_seeded_random_sequences_match_a_naive_book(seed: int) -> None:
    rng = random.Random(seed)
    run_ops(random_ops(rng, 150), rng.randint(1, 6))


def test_hypothesis_sequences_match_a_naive_book() -> None:
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    level = st.tuples(st.sampled_from(PRICES), st.sampled_from(QTYS))
    side = st.lists(level, max_size=8)
    op = st.one_of(
        st.tuples(st.just("diff"), st.just(0), side, side),
        st.tuples(st.just("replace"), st.just(0), side, side),
        st.tuples(st.just("read"), st.integers(-1, 8), st.just([]), st.just([])),
    )

    @hypothesis.settings(max_examples=300, deadline=None, database=None)
    @hypothesis.given(st.lists(op, max_size=60), st.integers(1, 8))
    def check(ops: list[Op], n: int) -> None:
        run_ops(ops, n)

    check()

"""The decision loop's per-event path: one decision per closing event, however many bars it
closes; the window the model reads is the trader's own buffer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.clock import ManualClock
from app.engine.decode import decode_event
from app.engine.events import Event
from app.engine.inference import LoadedModel, load_model
from app.models.sandbox import Sandbox, make_sandbox
from tests.engine.graph import graph_run

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default.onnx"
SYMBOL = "BTCUSDT"
T0_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model(DEFAULT_MODEL)


def _events(ts_ms: int, price: float) -> list[Event]:
    """One of each stream the default model's features read, at ``ts_ms``."""
    p, bid, ask = f"{price:.2f}", f"{price - 0.1:.2f}", f"{price + 0.1:.2f}"
    return [
        decode_event(json.dumps(e))
        for e in (
            {"e": "markPriceUpdate", "E": ts_ms, "s": SYMBOL, "p": p, "i": p, "P": p,
             "r": "0.00010000", "T": ts_ms + 28_800_000},
            {"e": "bookTicker", "u": ts_ms, "s": SYMBOL, "b": bid, "B": "1.5", "a": ask,
             "A": "2.5", "T": ts_ms, "E": ts_ms},
            {"e": "depthUpdate", "E": ts_ms, "T": ts_ms, "s": SYMBOL, "U": ts_ms, "u": ts_ms,
             "pu": ts_ms - 1, "b": [[bid, "3"]], "a": [[ask, "1"]]},
            {"e": "aggTrade", "E": ts_ms, "s": SYMBOL, "a": ts_ms, "p": p, "q": "0.5",
             "f": 1, "l": 1, "T": ts_ms, "m": False},
        )
    ]  # fmt: skip


def _feed(box: Sandbox, clock: ManualClock, ts_ms: int, price: float) -> None:
    for ev in _events(ts_ms, price):
        clock.now_ns = ts_ms * 1_000_000
        box.trader.on_event(clock.now_ns, ev)


def _warm(model: LoadedModel) -> tuple[Sandbox, ManualClock, int]:
    """A trader whose window is full: one second of events per bar until it decides."""
    clock = ManualClock(T0_MS * 1_000_000)
    box = make_sandbox(model, (SYMBOL,), clock, {}, {})
    ts = T0_MS + 100
    for i in range(120):
        _feed(box, clock, ts, 100.0 + (i % 7) * 0.05)
        ts += 1000
    assert box.trader.stats.decisions > 0
    return box, clock, ts


def test_one_decision_per_bar_close(model: LoadedModel) -> None:
    box, clock, ts = _warm(model)
    before = box.trader.stats.decisions
    _feed(box, clock, ts, 100.2)  # closes the previous second's bar
    assert box.trader.stats.decisions == before + 1
    _feed(box, clock, ts + 10, 100.3)  # the same bar: no decision
    assert box.trader.stats.decisions == before + 1


def test_a_quiet_spell_closes_every_bar_but_decides_once(model: LoadedModel) -> None:
    box, clock, ts = _warm(model)
    state = box.trader._state[SYMBOL]
    window = state.window.view()
    before = box.trader.stats.decisions
    _feed(box, clock, ts + 5_000, 101.0)  # five bars closed by one event
    assert box.trader.stats.decisions == before + 1
    last = box.trader.last_signal(SYMBOL)
    assert last is not None
    # The decision is stamped at the latest close, and made on the window as it is now.
    assert last.ts_ms == (ts + 5_000) - (ts + 5_000) % 1000
    assert last.prob == pytest.approx(graph_run(model, window), abs=1e-6)
    assert not np.isnan(window).any()


def test_the_bound_window_is_what_the_model_reads(model: LoadedModel) -> None:
    box, clock, ts = _warm(model)
    state = box.trader._state[SYMBOL]
    rows = state.window.view()
    assert state.predict() == pytest.approx(graph_run(model, rows), abs=1e-7)
    _feed(box, clock, ts, 99.0)
    assert state.predict() == pytest.approx(graph_run(model, rows), abs=1e-7)

"""What ``model.list`` tells the panel beyond the store's pointer: each model's validation report
(kept when it is added, checked in the background for models stored without one) and how often a
shadow model makes the active model's call."""

from __future__ import annotations

import asyncio
from pathlib import Path

from app import contract
from app.clock import ManualClock
from app.engine.inference import InferenceSlot, load_model
from app.models.agreement import MINUTE_NS, Agreement
from app.models.commands import model_commands
from app.models.store import ModelStore
from app.models.validate import ValidationLimits
from tests.handlers import invoke

DEFAULT = Path(__file__).resolve().parents[2] / "models" / "default.onnx"
LIMITS = ValidationLimits(latency_runs=20)


def test_agreement_counts_calls_per_minute() -> None:
    tally = Agreement()
    tally.add(10, "long", "long")
    tally.add(20, "long", "")
    tally.add(MINUTE_NS + 5, "", "")
    tally.add(MINUTE_NS + 6, "short", "long")
    assert tally.totals() == {"compared": 4, "agreed": 2, "signalled": 3, "signalled_agreed": 1}
    assert tally.series() == [
        contract.AgreementPoint(ts_ns=0, compared=2, agreed=1),
        contract.AgreementPoint(ts_ns=MINUTE_NS, compared=2, agreed=1),
    ]


def test_agreement_series_is_bounded_and_merged() -> None:
    tally = Agreement(max_spans=10)
    for minute in range(25):
        tally.add(minute * MINUTE_NS, "long", "long" if minute % 2 else "")
    series = tally.series(max_points=4)
    assert len(series) == 4  # the last 10 minutes, three per point
    assert series[0].ts_ns == 15 * MINUTE_NS
    assert sum(p.compared for p in series) == 10
    assert tally.compared == 25  # the totals cover the whole run


async def test_reports_are_kept_and_stored_models_are_checked(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", ManualClock())
    active = load_model(DEFAULT)
    store.ensure_active(DEFAULT, active.contract.model_version)  # stored without a report
    handlers = model_commands(store, InferenceSlot(active), limits=LIMITS, check_stored=True)
    first = await invoke(handlers, "model.list")
    assert first["models"][0]["validation"] is None
    assert first["validating"] == 1  # the background check has started
    for _ in range(600):
        if store.state.models[active.sha256].validation is not None:
            break
        await asyncio.sleep(0.1)
    listing = await invoke(handlers, "model.list")
    report = listing["models"][0]["validation"]
    assert report["ok"] and report["latency_us"] > 0 and report["budget_us"] > 0
    assert report["model"]["features"] == list(active.contract.features)
    assert report["model"]["golden_cases"] == len(active.contract.golden.cases) > 0
    assert report["model"]["path"] == str(store.path(active.sha256))
    assert listing["validating"] == 0
    # Kept across a restart: the store's file holds it.
    again = ModelStore(tmp_path / "models", ManualClock())
    assert again.state.models[active.sha256].validation == report


async def test_without_check_stored_nothing_runs_in_the_background(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", ManualClock())
    active = load_model(DEFAULT)
    store.ensure_active(DEFAULT, active.contract.model_version)
    handlers = model_commands(store, InferenceSlot(active), limits=LIMITS)
    listing = await invoke(handlers, "model.list")
    assert listing["validating"] == 0 and listing["models"][0]["validation"] is None
    assert listing["agreement"] == []

"""The engine's collector settings: rarer generation-0 passes, start-up objects frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.engine import gcpolicy


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tune_and_settle() -> None:
    _, gen1, gen2 = gc.get_threshold()
    gcpolicy.tune()
    assert gc.get_threshold() == (gcpolicy.GEN0_THRESHOLD, gen1, gen2)
    survivor = [object()]
    gcpolicy.settle()
    assert gc.get_freeze_count() > 0
    assert gc.is_tracked(survivor)  # frozen, not untracked: it is simply never walked again

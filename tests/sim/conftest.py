"""Simulator-test fixtures: one process shared by a module where tests only read from it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.simproc import SimHandle, running_sim


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimHandle]:
    """A seed-7 simulator for tests that do not change faults."""
    with running_sim("--seed", "7", "--funding-interval-s", "60") as handle:
        yield handle

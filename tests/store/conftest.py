"""Collect garbage after each store test, so that a resource a test leaves open is reported
against that test (Python 3.13 warns about unclosed sockets and databases only when they are
collected, which otherwise happens during whichever test comes next)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collect_after_each_test() -> Iterator[None]:
    yield
    gc.collect()

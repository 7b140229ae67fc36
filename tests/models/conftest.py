"""Fixtures for every test under tests/models."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_mutation_stats_in_children(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep mutmut's stats mode out of the model validator's child process.

    While mutmut collects which tests reach which functions, it sets ``MUTANT_UNDER_TEST=stats``
    in this process's environment, and a trampoline in that mode reads mutmut's configuration
    from the working directory. The validator's child inherits the environment but runs in an
    empty directory of its own (the sandbox), so it would fail there; and the hits it recorded
    would die with it anyway. This process keeps the mode (mutmut also holds it process-locally);
    the child runs the original code. A mutant's name, when one is under test, still reaches
    the child, which then runs that mutant.
    """
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        monkeypatch.delenv("MUTANT_UNDER_TEST")

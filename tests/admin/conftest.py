"""Fixtures for the panel's tests: a panel process with a password set, and a logged-in client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .panelproc import PanelHandle, login, running_panel, set_password


@pytest.fixture
def fresh_panel(tmp_path: Path) -> Iterator[PanelHandle]:
    """A panel with no password yet (no engine behind it)."""
    with running_panel(tmp_path / "data") as handle:
        yield handle


@pytest.fixture
def panel(tmp_path: Path) -> Iterator[PanelHandle]:
    """A panel whose password is set (no engine behind it)."""
    data = tmp_path / "data"
    data.mkdir()
    set_password(data)
    with running_panel(data) as handle:
        yield handle


@pytest.fixture
def client(panel: PanelHandle) -> Iterator[httpx.Client]:
    """A logged-in client of ``panel``."""
    with panel.client() as c:
        response = login(c)
        assert response.status_code == 303, response.text[:500]
        yield c

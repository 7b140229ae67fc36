"""The model store: content addressing, the atomic pointer, promotion, rollback, deletion rules."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from app.clock import ManualClock
from app.errors import ModelError
from app.models.store import ModelStore, StoreState
from app.store.files import sha256_file
from tests.models.support import DEFAULT, variant


def test_add_is_content_addressed_and_read_only(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models", ManualClock())
    entry = store.add(DEFAULT, "default")
    assert entry.sha256 == sha256_file(DEFAULT)
    path = store.path(entry.sha256)
    assert path.read_bytes() == DEFAULT.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.add(DEFAULT, "again") == entry  # same bytes: nothing new
    with pytest.raises(ModelError, match="changed after validation"):
        store.add(variant(tmp_path, "v"), "v", sha256=entry.sha256)


def test_pointer_survives_reopen_and_switches(tmp_path: Path) -> None:
    clock = ManualClock()
    root = tmp_path / "models"
    store = ModelStore(root, clock)
    a = store.ensure_active(DEFAULT, "default")
    b = store.add(variant(tmp_path, "b"), "b").sha256
    c = store.add(variant(tmp_path, "c", 0.6, 0.4), "c").sha256
    store.set_shadow(b)
    with pytest.raises(ModelError, match="shadow model"):
        store.delete(b)
    with pytest.raises(ModelError, match="active model"):
        store.delete(a)
    store.promote()
    assert (store.state.active, store.state.shadow, store.state.previous) == (b, None, (a,))
    store.activate(c)
    assert store.state.previous == (a, b)
    store.rollback()
    assert store.state.active == b and store.state.previous == (a,)
    store.rollback()
    assert store.state.active == a and store.state.previous == ()
    with pytest.raises(ModelError, match="nothing to roll back"):
        store.rollback()
    reopened = ModelStore(root, clock)
    assert reopened.state.active == a
    assert [h["action"] for h in reopened.state.history] == [
        "add", "activate", "add", "add", "shadow", "promote", "activate", "rollback", "rollback",
    ]  # fmt: skip
    assert StoreState.from_json(reopened.state.to_json()) == reopened.state
    assert not list(root.glob(".*.tmp"))
    store.delete(c)
    assert not store.path(c).exists() and c not in store.state.models
    assert store.resolve(a[:10]) == a
    with pytest.raises(ModelError, match="no model"):
        store.resolve("deadbeef00")

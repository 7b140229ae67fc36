"""Fixtures shared by every test directory. Keep it small: add yours in a subdirectory conftest."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.simproc import SimHandle, free_port, running_sim

__all__ = ["free_port"]


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    """A simulator process (seed 7, 60 s funding interval) on a free loopback port."""
    with running_sim("--seed", "7", "--funding-interval-s", "60") as handle:
        yield handle


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every model onnxruntime is asked to build a session for, as the bytes it was given."""
    from app.engine import inference

    built: list[bytes] = []
    real = inference.ort.InferenceSession

    def counting(data: bytes, *args: object, **kwargs: object) -> object:
        built.append(data)
        return real(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(inference.ort, "InferenceSession", counting)
    return built

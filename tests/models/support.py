"""Shared builders for the models tests (no tests of its own)."""

from __future__ import annotations

from pathlib import Path

from app.engine.onnxproto import read_header, with_metadata
from tests.paths import REFERENCE as SHARED

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "models" / "default.onnx"
REFERENCE = SHARED / "market-data"


def variant(tmp: Path, name: str, long_t: float = 0.55, short_t: float = 0.45) -> Path:
    """The default graph under other thresholds: a second valid model with its own digest."""
    data = DEFAULT.read_bytes()
    meta = dict(read_header(data).metadata)
    meta["model_version"] = name
    meta["long_threshold"] = repr(long_t)
    meta["short_threshold"] = repr(short_t)
    path = tmp / f"{name}.onnx"
    path.write_bytes(with_metadata(data, meta))
    return path

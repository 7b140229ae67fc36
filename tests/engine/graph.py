"""The model's graph run plainly (``session.run``), the reference the fast paths are held to."""

from __future__ import annotations

import numpy as np

from app.engine.inference import LoadedModel


def graph_input(model: LoadedModel, window: np.ndarray) -> np.ndarray:
    """What the graph itself takes for a raw window: float32, the declared scaler applied."""
    x = window.astype(np.float32)
    sc = model.contract.scaler
    if sc is not None:
        mean = np.asarray(sc.mean, dtype=np.float32)
        x = (x - mean) * (1.0 / np.asarray(sc.scale)).astype(np.float32)
        if sc.clip is not None:
            x = np.clip(x, -sc.clip, sc.clip)
    return x.reshape(model.contract.input_shape)


def graph_run(model: LoadedModel, graph_rows: np.ndarray) -> float:
    """The graph on rows as a window holds them (already scaled), through ``session.run``."""
    c = model.contract
    x = np.ascontiguousarray(graph_rows, dtype=np.float32).reshape(c.input_shape)
    out = model.session.run([c.output_name], {c.input_name: x})[0]
    return float(out.reshape(-1)[0])

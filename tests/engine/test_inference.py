"""Inference on the hot path (IO binding vs plain run), the window buffer, and hot swaps."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from app.engine.inference import InferenceSlot, LoadedModel, WindowBuffer, load_model
from app.errors import ModelError
from tests.engine.graph import graph_input, graph_run

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "default.onnx"


@pytest.fixture(scope="module")
def default_model() -> LoadedModel:
    return load_model(DEFAULT_MODEL)


def realistic_windows(model: LoadedModel, n: int, seed: int) -> list[np.ndarray]:
    """Golden inputs with noise: values in the ranges the features really take."""
    rng = np.random.default_rng(seed)
    bases = [np.asarray(c.input) for c in model.contract.golden.cases]
    return [
        bases[i % len(bases)] * (1.0 + 0.05 * rng.standard_normal(bases[0].shape)) for i in range(n)
    ]


def test_predict_matches_plain_run(default_model: LoadedModel) -> None:
    c = default_model.contract
    assert c.scaler is not None and c.scaler.clip == 5.0  # the default model declares both
    for w in realistic_windows(default_model, 50, seed=3):
        plain = default_model.session.run(
            [c.output_name], {c.input_name: graph_input(default_model, w)}
        )[0]
        assert default_model.predict(w) == float(plain.reshape(-1)[0])


def test_predict_sees_each_new_window(default_model: LoadedModel) -> None:
    # The bound input shares memory with the buffer predict writes: each call sees its window.
    windows = realistic_windows(default_model, 3, seed=5)
    outs = [default_model.predict(w) for w in windows]
    assert len(set(outs)) == 3
    assert [default_model.predict(w) for w in windows] == outs


def test_predict_accepts_float32_and_rejects_wrong_shape(default_model: LoadedModel) -> None:
    w = realistic_windows(default_model, 1, seed=8)[0]
    assert default_model.predict(w.astype(np.float32)) == default_model.predict(w)
    with pytest.raises(ValueError, match=r"window shape \(15, 10\) != \(16, 10\)"):
        default_model.predict(w[1:])


def test_signal_uses_the_declared_thresholds(default_model: LoadedModel) -> None:
    c = default_model.contract
    assert default_model.signal(c.long_threshold)[0] == "long"
    assert default_model.signal(c.short_threshold)[0] == "short"
    assert default_model.signal((c.long_threshold + c.short_threshold) / 2)[0] is None


def test_session_runs_on_one_thread(default_model: LoadedModel) -> None:
    opts = default_model.session.get_session_options()
    assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (1, 1)


# -- WindowBuffer ---------------------------------------------------------------------------------


def test_window_buffer_gives_the_last_rows_oldest_first() -> None:
    buf = WindowBuffer(3, 2)
    ready = [buf.push([float(i), float(10 * i)]) for i in range(7)]
    assert ready == [False, False, True, True, True, True, True]
    view = buf.view()
    assert view.flags["C_CONTIGUOUS"]
    assert view.tolist() == [[4.0, 40.0], [5.0, 50.0], [6.0, 60.0]]


def test_window_buffer_waits_for_complete_rows() -> None:
    buf = WindowBuffer(2, 2)
    assert not buf.push([1.0, None])
    assert not buf.push([2.0, 2.0])
    assert buf.push([3.0, 3.0])
    assert not np.isnan(buf.view()).any()
    assert not buf.push([None, 4.0])
    buf.clear()
    assert not buf.ready
    with pytest.raises(ValueError, match="row has 1 values"):
        buf.push([1.0])


def test_window_buffer_feeds_predict(default_model: LoadedModel) -> None:
    case = default_model.contract.golden.cases[0]
    buf = WindowBuffer(*default_model.contract.window_shape)
    for row in case.input:
        buf.push(list(row))
    assert buf.ready
    assert default_model.predict(buf.view()) == pytest.approx(
        case.output, abs=default_model.contract.golden.tolerance
    )


# -- hot swap -------------------------------------------------------------------------------------


async def test_swap_replaces_the_model(default_model: LoadedModel, tmp_path: Path) -> None:
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(DEFAULT_MODEL.read_bytes())
    slot = InferenceSlot(default_model, symbols=("btcusdt", "ethusdt"))
    new = await asyncio.wait_for(slot.swap(copy), 30)
    assert slot.model is new
    assert new is not default_model
    assert new.path == copy
    assert slot.generation == 1


async def test_refused_swap_keeps_the_running_model(
    default_model: LoadedModel, tmp_path: Path
) -> None:
    from app.engine.model_contract import to_metadata
    from tests.engine.test_model_load import tiny_contract, tiny_model_bytes

    # Declares a 4x3 window, but the graph takes 5 rows: the shape does not fit.
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny_model_bytes(to_metadata(tiny_contract()), input_shape=(1, 5, 3)))
    slot = InferenceSlot(default_model, symbols=("btcusdt",))
    with pytest.raises(ModelError, match="input shape mismatch") as info:
        await asyncio.wait_for(slot.swap(bad), 30)
    assert str(bad) in str(info.value)
    assert slot.model is default_model
    assert slot.generation == 0
    w = realistic_windows(default_model, 1, seed=1)[0]
    assert np.isfinite(slot.model.predict(w))


async def test_swap_refuses_a_model_that_does_not_serve_every_symbol(
    default_model: LoadedModel, tmp_path: Path
) -> None:
    from tests.engine.test_model_load import with_metadata

    btc_only = tmp_path / "btc.onnx"
    btc_only.write_bytes(with_metadata(DEFAULT_MODEL, symbols="btcusdt"))
    slot = InferenceSlot(default_model, symbols=("btcusdt", "ethusdt"))
    with pytest.raises(ModelError) as info:
        await asyncio.wait_for(slot.swap(btc_only), 30)
    assert info.value.problems == (
        "the model serves btcusdt only; configured symbols ethusdt would have no model",
    )
    assert slot.model is default_model
    # The same file suits an engine that trades btcusdt alone.
    solo = InferenceSlot(default_model, symbols=("btcusdt",))
    assert (await asyncio.wait_for(solo.swap(btc_only), 30)).contract.symbols == ("btcusdt",)


async def test_swap_applies_the_callers_own_check(
    default_model: LoadedModel, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(DEFAULT_MODEL.read_bytes())
    slot = InferenceSlot(
        default_model, check=lambda c: [f"window {c.window} too long"] if c.window > 8 else []
    )
    with pytest.raises(ModelError, match="window 16 too long"):
        await asyncio.wait_for(slot.swap(copy), 30)
    assert slot.model is default_model


async def test_market_data_keeps_flowing_while_a_model_loads(default_model: LoadedModel) -> None:
    """The load runs in a worker thread: the loop handles events (with the old model) meanwhile."""
    loading = threading.Event()
    release = threading.Event()
    replacement = load_model(DEFAULT_MODEL)

    def slow_loader(path: Path) -> LoadedModel:
        loading.set()
        assert release.wait(30), "test did not release the loader"
        return replacement

    slot = InferenceSlot(default_model, loader=slow_loader)
    queue: asyncio.Queue[np.ndarray | None] = asyncio.Queue()
    used: list[LoadedModel] = []

    async def consumer() -> None:  # stands in for the decision loop
        while (w := await queue.get()) is not None:
            model = slot.model
            assert model is not None
            model.predict(w)
            used.append(model)
            queue.task_done()

    task = asyncio.create_task(consumer())
    swap = asyncio.create_task(slot.swap(DEFAULT_MODEL))
    assert await asyncio.to_thread(loading.wait, 30)
    windows = realistic_windows(default_model, 20, seed=2)
    for w in windows:
        await queue.put(w)
    await asyncio.wait_for(queue.join(), 30)  # every event handled while the loader is blocked
    assert len(used) == len(windows)
    assert not swap.done()
    assert all(m is default_model for m in used)
    release.set()
    assert await asyncio.wait_for(swap, 30) is replacement
    await queue.put(windows[0])
    await queue.put(None)
    await asyncio.wait_for(task, 30)
    assert used[-1] is replacement
    assert slot.generation == 1


def test_a_bound_window_predicts_as_predict_does(default_model: LoadedModel) -> None:
    # Raw golden rows pushed: the window applies the declared scaler and clip as predict does.
    buf = default_model.new_window()
    run = default_model.bind(buf)
    for case in default_model.contract.golden.cases:
        for row in case.input:
            buf.push(list(row))
        assert run() == pytest.approx(case.output, abs=default_model.contract.golden.tolerance)
        assert run() == graph_run(default_model, buf.view())
        assert run() == pytest.approx(default_model.predict(np.asarray(case.input)), abs=1e-6)


def test_the_window_clips_as_the_scaler_says(default_model: LoadedModel) -> None:
    sc = default_model.contract.scaler
    assert sc is not None and sc.clip is not None
    buf = default_model.new_window()
    far = [m + 1e6 * s for m, s in zip(sc.mean, sc.scale, strict=True)]
    buf.push([None, *far[1:]])
    assert np.isnan(buf.view()[-1, 0]) and not buf.ready
    assert np.all(buf.view()[-1, 1:] == np.float32(sc.clip))
    exact = [m + 0.5 * s for m, s in zip(sc.mean, sc.scale, strict=True)]
    buf.push(exact)
    assert np.allclose(buf.view()[-1], 0.5, atol=1e-5)
    assert graph_input(default_model, np.asarray([exact] * 16))[0, :10] == pytest.approx(
        buf.view()[-1], abs=1e-5
    )


@pytest.mark.parametrize(
    "window",
    [
        WindowBuffer(15, 10),
        WindowBuffer(16, 10),  # right shape, but no scaler: the model declares one
    ],
    ids=["shape", "scaler"],
)
def test_bind_refuses_a_window_it_cannot_read_as_it_is(
    default_model: LoadedModel, window: WindowBuffer
) -> None:
    with pytest.raises(ValueError, match="cannot bind"):
        default_model.bind(window)

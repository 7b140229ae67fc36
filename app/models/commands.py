"""The model control commands: ``model.add``, ``model.validate``, ``model.list``,
``model.activate``, ``model.shadow``, ``model.promote``, ``model.rollback``, ``model.delete``.

The engine registers :func:`model_commands` beside its own; the control server journals every
one. ``model.add`` and ``model.validate`` run the validator's sandboxed child process and are
slow commands (jobs), so the control socket never waits for them. Switching models goes through
:meth:`InferenceSlot.swap` (loaded and checked in a worker thread, then one reference assignment)
and then one atomic write of the store's pointer; if the pointer cannot be written the slot is
swapped back, so memory and disk never disagree for longer than the failing write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.engine.control import Command
from app.engine.inference import InferenceSlot, LoadedModel, load_model
from app.engine.trader import Trader
from app.errors import ModelError
from app.models.shadow import ShadowRunner
from app.models.store import ModelStore
from app.models.validate import ValidationLimits, validate_async

log = logging.getLogger(__name__)


def _path_arg(args: dict[str, Any]) -> Path:
    raw = args.get("path")
    if not isinstance(raw, str) or not raw:
        raise ModelError('model.add needs {"path": "/path/to/model.onnx"}')
    return Path(raw)


def load_active(store: ModelStore, default_model: Path) -> tuple[LoadedModel, list[str]]:
    """At engine start: the store's active model, loaded and checked.

    An empty store gets the shipped default model, added and activated. If the active file no
    longer loads (a new onnxruntime that computes differently, a damaged disk), the default is
    loaded instead and the reason returned, to be raised as an alarm; the pointer is not changed
    (the operator decides).
    """
    default = load_model(default_model)
    sha = store.ensure_active(default_model, default.contract.model_version)
    if sha == default.sha256:
        return default, []
    try:
        return load_model(store.path(sha)), []
    except ModelError as exc:
        return default, [f"active model {sha} refused at start, running the default: {exc}"]


async def resume_shadow(
    store: ModelStore, slot: InferenceSlot, shadow: ShadowRunner, live: Trader | None = None
) -> list[str]:
    """At engine start: restart the shadow the store names (problems, if it cannot)."""
    sha, active = store.state.shadow, slot.model
    if sha is None or active is None:
        return []
    try:
        candidate = await asyncio.to_thread(load_model, store.path(sha))
    except ModelError as exc:
        return [f"shadow model {sha} refused at start: {exc}"]
    shadow.start(active, candidate, live)
    return []


def model_commands(
    store: ModelStore,
    slot: InferenceSlot,
    shadow: ShadowRunner | None = None,
    limits: ValidationLimits | None = None,
    live: Callable[[], Trader | None] = lambda: None,
) -> dict[str, Command]:
    """The ``model.*`` commands over ``store``, hot-swapping ``slot``.

    ``shadow`` runs candidates (None: ``model.shadow`` is refused); ``live`` returns the engine's
    trader, whose warmed-up ATR a new shadow run borrows.
    """
    lim = limits or ValidationLimits()

    async def validate_cmd(args: dict[str, Any]) -> dict[str, Any]:
        report = await validate_async(_path_arg(args), lim)
        return report.as_dict()

    async def add(args: dict[str, Any]) -> dict[str, Any]:
        path = _path_arg(args)
        report = await validate_async(path, lim)
        if not report.ok or report.model is None:
            raise ModelError(f"model {path} refused: {'; '.join(report.problems)}", report.problems)
        entry = await asyncio.to_thread(
            store.add, path, str(report.model["model_version"]), str(report.model["sha256"])
        )
        return {"added": entry.as_dict(), "validation": report.as_dict()}

    async def listing(args: dict[str, Any]) -> dict[str, Any]:
        st = store.state
        return {
            "active": st.active,
            "shadow": st.shadow,
            "rollback_to": st.previous[-1] if st.previous else None,
            "models": store.listing(),
            "shadow_run": shadow.status() if shadow is not None else {"running": False},
        }

    async def _switch(sha: str, write: Callable[[], object], action: str) -> dict[str, Any]:
        old = slot.model
        new = await slot.swap(store.path(sha))
        try:
            await asyncio.to_thread(write)
        except BaseException:
            if old is not None:  # keep memory and disk in agreement
                await slot.swap(old.path)
            raise
        if shadow is not None and shadow.run is not None:
            if store.state.shadow is None:
                shadow.stop(action)
            else:  # the comparison restarts against the new active model
                shadow.start(new, shadow.run.shadow, live())
        return {"active": new.describe(), "replaced": None if old is None else old.sha256}

    async def activate(args: dict[str, Any]) -> dict[str, Any]:
        sha = store.resolve(args.get("sha256"))
        return await _switch(sha, lambda: store.activate(sha), "activated")

    async def shadow_cmd(args: dict[str, Any]) -> dict[str, Any]:
        if shadow is None:
            raise ModelError("shadow mode is not available in this engine")
        ref = args.get("sha256")
        if ref is None:
            run_id = shadow.stop("stopped")
            await asyncio.to_thread(store.set_shadow, None)
            return {"shadow": None, "stopped_run": run_id}
        sha = store.resolve(ref)
        active = slot.model
        if active is None:
            raise ModelError("no active model to compare a shadow with")
        if sha == active.sha256:
            raise ModelError(f"{sha} is the active model; it cannot shadow itself")
        candidate = await asyncio.to_thread(load_model, store.path(sha))
        problems = slot.fit_problems(candidate.contract)
        if problems:
            raise ModelError(f"model {sha} cannot shadow: {'; '.join(problems)}", tuple(problems))
        await asyncio.to_thread(store.set_shadow, sha)
        run_id = shadow.start(active, candidate, live())
        return {"shadow": candidate.describe(), "run_id": run_id}

    async def promote(args: dict[str, Any]) -> dict[str, Any]:
        sha = store.state.shadow
        if sha is None:
            raise ModelError("no shadow model to promote")
        return await _switch(sha, store.promote, "promoted")

    async def rollback(args: dict[str, Any]) -> dict[str, Any]:
        sha = store.rollback_target()
        return await _switch(sha, store.rollback, "rolled back")

    async def delete(args: dict[str, Any]) -> dict[str, Any]:
        sha = store.resolve(args.get("sha256"))
        await asyncio.to_thread(store.delete, sha)
        return {"deleted": sha}

    return {
        "model.validate": Command(validate_cmd, "validate a model file {path}", slow=True),
        "model.add": Command(add, "validate {path} and add it to the store", slow=True),
        "model.list": Command(listing, "stored models, active, shadow and its figures"),
        "model.activate": Command(activate, "make a stored model {sha256} active"),
        "model.shadow": Command(
            shadow_cmd, "run {sha256} beside the active model, paper only; null stops it"
        ),
        "model.promote": Command(promote, "the shadow becomes the active model"),
        "model.rollback": Command(rollback, "the previous active model becomes active again"),
        "model.delete": Command(delete, "remove a stored model {sha256} (not active/shadow)"),
    }

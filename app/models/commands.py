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

import msgspec

from app import contract
from app.engine.control import Handlers
from app.engine.inference import InferenceSlot, LoadedModel, load_model
from app.engine.trader import Trader
from app.errors import ModelError
from app.models.shadow import ShadowRunner
from app.models.store import ModelStore
from app.models.validate import ValidationLimits, ValidationReport, validate_async

log = logging.getLogger(__name__)


def model_info(model: LoadedModel) -> contract.ModelInfo:
    """What a loaded model is, in the contract's terms."""
    c = model.contract
    return contract.ModelInfo(
        sha256=model.sha256,
        model_version=c.model_version,
        path=str(model.path),
        features=list(c.features),
        window=c.window,
        bar_interval_s=c.bar_interval_s,
        output=c.output,
        long_threshold=c.long_threshold,
        short_threshold=c.short_threshold,
        horizon_bars=c.horizon_bars,
        symbols=list(c.symbols),
        training_range=c.training_range,
        metrics=c.metrics,
        golden_cases=len(c.golden.cases),
        golden_tolerance=c.golden.tolerance,
    )


def _validation(report: ValidationReport, path: Path | None = None) -> contract.Validation:
    """The report in the contract's terms; ``path``: where the model is now (the store's copy,
    not the upload the validator read)."""
    doc = report.as_dict()
    if isinstance(doc.get("model"), dict):
        if doc["model"].get("symbols") == "*":
            doc["model"] = {**doc["model"], "symbols": []}  # describe()'s "any": the contract's []
        if path is not None:
            doc["model"] = {**doc["model"], "path": str(path)}
    return msgspec.convert(doc, contract.Validation)


class ValidatorQueue:
    """One validator child at a time (each may take a core and hundreds of MB for up to its wall
    limit), and at most ``depth`` more waiting: a burst of uploads is refused, not stacked."""

    def __init__(self, depth: int = 2) -> None:
        self.depth = depth
        self.pending = 0  # running + waiting
        self._lock = asyncio.Lock()

    async def validate(self, path: Path, limits: ValidationLimits) -> ValidationReport:
        if self.pending > self.depth:
            raise ModelError(
                f"the validator is busy ({self.pending} models in line); try again in a minute"
            )
        self.pending += 1
        try:
            async with self._lock:
                return await validate_async(path, limits)
        finally:
            self.pending -= 1


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


# Long on purpose: the model.* handlers share the store, slot and shadow as closures.
def model_commands(  # noqa: PLR0915
    store: ModelStore,
    slot: InferenceSlot,
    shadow: ShadowRunner | None = None,
    limits: ValidationLimits | None = None,
    live: Callable[[], Trader | None] = lambda: None,
    validator: ValidatorQueue | None = None,
    check_stored: bool = False,
) -> Handlers:
    """The ``model.*`` commands over ``store``, hot-swapping ``slot``.

    ``shadow`` runs candidates (None: ``model.shadow`` is refused); ``live`` returns the engine's
    trader, whose warmed-up ATR a new shadow run borrows. ``check_stored``: the first
    ``model.list`` starts validating, one at a time in the background, the stored models that
    have no report yet (the shipped default, models stored by an older version), so every row
    of the panel's table can show what the validator measured.
    """
    lim = limits or ValidationLimits()
    queue = validator or ValidatorQueue()
    background: set[asyncio.Task[None]] = set()

    async def check_unchecked() -> None:
        while True:
            todo = [s for s, m in store.state.models.items() if m.validation is None]
            if not todo:
                return
            sha = todo[0]
            try:
                report = await queue.validate(store.path(sha), lim)
            except ModelError:  # the validator's line is full of uploads: they go first
                await asyncio.sleep(30)
                continue
            doc = contract.to_builtins(_validation(report, store.path(sha)))
            try:
                await asyncio.to_thread(store.set_validation, sha, doc)
            except ModelError:  # deleted meanwhile
                continue
            log.info("model %s checked: %s", sha[:12], "ok" if report.ok else report.problems)

    def start_checks() -> None:
        if background or not check_stored:
            return
        if all(m.validation is not None for m in store.state.models.values()):
            return
        task = asyncio.create_task(check_unchecked(), name="model.check-stored")
        background.add(task)

        def done(t: asyncio.Task[None]) -> None:
            background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("checking the stored models failed", exc_info=t.exception())

        task.add_done_callback(done)

    async def validate_cmd(args: contract.PathArgs) -> contract.Validation:
        return _validation(await queue.validate(Path(args.path), lim))

    async def add(args: contract.PathArgs) -> contract.ModelAdded:
        path = Path(args.path)
        report = await queue.validate(path, lim)
        if not report.ok or report.model is None:
            name = args.name or path.name
            raise ModelError(f"model {name} refused: {'; '.join(report.problems)}", report.problems)
        sha = str(report.model["sha256"])
        duplicate = sha in store.state.models
        validation = _validation(report, store.path(sha))
        entry = await asyncio.to_thread(
            store.add,
            path,
            str(report.model["model_version"]),
            sha,
            args.name,
            contract.to_builtins(validation),
        )
        return contract.ModelAdded(
            added=_stored(entry.as_dict()), duplicate=duplicate, validation=validation
        )

    def _stored(row: dict[str, Any]) -> contract.StoredModel:
        st = store.state
        sha = row["sha256"]
        role = "active" if sha == st.active else "shadow" if sha == st.shadow else ""
        return msgspec.convert(
            {**row, "role": role, "previous": sha in st.previous}, contract.StoredModel
        )

    def _shadow_run() -> contract.ShadowRun:
        status = shadow.status() if shadow is not None else {"running": False}
        return msgspec.convert(status, contract.ShadowRun)

    async def listing(args: contract.NoArgs) -> contract.ModelList:
        start_checks()
        st = store.state
        running = shadow is not None and shadow.run is not None
        return contract.ModelList(
            active=st.active,
            shadow=st.shadow,
            rollback_to=st.previous[-1] if st.previous else None,
            models=msgspec.convert(store.listing(), list[contract.StoredModel]),
            shadow_run=_shadow_run(),
            validating=max(queue.pending, len(background)),
            agreement=shadow.agreement.series() if shadow is not None and running else [],
        )

    async def _switch(sha: str, write: Callable[[], object], action: str) -> contract.ModelSwitched:
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
        return contract.ModelSwitched(
            active=model_info(new), replaced=None if old is None else old.sha256
        )

    async def activate(args: contract.ModelRef) -> contract.ModelSwitched:
        sha = store.resolve(args.sha256)
        return await _switch(sha, lambda: store.activate(sha), "activated")

    async def shadow_cmd(args: contract.ShadowArgs) -> contract.ShadowChanged:
        if shadow is None:
            raise ModelError("shadow mode is not available in this engine")
        if args.sha256 is None:
            run_id = shadow.stop("stopped")
            await asyncio.to_thread(store.set_shadow, None)
            return contract.ShadowChanged(shadow=None, stopped_run=run_id)
        sha = store.resolve(args.sha256)
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
        return contract.ShadowChanged(shadow=model_info(candidate), run_id=run_id)

    async def promote(args: contract.NoArgs) -> contract.ModelSwitched:
        sha = store.state.shadow
        if sha is None:
            raise ModelError("no shadow model to promote")
        return await _switch(sha, store.promote, "promoted")

    async def rollback(args: contract.NoArgs) -> contract.ModelSwitched:
        sha = store.rollback_target()
        return await _switch(sha, store.rollback, "rolled back")

    async def delete(args: contract.ModelRef) -> contract.ModelDeleted:
        sha = store.resolve(args.sha256)
        await asyncio.to_thread(store.delete, sha)
        return contract.ModelDeleted(deleted=sha)

    h = Handlers()
    h.add(contract.MODEL_VALIDATE, validate_cmd)
    h.add(contract.MODEL_ADD, add)
    h.add(contract.MODEL_LIST, listing)
    h.add(contract.MODEL_ACTIVATE, activate)
    h.add(contract.MODEL_SHADOW, shadow_cmd)
    h.add(contract.MODEL_PROMOTE, promote)
    h.add(contract.MODEL_ROLLBACK, rollback)
    h.add(contract.MODEL_DELETE, delete)
    return h

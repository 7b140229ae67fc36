"""The model store: content-addressed files and an atomic active/shadow pointer with history.

Layout under ``<data-dir>/models/``::

    <sha256>.onnx     a model, named by the SHA-256 of its bytes, read-only (0444)
    store.json        {"active", "shadow", "previous": [...], "models": {...}, "history": [...]}

Why a JSON file rather than tables in the trading database: the pointer must be readable before
the engine's database writer exists (the engine loads the active model at start) and by the panel
without contending with the engine's writer, it is a few hundred bytes, and one ``rename`` gives
exactly the atomic switch promotion and rollback need. It is written to a temporary file,
``fsync``'d, renamed over the old one and the directory ``fsync``'d, so a crash leaves either the
old or the new pointer, never a torn one. Every command that changes it is also journalled in the
trading database by the control channel, with actor and time.

``previous`` is the stack of earlier active models (``model.rollback`` pops it); ``history`` is
the last :data:`HISTORY_MAX` pointer changes, for the panel.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.clock import Clock
from app.errors import ModelError
from app.store.files import fsync_dir, sha256_file

STATE_FILE = "store.json"
HISTORY_MAX = 200
PREVIOUS_MAX = 20
_MIN_PREFIX = 8


@dataclass(frozen=True)
class StoredModel:
    """One file in the store, and what its validation said about it."""

    sha256: str
    bytes: int
    model_version: str
    added_ts_ns: int
    source: str  # the file name it was added from
    # The validator's report (``contract.Validation`` as plain data); None if never checked.
    validation: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "sha256": self.sha256,
            "bytes": self.bytes,
            "model_version": self.model_version,
            "added_ts_ns": self.added_ts_ns,
            "source": self.source,
        }
        if self.validation is not None:
            doc["validation"] = self.validation
        return doc


@dataclass(frozen=True)
class StoreState:
    """The pointer file's contents."""

    active: str | None = None
    shadow: str | None = None
    previous: tuple[str, ...] = ()
    models: Mapping[str, StoredModel] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "active": self.active,
                "shadow": self.shadow,
                "previous": list(self.previous),
                "models": {k: m.as_dict() for k, m in sorted(self.models.items())},
                "history": list(self.history),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> StoreState:
        doc: dict[str, Any] = json.loads(text)
        return cls(
            active=doc.get("active"),
            shadow=doc.get("shadow"),
            previous=tuple(doc.get("previous", ())),
            models={k: StoredModel(**v) for k, v in doc.get("models", {}).items()},
            history=tuple(doc.get("history", ())),
        )


class ModelStore:
    """The store in ``root``; every method is blocking (call it via ``asyncio.to_thread``).

    Thread-safe: one lock serialises changes, so two commands cannot interleave their writes.
    """

    def __init__(self, root: Path, clock: Clock) -> None:
        self.root = root
        self._clock = clock
        self._lock = threading.Lock()
        root.mkdir(mode=0o750, parents=True, exist_ok=True)
        state_path = root / STATE_FILE
        self._state = (
            StoreState.from_json(state_path.read_text()) if state_path.exists() else StoreState()
        )

    # -- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> StoreState:
        return self._state

    def path(self, sha256: str) -> Path:
        """The file of a stored model."""
        return self.root / f"{sha256}.onnx"

    def resolve(self, ref: object) -> str:
        """A stored model's full digest from its digest or a unique prefix (>= 8 hex digits)."""
        if not isinstance(ref, str) or len(ref) < _MIN_PREFIX:
            raise ModelError(f"sha256 must be a string of at least {_MIN_PREFIX} hex digits")
        ref = ref.lower()
        hits = [s for s in self._state.models if s.startswith(ref)]
        if not hits:
            raise ModelError(f"no model {ref} in the store")
        if len(hits) > 1:
            raise ModelError(f"{ref} is ambiguous: {', '.join(sorted(hits))}")
        return hits[0]

    def listing(self) -> list[dict[str, Any]]:
        """Every stored model, newest first, with its role."""
        st = self._state
        rows = []
        for m in sorted(st.models.values(), key=lambda m: m.added_ts_ns, reverse=True):
            role = "active" if m.sha256 == st.active else "shadow" if m.sha256 == st.shadow else ""
            rows.append({**m.as_dict(), "role": role, "previous": m.sha256 in st.previous})
        return rows

    # -- writing -------------------------------------------------------------------------------

    def _write(self, state: StoreState, action: str, **detail: Any) -> StoreState:
        event = {"ts_ns": self._clock.time_ns(), "action": action, **detail}
        state = replace(state, history=(*state.history, event)[-HISTORY_MAX:])
        tmp = self.root / f".{STATE_FILE}.tmp"
        with tmp.open("w") as fh:
            fh.write(state.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.root / STATE_FILE)
        fsync_dir(self.root)
        self._state = state
        return state

    def add(
        self,
        src: Path,
        model_version: str,
        sha256: str | None = None,
        source: str = "",
        validation: dict[str, Any] | None = None,
    ) -> StoredModel:
        """Copy a (validated) file into the store; adding the same bytes again is a no-op (but
        for recording ``validation`` if the stored copy had none).

        ``sha256`` is what validation saw; if the file changed since, it is refused. ``source``
        names where it came from (an upload's original file name; default: the file's name).
        """
        with self._lock:
            digest = sha256_file(src)
            if sha256 is not None and digest != sha256:
                raise ModelError(f"{src} changed after validation ({sha256} -> {digest})")
            known = self._state.models.get(digest)
            if known is not None:
                if known.validation is None and validation is not None:
                    return self._set_validation(digest, validation)
                return known
            dst = self.path(digest)
            tmp = self.root / f".{digest}.tmp"
            with src.open("rb") as fin, tmp.open("wb") as fout:
                shutil.copyfileobj(fin, fout)
                fout.flush()
                os.fsync(fout.fileno())
            if sha256_file(tmp) != digest:  # the source changed while we copied it
                tmp.unlink()
                raise ModelError(f"{src} changed while it was copied into the store")
            os.chmod(tmp, 0o444)
            os.replace(tmp, dst)
            entry = StoredModel(
                digest,
                dst.stat().st_size,
                model_version,
                self._clock.time_ns(),
                source or src.name,
                validation,
            )
            models = {**self._state.models, digest: entry}
            self._write(replace(self._state, models=models), "add", sha256=digest)
            return entry

    def set_validation(self, sha256: str, validation: dict[str, Any]) -> StoredModel:
        """Record what the validator found for a stored model (one checked after it was added)."""
        with self._lock:
            return self._set_validation(sha256, validation)

    def _set_validation(self, sha256: str, validation: dict[str, Any]) -> StoredModel:
        known = self._state.models.get(sha256)
        if known is None:
            raise ModelError(f"no model {sha256} in the store")
        entry = replace(known, validation=validation)
        models = {**self._state.models, sha256: entry}
        self._write(replace(self._state, models=models), "checked", sha256=sha256)
        return entry

    def activate(self, sha256: str) -> StoreState:
        """Make ``sha256`` the active model; the old one goes on the rollback stack."""
        with self._lock:
            st = self._state
            if sha256 not in st.models:
                raise ModelError(f"no model {sha256} in the store")
            if st.active == sha256:
                return st
            previous = st.previous if st.active is None else (*st.previous, st.active)
            shadow = None if st.shadow == sha256 else st.shadow
            new = replace(st, active=sha256, shadow=shadow, previous=previous[-PREVIOUS_MAX:])
            return self._write(new, "activate", sha256=sha256, replaced=st.active)

    def set_shadow(self, sha256: str | None) -> StoreState:
        """Start (a digest) or stop (None) the shadow."""
        with self._lock:
            st = self._state
            if sha256 is not None:
                if sha256 not in st.models:
                    raise ModelError(f"no model {sha256} in the store")
                if sha256 == st.active:
                    raise ModelError(f"{sha256} is the active model; it cannot shadow itself")
            return self._write(replace(st, shadow=sha256), "shadow", sha256=sha256)

    def promote(self) -> StoreState:
        """The shadow becomes the active model, in one write; the old active can be rolled back."""
        with self._lock:
            st = self._state
            if st.shadow is None:
                raise ModelError("no shadow model to promote")
            previous = st.previous if st.active is None else (*st.previous, st.active)
            new = replace(st, active=st.shadow, shadow=None, previous=previous[-PREVIOUS_MAX:])
            return self._write(new, "promote", sha256=st.shadow, replaced=st.active)

    def rollback_target(self) -> str:
        """The model :meth:`rollback` would make active."""
        for sha in reversed(self._state.previous):
            if sha in self._state.models:
                return sha
        raise ModelError("nothing to roll back to: no earlier active model")

    def rollback(self) -> StoreState:
        """The previous active model becomes active again (the current one is not stacked)."""
        with self._lock:
            st = self._state
            target = self.rollback_target()
            previous = st.previous[: len(st.previous) - 1 - st.previous[::-1].index(target)]
            shadow = None if st.shadow == target else st.shadow
            new = replace(st, active=target, shadow=shadow, previous=previous)
            return self._write(new, "rollback", sha256=target, replaced=st.active)

    def delete(self, sha256: str) -> StoreState:
        """Remove a model that is neither active nor shadow."""
        with self._lock:
            st = self._state
            if sha256 not in st.models:
                raise ModelError(f"no model {sha256} in the store")
            if sha256 == st.active:
                raise ModelError(f"{sha256} is the active model; activate another one first")
            if sha256 == st.shadow:
                raise ModelError(f"{sha256} is the shadow model; stop the shadow first")
            models = {k: v for k, v in st.models.items() if k != sha256}
            previous = tuple(p for p in st.previous if p != sha256)
            new = self._write(
                replace(st, models=models, previous=previous), "delete", sha256=sha256
            )
            with contextlib.suppress(FileNotFoundError):
                self.path(sha256).unlink()
            return new

    def ensure_active(self, default_model: Path, model_version: str) -> str:
        """At engine start: the active model's digest, adding and activating the shipped default
        the first time (an empty store)."""
        if self._state.active is not None:
            return self._state.active
        entry = self.add(default_model, model_version)
        self.activate(entry.sha256)
        return entry.sha256

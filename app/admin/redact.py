"""What a message shown to a browser may say: no server paths.

Errors reach the panel from the engine (``Reply.error``) and from exceptions, and both name files
(the upload's temporary path, the control socket, the model store). A page shows the operator what
went wrong and which file, never where the server keeps it: a path becomes its last component, or
a label the caller gives for it (the upload's own file name). The panel talks to the engine only
through ``PanelEngineClient``, so no view can forget to clean a reply.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from app.contract import A, R, Spec
from app.ctl import EngineClient, Reply

# An absolute POSIX path of two or more components, not inside a URL (``https://host/a/b``: the
# ``/a/b`` follows a word character and is left alone).
_PART = r"[^\s/'\"`()<>,;:]"
_ABSOLUTE = re.compile(rf"(?<![\w.:/~-])/(?:{_PART}+/)+({_PART}*[^\s/'\"`()<>,;:.])")


def hide_paths(text: str, labels: Mapping[str, str] | None = None) -> str:
    """``text`` with each path in ``labels`` replaced by its label, any other absolute path by
    its last component."""
    for path, label in (labels or {}).items():
        if path:
            text = text.replace(path, label)
    return _ABSOLUTE.sub(lambda m: m.group(1), text)


def public_reply(reply: Reply[R]) -> Reply[R]:
    """``reply`` with its error fit for a page (the engine's errors name its files)."""
    if not reply.error:
        return reply
    cleaned: Reply[Any] = dataclasses.replace(reply, error=hide_paths(reply.error))
    return cleaned


class PanelEngineClient(EngineClient):
    """The engine client whose errors name no server path (see the module docstring).

    ``changes`` counts the state-changing commands sent: a page cached for a moment (the
    dashboard's shared fetch) is stale once it moves, so the page after a kill shows "halted"."""

    changes = 0

    async def call(
        self,
        spec: Spec[A, R],
        args: A | None = None,
        actor: str = "",
        job_timeout_s: float = 300.0,
    ) -> Reply[R]:
        try:
            return public_reply(await super().call(spec, args, actor, job_timeout_s))
        finally:
            if spec.changes:
                self.changes += 1

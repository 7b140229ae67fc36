"""Calling the engine from tests: its handlers directly, as the control server would (arguments
converted into the command's struct, the result back to plain data), or a running engine through
the typed client."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from app import contract, ctl
from app.contract import A, R, Spec
from app.engine.control import Handlers


async def invoke(handlers: Handlers, name: str, **args: Any) -> Any:
    command = handlers.get(name)
    assert command is not None, f"no handler for {name}"
    result = await command.handler(msgspec.convert(args, command.spec.args))
    return contract.to_builtins(result)


def call_engine(sock: Path, spec: Spec[A, R], args: A | None = None) -> R:
    """The typed client from synchronous test code (its own thread: Playwright's sync API keeps
    an event loop running in the test's thread); fails the test on an error reply."""

    def run() -> ctl.Reply[R]:
        return asyncio.run(ctl.EngineClient(sock, actor="test:contract").call(spec, args))

    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(run).result()
    assert reply.ok and reply.result is not None, (spec.name, reply.error)
    return reply.result

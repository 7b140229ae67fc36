"""The administrator's password: argon2 hashes through passlib, and the one-time setup code.

Why argon2 via ``argon2-cffi``: passlib 1.7.4's bcrypt backend reads ``bcrypt.__about__`` (gone in
bcrypt >= 4.1) and bcrypt 5 refuses passwords over 72 bytes, whereas passlib's argon2 handler only
needs ``argon2-cffi`` (Debian: python3-argon2). passlib imports the ``crypt`` module, deprecated
in 3.11 and removed in 3.13 (passlib catches the ImportError), and reads ``argon2.__version__``
(deprecated by argon2-cffi) when it loads the backend: both only warn, so both happen once,
here, with those DeprecationWarnings silenced. Works with Debian trixie's python3-passlib and
python3-argon2 and with current PyPI releases, on Python 3.11-3.13.

argon2 is memory-hard on purpose, so the panel runs at most ``HASH_SLOTS`` hashes or checks at a
time (``PasswordStore.check`` and ``replace``); see ``HASH_SLOTS`` for the memory budget.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from app.admin.config import AdminConfig
from app.admin.secretfiles import read_secret, write_secret
from app.clock import Clock
from app.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a console

# argon2 parameters, pinned rather than left to passlib's defaults (which a release may raise):
# the memory budget below depends on them. A check uses the cost stored in the hash, which this
# module wrote with these values.
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_ROUNDS = 3
ARGON2_PARALLELISM = 4
# Hashes or checks running at once. Each holds ARGON2_MEMORY_KIB (64 MiB) until it ends. The
# panel's unit has MemoryMax=400M and the panel idles near 80 MB RSS: 2 x 64 MiB puts the peak near
# 215 MB and leaves ~185 MB for pages, streamed uploads and the allocator's slack. Unbounded, the
# default thread pool ran 6 at once (351 MB RSS, pages at 13.5 s) and ten concurrent logins
# got the panel OOM-killed. One person logs in at a time, so a third slot would only serve an
# attacker; and the throttle is claimed before a request waits for a slot (``throttle``), so the
# queue in front of the slots holds only attempts the throttle granted.
HASH_SLOTS = 2


def make_context() -> Any:
    """A passlib ``CryptContext`` for argon2, with its backend loaded (warnings silenced once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.context import CryptContext
        from passlib.hash import argon2

        argon2.get_backend()  # loads argon2-cffi now, not on the first login
        return CryptContext(
            schemes=["argon2"],
            deprecated="auto",
            argon2__memory_cost=ARGON2_MEMORY_KIB,
            argon2__rounds=ARGON2_ROUNDS,
            argon2__parallelism=ARGON2_PARALLELISM,
        )


def check_strength(password: str) -> None:
    """Refuse passwords that are too short or absurdly long (ConfigError names the rule)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


class PasswordStore:
    """The one administrator's password hash, in a 0600 file.

    ``set`` and ``verify`` block (the CLI calls them); the panel's handlers await ``replace`` and
    ``check``, which run them in a worker thread, at most ``HASH_SLOTS`` at a time.
    """

    def __init__(self, cfg: AdminConfig, context: Any | None = None) -> None:
        self._path = cfg.password_file
        self._ctx = context if context is not None else make_context()
        self._slots = asyncio.Semaphore(HASH_SLOTS)

    def is_set(self) -> bool:
        return self._path.exists()

    def set(self, password: str) -> None:
        check_strength(password)
        write_secret(self._path, str(self._ctx.hash(password)).encode() + b"\n")

    def verify(self, password: str) -> bool:
        """True when ``password`` is right; always False while no password is set."""
        stored = read_secret(self._path)
        if stored is None or not password or len(password) > MAX_PASSWORD_LENGTH:
            return False
        return bool(self._ctx.verify(password, stored.decode().strip()))

    async def check(self, password: str) -> bool:
        """``verify`` in a worker thread, within the memory budget of ``HASH_SLOTS``."""
        return await self._bounded(self.verify, password)

    async def replace(self, password: str) -> None:
        """``set`` in a worker thread, within the memory budget of ``HASH_SLOTS``."""
        await self._bounded(self.set, password)

    async def _bounded(self, fn: Callable[[str], T], password: str) -> T:
        await self._slots.acquire()
        try:
            work = asyncio.ensure_future(asyncio.to_thread(fn, password))
        except BaseException:
            self._slots.release()
            raise
        # A thread cannot be cancelled: the slot is freed when the hash really ends, not when a
        # cancelled request stops waiting for it (else cancelled requests would overfill memory).
        work.add_done_callback(self._release)
        return await asyncio.shield(work)

    def _release(self, work: asyncio.Future[Any]) -> None:
        self._slots.release()
        if not work.cancelled():
            work.exception()  # retrieved: an abandoned check's error is not logged as lost


@dataclass(frozen=True)
class SetupCode:
    code: str
    ts_expires_ns: int


def new_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def read_setup_code(cfg: AdminConfig) -> SetupCode | None:
    raw = read_secret(cfg.setup_code_file)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
        return SetupCode(str(doc["code"]), int(doc["ts_expires_ns"]))
    except (ValueError, KeyError, TypeError):
        # A plain "XXXX-XXXX" line (as a first-boot script may write it) never expires by itself.
        text = raw.decode(errors="replace").strip()
        return SetupCode(text, 2**62) if text else None


def ensure_setup_code(cfg: AdminConfig, store: PasswordStore, clock: Clock) -> SetupCode | None:
    """With no password yet, make sure a valid one-time code exists; log it when it is new.

    Returns the code in force (None once a password is set).
    """
    if store.is_set():
        return None
    current = read_setup_code(cfg)
    if current is not None and current.ts_expires_ns > clock.time_ns():
        return current
    code = SetupCode(new_code(), clock.time_ns() + int(cfg.setup_code_ttl_s * 1e9))
    write_secret(
        cfg.setup_code_file,
        json.dumps({"code": code.code, "ts_expires_ns": code.ts_expires_ns}).encode(),
    )
    # The one place a secret is logged on purpose: the console is how the owner reads it.
    log.warning(
        "setup code: %s (single use, expires in %.0f h)", code.code, cfg.setup_code_ttl_s / 3600
    )
    return code


def use_setup_code(cfg: AdminConfig, given: str, clock: Clock) -> bool:
    """True when ``given`` is the code in force and unexpired; the caller then consumes it."""
    current = read_setup_code(cfg)
    if current is None or current.ts_expires_ns <= clock.time_ns():
        return False
    want = current.code.strip().upper().encode()
    return hmac.compare_digest(given.strip().upper().encode(), want)


def consume_setup_code(cfg: AdminConfig) -> None:
    cfg.setup_code_file.unlink(missing_ok=True)

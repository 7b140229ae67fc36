"""The administrator's password: argon2 hashes through passlib, and the one-time setup code.

Why argon2 via ``argon2-cffi``: passlib 1.7.4's bcrypt backend reads ``bcrypt.__about__`` (gone in
bcrypt >= 4.1) and bcrypt 5 refuses passwords over 72 bytes, whereas passlib's argon2 handler only
needs ``argon2-cffi`` (Debian: python3-argon2). passlib imports the ``crypt`` module, deprecated
in 3.11 and removed in 3.13 (passlib catches the ImportError), and reads ``argon2.__version__``
(deprecated by argon2-cffi) when it loads the backend: both only warn, so both happen once,
here, with those DeprecationWarnings silenced. Works with Debian trixie's python3-passlib and
python3-argon2 and with current PyPI releases, on Python 3.11-3.13.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

from app.admin.config import AdminConfig
from app.admin.secretfiles import read_secret, write_secret
from app.clock import Clock
from app.errors import ConfigError

log = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a console


def make_context() -> Any:
    """A passlib ``CryptContext`` for argon2, with its backend loaded (warnings silenced once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.context import CryptContext
        from passlib.hash import argon2

        argon2.get_backend()  # loads argon2-cffi now, not on the first login
        return CryptContext(schemes=["argon2"], deprecated="auto")


def check_strength(password: str) -> None:
    """Refuse passwords that are too short or absurdly long (ConfigError names the rule)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ConfigError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


class PasswordStore:
    """The one administrator's password hash, in a 0600 file."""

    def __init__(self, cfg: AdminConfig, context: Any | None = None) -> None:
        self._path = cfg.password_file
        self._ctx = context if context is not None else make_context()

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

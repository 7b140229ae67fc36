"""CSRF tokens: bound to one session (or pre-session cookie) under one panel key, and refused when
anything is missing, so a forged form from another site can never place or cancel an order."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.admin import csrf

KEY = b"k" * 32
SESSION = "ab" * 32


def test_a_token_is_an_hmac_sha256_of_its_binding() -> None:
    # A known answer: the derivation is part of the contract between page and gate.
    expected = hmac.new(KEY, b"csrf:" + SESSION.encode(), hashlib.sha256).hexdigest()
    assert csrf.token_for(KEY, SESSION) == expected
    assert len(expected) == 64


def test_the_right_token_is_accepted() -> None:
    assert csrf.valid(KEY, SESSION, csrf.token_for(KEY, SESSION)) is True


@pytest.mark.parametrize(
    ("key", "binding", "given"),
    [
        (KEY, SESSION, csrf.token_for(KEY, "cd" * 32)),  # another session's token
        (KEY, SESSION, csrf.token_for(b"x" * 32, SESSION)),  # another panel's key
        (KEY, SESSION, csrf.token_for(KEY, SESSION)[:-1]),  # truncated
        (KEY, SESSION, ""),  # no token at all
        (KEY, "", csrf.token_for(KEY, "")),  # no binding: a token for "" proves nothing
    ],
    ids=["other-session", "other-key", "truncated", "missing", "unbound"],
)
def test_a_wrong_or_missing_token_is_refused(key: bytes, binding: str, given: str) -> None:
    assert csrf.valid(key, binding, given) is False

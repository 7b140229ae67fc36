"""Bytes sealed with a passphrase: how API keys travel inside a backup archive.

The construction is the textbook one, from the ``cryptography`` package (Debian:
``python3-cryptography``), not a hand-made one: scrypt derives a 256-bit key from the passphrase
and a random 16-byte salt (n=2**15, r=8, p=1: 32 MiB and a fraction of a second on the board, so
guessing is slow), and AES-256-GCM encrypts with a random 12-byte nonce. The sealed blob is::

    header (38 bytes)                      ciphertext + 16-byte GCM tag
    magic "APKB" | version 1 | log2(n) | r | p | salt (16) | nonce (12)

The header travels in clear and is the GCM associated data, so changing any byte of it (the
parameters, the salt, the nonce) fails authentication exactly like a changed ciphertext or a wrong
passphrase: one message, :class:`SecretBoxError`, and nothing decrypted. Parameters outside sane
bounds are refused before scrypt runs, so a forged header cannot make it allocate gigabytes.

``cryptography`` is imported only when something is sealed or opened: the appliance runs without
it as long as nobody asks for the keys in a backup.
"""

from __future__ import annotations

import os
import struct
import unicodedata
from typing import Any

from app.errors import OperatorError

MAGIC = b"APKB"
VERSION = 1
_HEADER = struct.Struct(">4sBBHH16s12s")  # magic, version, log2(n), r, p, salt, nonce
HEADER_BYTES = _HEADER.size
_TAG_BYTES = 16
_LOG2_N, _R, _P = 15, 8, 1
# What a header may ask of scrypt: the parameters this program writes, with room to raise them
# later, but a bounded amount of memory (a forged header must not exhaust the board).
_LOG2_N_RANGE = range(14, 21)
_R_RANGE = range(1, 17)
_P_RANGE = range(1, 5)
_MAX_MEM = 256 * 1024 * 1024  # 128 * n * r must stay below this (the board has a few GiB)
_DAMAGED = "wrong passphrase or damaged key file"


class SecretBoxError(OperatorError):
    """Sealed bytes could not be opened (wrong passphrase, altered or foreign data), or the
    ``cryptography`` package that does the work is not installed."""


def _crypto() -> tuple[Any, Any, Any]:
    """(Scrypt, AESGCM, InvalidTag), or a clear error naming the missing package."""
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    except ImportError as exc:
        raise SecretBoxError(
            "API keys in a backup are encrypted with the 'cryptography' package, which is not "
            "installed (Debian: apt install python3-cryptography; pip: cryptography>=43)"
        ) from exc
    return Scrypt, AESGCM, InvalidTag


def _key(passphrase: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    scrypt, _, _ = _crypto()
    # NFC: the same passphrase typed on another keyboard or terminal gives the same bytes.
    secret = unicodedata.normalize("NFC", passphrase).encode()
    key: bytes = scrypt(salt=salt, length=32, n=1 << log2_n, r=r, p=p).derive(secret)
    return key


def seal(plaintext: bytes, passphrase: str) -> bytes:
    """``plaintext`` encrypted under ``passphrase``: header, then ciphertext and tag."""
    if not passphrase:
        raise SecretBoxError("an empty passphrase cannot protect anything")
    _, aesgcm, _ = _crypto()
    salt, nonce = os.urandom(16), os.urandom(12)
    header = _HEADER.pack(MAGIC, VERSION, _LOG2_N, _R, _P, salt, nonce)
    key = _key(passphrase, salt, _LOG2_N, _R, _P)
    sealed: bytes = aesgcm(key).encrypt(nonce, plaintext, header)
    return header + sealed


def open_sealed(blob: bytes, passphrase: str) -> bytes:
    """The plaintext :func:`seal` sealed; :class:`SecretBoxError` for a wrong passphrase, any
    changed byte (header included), or something that is not a sealed blob at all."""
    if len(blob) < HEADER_BYTES + _TAG_BYTES:
        raise SecretBoxError(_DAMAGED)
    header = blob[:HEADER_BYTES]
    magic, version, log2_n, r, p, salt, nonce = _HEADER.unpack(header)
    if magic != MAGIC or version != VERSION:
        raise SecretBoxError(f"{_DAMAGED} (not a key file this program wrote)")
    if (
        log2_n not in _LOG2_N_RANGE
        or r not in _R_RANGE
        or p not in _P_RANGE
        or 128 * (1 << log2_n) * r > _MAX_MEM
    ):
        raise SecretBoxError(_DAMAGED)
    _, aesgcm, invalid_tag = _crypto()
    key = _key(passphrase, salt, log2_n, r, p)
    try:
        plaintext: bytes = aesgcm(key).decrypt(nonce, blob[HEADER_BYTES:], header)
    except invalid_tag:
        raise SecretBoxError(_DAMAGED) from None
    return plaintext

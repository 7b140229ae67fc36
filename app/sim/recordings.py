"""Reading recordings: stream frames (jsonl or the engine's raw log), depth snapshots, exchangeInfo.

Line files use the reference format ``<url> -> <recv ts>: <body>``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from app.errors import ConfigError


class _JsonlLine(msgspec.Struct):
    recv_ts: float
    stream: str
    data: msgspec.Raw


class _Envelope(msgspec.Struct):
    stream: str
    data: msgspec.Raw


@dataclass(frozen=True)
class RecordedFrame:
    """One frame: receive time, stream, the payload's exact bytes and, if known, the frame's."""

    ts_ns: int
    stream: str
    data: bytes
    combined: bytes | None = None


def _iter_jsonl(path: Path) -> Iterator[RecordedFrame]:
    decoder = msgspec.json.Decoder(_JsonlLine)
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = decoder.decode(line)
            except msgspec.DecodeError as exc:
                raise ConfigError(f"{path}:{lineno}: not a recorded frame ({exc})") from exc
            yield RecordedFrame(int(rec.recv_ts * 1e9), rec.stream, bytes(rec.data))


def _iter_rawlog(path: Path) -> Iterator[tuple[RecordedFrame | None, bytes]]:
    rawlog = importlib.import_module("app.store.rawlog")
    decoder = msgspec.json.Decoder(_Envelope)
    for ts_ns, raw in rawlog.iter_frames(path):
        try:
            env = decoder.decode(raw)
        except msgspec.DecodeError:
            # The engine records malformed frames too; they name no stream to serve them on.
            yield None, raw
            continue
        yield RecordedFrame(ts_ns, env.stream, bytes(env.data), raw), raw


def iter_recording(path: Path) -> Iterator[RecordedFrame]:
    """The frames of a recording in order: ``.jsonl`` (reference format) or a raw-log database."""
    if path.suffix == ".jsonl":
        yield from _iter_jsonl(path)
        return
    for frame, _raw in _iter_rawlog(path):
        if frame is not None:
            yield frame


def _line_bodies(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    for line in text.splitlines():
        if " -> " not in line:
            continue
        url, rest = line.split(" -> ", 1)
        _, _, body = rest.partition(": ")
        try:
            doc = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{path}: bad body for {url}: {exc}") from exc
        if isinstance(doc, dict):
            yield url, doc


def load_snapshots(path: Path) -> dict[str, dict[str, Any]]:
    """Depth snapshots by upper-case symbol (the last one per symbol wins)."""
    out: dict[str, dict[str, Any]] = {}
    for url, body in _line_bodies(path):
        query = parse_qs(urlsplit(url).query)
        symbol = query.get("symbol", [""])[0].upper()
        if symbol and "lastUpdateId" in body:
            out[symbol] = body
    return out


def load_exchange_info(path: Path) -> dict[str, Any]:
    """The first exchangeInfo body in ``path``."""
    for url, body in _line_bodies(path):
        if urlsplit(url).path.endswith("/exchangeInfo") and "symbols" in body:
            return body
    raise ConfigError(f"{path}: no exchangeInfo response found")


@dataclass(frozen=True)
class SeenSymbol:
    """Precision shown by a recording's price/quantity strings, to synthesize exchangeInfo."""

    symbol: str
    price_precision: int
    qty_precision: int
    price_units: int  # a recorded price, in units of 10**-price_precision


def _decimals(text: str) -> int:
    _, _, frac = text.partition(".")
    return len(frac)


def scan_symbols(path: Path, max_frames: int = 5000) -> dict[str, SeenSymbol]:
    """Symbols of the first ``max_frames`` frames with the precision their strings show."""
    seen: dict[str, SeenSymbol] = {}
    for n, frame in enumerate(iter_recording(path)):
        if n >= max_frames:
            break
        try:
            data = msgspec.json.decode(frame.data)
        except msgspec.DecodeError:
            continue
        if not isinstance(data, dict) or not isinstance(data.get("s"), str):
            continue
        symbol = data["s"].upper()
        prices = [data[k] for k in ("b", "a", "p") if isinstance(data.get(k), str)]
        qtys = [data[k] for k in ("B", "A", "q") if isinstance(data.get(k), str)]
        if not prices or not qtys:
            continue
        pp = max(_decimals(p) for p in prices)
        qp = max(_decimals(q) for q in qtys)
        old = seen.get(symbol)
        if old is not None:
            pp, qp = max(pp, old.price_precision), max(qp, old.qty_precision)
        units = int(prices[0].replace(".", "")) * 10 ** (pp - _decimals(prices[0]))
        seen[symbol] = SeenSymbol(symbol, pp, qp, units)
    return seen

"""ISO-week file naming for market data: ``market_<ISO year>_<ISO week>.db`` (UTC)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

_NAME = re.compile(r"^market_(\d{4})_(\d{2})\.db$")
_NS = 1_000_000_000


def week_of(ts_ns: int) -> tuple[int, int]:
    """The (ISO year, ISO week) that contains ``ts_ns``, in UTC."""
    iso = datetime.fromtimestamp(ts_ns / _NS, UTC).isocalendar()
    return iso.year, iso.week


def week_bounds_ns(ts_ns: int) -> tuple[int, int]:
    """[start, end) of the ISO week containing ``ts_ns``: Monday 00:00 UTC to the next Monday."""
    moment = datetime.fromtimestamp(ts_ns // _NS, UTC)
    monday = (moment - timedelta(days=moment.weekday())).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    start = int(monday.timestamp()) * _NS
    return start, start + 7 * 86_400 * _NS


def market_file(market_dir: Path, week: tuple[int, int]) -> Path:
    return market_dir / f"market_{week[0]:04d}_{week[1]:02d}.db"


def parse_market_file(path: Path) -> tuple[int, int] | None:
    """The week a market file holds, or None if the name is not a market file's."""
    match = _NAME.match(path.name)
    return (int(match[1]), int(match[2])) if match else None

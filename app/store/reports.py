"""Saved backtest reports under ``<data-dir>/reports/``: written by ``appliance backtest --save``,
listed and served by the panel's Models page (``app.store``: the panel may read it).

Each report is a directory ``<YYYYmmddTHHMMSSZ>_<model>`` (the time it was saved, in UTC, and the
model's version cut to safe characters) holding ``report.json`` and ``report.html``
(:func:`app.models.report.write_report`). That name is the report's id. The panel looks a report
up among the ids :func:`list_reports` found, never by joining a requested name to a path, so no
request can reach outside the directory; directories or files that are symbolic links are not
listed. Standard library only: the panel imports this without numpy or onnxruntime.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPORTS = "reports"
JSON_NAME = "report.json"
HTML_NAME = "report.html"
ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z_[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_JSON_BYTES = 32 * 1024 * 1024  # a report of many round trips: read, but not without bound
LISTED = 100  # newest first; older ones stay on disk


@dataclass(frozen=True)
class SavedReport:
    """One saved report as the Models page lists it (figures None when report.json is
    unreadable; money as the report's decimal text)."""

    id: str
    path: Path  # its directory
    model_version: str = ""
    sha256: str = ""
    start: str = ""  # ISO 8601 UTC
    end: str = ""
    pnl: str | None = None
    trips: int | None = None
    auc: float | None = None
    decisions: int | None = None
    sources: tuple[str, ...] = ()
    problem: str = ""


def reports_dir(data_dir: Path) -> Path:
    return data_dir / REPORTS


def report_id(saved_at: datetime, model_version: str) -> str:
    """``<YYYYmmddTHHMMSSZ>_<model>``, the model's version with anything but letters, digits,
    ``.``, ``_`` and ``-`` replaced (and no leading dot)."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "-", model_version).lstrip(".-_")[:64] or "model"
    return f"{saved_at.astimezone(UTC):%Y%m%dT%H%M%SZ}_{slug}"


def new_report_dir(data_dir: Path, model_version: str, now: datetime | None = None) -> Path:
    """A fresh directory for a report saved now (``-2``, ``-3``... when the second is taken)."""
    base = report_id(now or datetime.now(UTC), model_version)
    root = reports_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(1, 1000):
        name = base if k == 1 else f"{base[:61]}-{k}"
        try:
            (root / name).mkdir()
        except FileExistsError:
            continue
        return root / name
    raise FileExistsError(f"no free report name for {base} in {root}")


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _read(rid: str, path: Path) -> SavedReport:
    json_path = path / JSON_NAME
    try:
        if json_path.stat().st_size > MAX_JSON_BYTES:
            return SavedReport(rid, path, problem="report.json is too large to list")
        doc: Any = json.loads(json_path.read_text())
        model, period, summary = doc["model"], doc["period"], doc["summary"]
        calibration = doc.get("calibration") or {}
        auc = calibration.get("auc")
        return SavedReport(
            rid,
            path,
            model_version=str(model.get("model_version", "")),
            sha256=str(model.get("sha256", "")),
            start=str(period.get("start", "")),
            end=str(period.get("end", "")),
            pnl=str(doc["pnl"]["net"]),
            trips=int(summary.get("wins", 0)) + int(summary.get("losses", 0)),
            auc=float(auc) if isinstance(auc, int | float) else None,
            decisions=int(summary.get("decisions", 0)),
            sources=tuple(str(s) for s in doc.get("sources", [])),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return SavedReport(rid, path, problem="report.json is missing or unreadable")


def list_reports(data_dir: Path, limit: int = LISTED) -> list[SavedReport]:
    """The saved reports, newest first (at most ``limit``), each with its summary figures.

    Only directories named as :func:`report_id` names them, not symbolic links, and holding a
    regular ``report.html`` are listed."""
    root = reports_dir(data_dir)
    try:
        entries = [e for e in root.iterdir() if ID_PATTERN.fullmatch(e.name)]
    except OSError:
        return []
    found = [e for e in entries if e.is_dir() and not e.is_symlink() and _regular(e / HTML_NAME)]
    found.sort(key=lambda e: e.name, reverse=True)
    return [_read(e.name, e) for e in found[:limit]]


def find_report(data_dir: Path, rid: str) -> SavedReport | None:
    """The listed report whose id is ``rid`` (None for any other string: it is compared with
    the listed ids, never used as a path)."""
    if not ID_PATTERN.fullmatch(rid):
        return None
    for report in list_reports(data_dir, limit=10**6):
        if report.id == rid:
            return report
    return None

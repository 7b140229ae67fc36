"""The Models page's figures in words: what each stored model reads, what its validation found,
and how the shadow compares with the active model.

Everything here reads the typed results of ``model.list`` (:class:`app.contract.ModelList`,
each model's :class:`~app.contract.Validation`). The contract carries a model's training range
and metrics as the JSON text its author wrote into the file; only the few keys the training
pipeline writes (``app/models/train.py``) are turned into sentences, anything else is left out
rather than shown raw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from app import contract
from app.admin import charts


@dataclass(frozen=True)
class ModelRow:
    """One stored model as the table shows it."""

    sha256: str
    short: str
    version: str
    source: str
    role: str  # active, shadow, previous or stored
    added_ts_ns: int
    bytes: int
    # "passed", "refused" (checked again and refused now) or "pending" (not checked yet)
    check: str
    features: list[str] = field(default_factory=list)
    inputs: str = ""  # "10 features over the last 16 bars of 1 s"
    signals: str = ""  # "long at p ≥ 0.55, short at p ≤ 0.45; 120-bar horizon"
    golden: str = ""
    latency: str = ""
    quality: str = ""  # held-out figures from the training metrics
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _seconds(value: float) -> str:
    if value >= 60 and value % 60 == 0:
        return f"{value / 60:g} min"
    return f"{value:g} s"


def _us(value: float) -> str:
    return f"{value:.0f} µs" if value < 1000 else f"{value / 1000:.1f} ms"


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def quality_text(metrics: Any) -> str:
    """The held-out test figures the training pipeline records, as one phrase ('' if none)."""
    doc = _json(metrics)
    test = doc.get("test") if isinstance(doc, dict) else None
    if not isinstance(test, dict):
        return ""
    parts = []
    acc, auc, n = test.get("accuracy"), test.get("auc"), test.get("n")
    if isinstance(acc, (int, float)):
        parts.append(f"{acc * 100:.1f} % of directions right")
    if isinstance(auc, (int, float)):
        parts.append(f"AUC {auc:.2f}")
    if not parts:
        return ""
    tail = f" over {n:,} held-out bars" if isinstance(n, int) else " on held-out bars"
    return ", ".join(parts) + tail


def model_row(m: contract.StoredModel, rollback_to: str | None) -> ModelRow:
    role = m.role or ("previous" if m.sha256 == rollback_to else "stored")
    v = m.validation
    check = "pending" if v is None else "passed" if v.ok else "refused"
    row = ModelRow(
        sha256=m.sha256,
        short=m.sha256[:12],
        version=m.model_version,
        source=m.source,
        role=role,
        added_ts_ns=m.added_ts_ns,
        bytes=m.bytes,
        check=check,
    )
    if v is None:
        return row
    info = v.model
    extra: dict[str, Any] = {"problems": list(v.problems), "notes": list(v.notes)}
    if info is not None:
        n = len(info.features)
        extra["features"] = list(info.features)
        extra["inputs"] = (
            f"{n} feature{'s' if n != 1 else ''} over the last {info.window} bars "
            f"of {_seconds(info.bar_interval_s)}"
        )
        extra["signals"] = (
            f"long at p ≥ {info.long_threshold:g}, short at p ≤ {info.short_threshold:g}; "
            f"predicts {info.horizon_bars} bars ahead"
        )
        if info.golden_cases:
            extra["golden"] = (
                f"{info.golden_cases} golden case{'s' if info.golden_cases != 1 else ''} "
                f"reproduced (within {info.golden_tolerance:g})"
                if v.ok or not any("golden" in p for p in v.problems)
                else "golden cases not reproduced"
            )
        extra["quality"] = quality_text(info.metrics)
    if v.latency_us is not None:
        budget = f" (limit {_us(v.budget_us)})" if v.budget_us is not None else ""
        extra["latency"] = f"{_us(v.latency_us)} per decision{budget}"
    return ModelRow(**{**row.__dict__, **extra})


ROLE_ORDER = {"active": 0, "shadow": 1, "previous": 2, "stored": 3}


def rows(listing: contract.ModelList) -> list[ModelRow]:
    """The stored models, the one trading first, then the shadow, then the newest."""
    out = [model_row(m, listing.rollback_to) for m in listing.models]
    return sorted(out, key=lambda r: (ROLE_ORDER.get(r.role, 9), -r.added_ts_ns))


@dataclass(frozen=True)
class Comparison:
    """The shadow run's agreement in words and as a chart."""

    agreement: str
    when_signalled: str
    chart: Markup
    points: int


def _share(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.0f} %" if whole else "—"


def comparison(listing: contract.ModelList) -> Comparison | None:
    run = listing.shadow_run
    if not run.running:
        return None
    if run.compared:
        agreement = (
            f"Same call on {run.agreed:,} of {run.compared:,} bars "
            f"({_share(run.agreed, run.compared)})"
        )
    else:
        agreement = "No bar both models decided on yet: they decide at every bar close."
    when = (
        f"When either signalled: the same call on {run.signalled_agreed:,} of "
        f"{run.signalled:,} ({_share(run.signalled_agreed, run.signalled)})"
        if run.signalled
        else ""
    )
    points = [
        (p.ts_ns, Decimal(p.agreed * 100) / p.compared) for p in listing.agreement if p.compared
    ]
    chart = charts.both_widths(
        lambda w: charts.line_chart(
            "Agreement with the active model (%), per minute",
            points,
            y_range=(0.0, 100.0),
            y_format=lambda y: f"{y:.0f} %",
            width=w,
        )
    )
    return Comparison(agreement, when, chart, len(points))

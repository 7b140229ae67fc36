"""How often a shadow model makes the same call as the active model, bar by bar.

:class:`~app.models.shadow.ShadowRunner` feeds both sandboxes the same event; when both decide on
it (a bar closed for that symbol), their calls (long, short, or no signal) are compared here. The
totals and a bounded series of per-minute spans travel to the panel in ``model.list``; nothing
here touches the database (the signals themselves are in ``model_signals``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from app import contract

MINUTE_NS = 60 * 1_000_000_000
# A day of minutes: what the chart can show of a long run (the totals cover all of it).
MAX_SPANS = 1440


@dataclass
class _Span:
    ts_ns: int
    compared: int = 0
    agreed: int = 0


@dataclass
class Agreement:
    """Totals over a run and per-``span_ns`` counts for the last ``max_spans`` spans."""

    span_ns: int = MINUTE_NS
    max_spans: int = MAX_SPANS
    compared: int = 0
    agreed: int = 0
    signalled: int = 0
    signalled_agreed: int = 0
    _spans: deque[_Span] = field(default_factory=deque)

    def add(self, ts_ns: int, active: str, shadow: str) -> None:
        """One bar both models decided on: each one's direction ("" for no signal)."""
        same = active == shadow
        self.compared += 1
        self.agreed += same
        if active or shadow:
            self.signalled += 1
            self.signalled_agreed += same
        start = ts_ns - ts_ns % self.span_ns
        if not self._spans or self._spans[-1].ts_ns != start:
            self._spans.append(_Span(start))
            if len(self._spans) > self.max_spans:
                self._spans.popleft()
        span = self._spans[-1]
        span.compared += 1
        span.agreed += same

    def totals(self) -> dict[str, int]:
        return {
            "compared": self.compared,
            "agreed": self.agreed,
            "signalled": self.signalled,
            "signalled_agreed": self.signalled_agreed,
        }

    def series(self, max_points: int = 120) -> list[contract.AgreementPoint]:
        """The spans oldest first, neighbours merged so that at most ``max_points`` remain."""
        spans = list(self._spans)
        per = max(1, -(-len(spans) // max_points))
        out: list[contract.AgreementPoint] = []
        for i in range(0, len(spans), per):
            group = spans[i : i + per]
            out.append(
                contract.AgreementPoint(
                    ts_ns=group[0].ts_ns,
                    compared=sum(s.compared for s in group),
                    agreed=sum(s.agreed for s in group),
                )
            )
        return out

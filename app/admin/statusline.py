"""The status line: one sentence that says what the engine is doing, and every reason it is not
opening positions (the engine's blockers, ``app/engine/halts.py``), for the dashboard and the Mode
page."""

from __future__ import annotations

from dataclasses import dataclass

from app import contract
from app.ctl import Reply


@dataclass(frozen=True)
class StatusLine:
    # "ok": entries allowed; "blocked": running but blocked; "stopped": paused, halted or down.
    kind: str
    headline: str
    reasons: list[str]


def _mode(st: contract.Status) -> str:
    return "live, with real money" if st.mode == "live" else "on paper"


def _left(seconds: float | None) -> str:
    if seconds is None or seconds <= 0:
        return ""
    if seconds < 90:
        return f"{seconds:.0f} s left"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min left"
    return f"{seconds / 3600:.1f} h left"


def reason_text(b: contract.Blocker) -> str:
    """One blocker as a phrase: its message, the symbol when the message lacks it, time left."""
    text = b.message.rstrip(".")
    if b.symbol and b.symbol.lower() not in text.lower():
        text += f" ({b.symbol})"
    left = _left(b.seconds_left)
    return f"{text}: {left}" if left else text


def status_line(reply: Reply[contract.Status]) -> StatusLine:
    if reply.result is None:
        error = reply.error or "no answer"
        return StatusLine(
            "stopped", f"The engine is not answering ({error}): nothing is traded.", []
        )
    st = reply.result
    reasons = [reason_text(b) for b in st.blockers]
    mode = _mode(st)
    if st.state == "halted":
        why = f" ({st.halt_reason})" if st.halt_reason else ""
        headline = (
            f"Halted{why}, {mode}: no new positions until Resume on the Mode page; exits still run."
        )
        return StatusLine("stopped", headline, reasons)
    if st.state == "paused":
        headline = f"Paused, {mode}: no new positions until Resume; exits still run."
        return StatusLine("stopped", headline, reasons)
    if st.trading:
        return StatusLine("ok", f"Trading {mode}: it opens positions when the model signals.", [])
    n = len(reasons)
    headline = (
        f"Running {mode}, but not opening positions "
        f"({n} reason{'s' if n != 1 else ''}; exits still run):"
    )
    return StatusLine("blocked", headline, reasons)

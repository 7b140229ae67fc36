"""Alerts: what the operator must know (an engine alarm such as a stale feed or a full disk, a
breaker trip, the engine down or a task crashed) shown in every page's banner and, when a webhook
is configured, posted to it as JSON once per occurrence (remembered in ``paneldb``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from app import contract
from app.admin.state import Panel

log = logging.getLogger(__name__)

WEBHOOK_KEY = "alerts.webhook"
_POST_TIMEOUT_S = 5.0


async def post_alert(url: str, alert: dict[str, Any]) -> str:
    """POST ``alert`` as JSON; '' on a 2xx answer, else what went wrong (never raises)."""
    try:
        async with httpx.AsyncClient(timeout=_POST_TIMEOUT_S, trust_env=False) as client:
            response = await client.post(url, json={"source": "appliance-panel", **alert})
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "" if response.is_success else f"HTTP {response.status_code}"


async def current_alerts(panel: Panel) -> list[dict[str, Any]]:
    """Every alert in force now, each with a ``key`` that names one occurrence."""
    out: list[dict[str, Any]] = []
    for alarm in await asyncio.to_thread(panel.reader.open_alarms):
        out.append({**alarm, "key": f"alarm:{alarm['id']}", "state": "raised"})
    for event in await asyncio.to_thread(panel.reader.risk_events, ("breaker", "kill"), 20):
        out.append(
            {
                "key": f"risk:{event['id']}",
                "kind": f"{event['kind']}:{event['code']}",
                "message": event["message"],
                "ts_ns": event["ts_ns"],
                "state": "raised",
            }
        )
    status = await panel.engine.call(contract.STATUS)
    if not status.reachable:
        # One key per engine outage: the watcher clears it when the engine answers again.
        outage = panel.extra.setdefault("outage_since", panel.clock.time_ns())
        out.append(
            {
                "key": f"engine_down:{outage}",
                "kind": "engine_down",
                "message": f"the engine is not answering: {status.error}",
                "ts_ns": outage,
                "state": "raised",
            }
        )
    else:
        panel.extra.pop("outage_since", None)
        tasks = status.result.tasks if status.result is not None else {}
        for name, task in tasks.items():
            if task.crashes:
                out.append(
                    {
                        "key": f"crash:{name}:{task.crashes}",
                        "kind": "task_crashed",
                        "message": f"engine task {name} crashed ({task.crashes} times)",
                        "ts_ns": panel.clock.time_ns(),
                        "state": "raised",
                    }
                )
    return out


async def watch(panel: Panel, stop: asyncio.Event) -> None:
    """Post each new alert to the webhook, if one is set, until ``stop``."""
    while not stop.is_set():
        try:
            url = panel.db.get_setting(WEBHOOK_KEY, "")
            if url:
                for alert in await current_alerts(panel):
                    if not panel.db.mark_alert_sent(alert["key"], panel.clock.time_ns()):
                        continue
                    problem = await post_alert(url, alert)
                    if problem:
                        log.warning("alert %s not delivered: %s", alert["kind"], problem)
        except Exception:  # the watcher must outlive any one bad round; it logs and retries
            log.exception("alert watcher round failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), panel.cfg.alert_poll_s)

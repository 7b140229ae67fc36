"""Does a busy panel slow the engine? Figures, not pass/fail.

Starts the simulator, the engine pinned to its own core (``taskset``) and the panel on another,
then measures the engine over windows of ``--seconds``: messages/s (from ``ctl status``) and its
message latency (``latency_us``: receive → handled, p50/p99 over the engine's recent ring), first
idle, then with ``--clients`` concurrent logged-in clients polling the dashboard fragment (each
request makes the panel ask the engine for ``status`` and ``health`` and read trading.db). Three
runs of each; mean and spread (max − min) printed.

Usage: ``python benchmarks/panel_load_bench.py [--clients 50] [--seconds 10] [--runs 3] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app import ctl  # noqa: E402
from tests.admin.panelproc import PASSWORD, csrf_from, running_panel, set_password  # noqa: E402
from tests.integration.engineproc import appliance, spawn, stop, wait_for  # noqa: E402
from tests.simproc import running_sim  # noqa: E402


def _pin(core: int, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core), *argv]
    return argv


def _status(sock: Path) -> dict[str, Any]:
    reply = ctl.request(sock, "status", actor="bench")
    result: dict[str, Any] = reply["result"]
    return result


def _login_cookies(base: str) -> dict[str, str]:
    """One login (argon2 is deliberately slow: the clients share this session, not 50 logins)."""
    with httpx.Client(base_url=base, timeout=30) as c:
        page = c.get("/login")
        r = c.post("/login", data={"password": PASSWORD, "csrf_token": csrf_from(page.text)})
        assert r.status_code == 303, r.status_code
        return dict(c.cookies)


async def _client_loop(
    base: str, cookies: dict[str, str], stop_at: float, counts: list[int], lat: list[float]
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30, cookies=cookies) as c:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            resp = await c.get("/fragments/dashboard")
            lat.append(time.perf_counter() - t0)
            counts[0 if resp.status_code == 200 else 1] += 1


def _window(sock: Path, seconds: float, base: str | None, clients: int) -> dict[str, Any]:
    cookies = _login_cookies(base) if base is not None else {}
    before = _status(sock)
    t0 = time.monotonic()
    counts, lat = [0, 0], []
    if base is not None:

        async def load() -> None:
            stop_at = time.monotonic() + seconds
            await asyncio.gather(
                *(_client_loop(base, cookies, stop_at, counts, lat) for _ in range(clients))
            )

        asyncio.run(load())
    else:
        time.sleep(seconds)
    after = _status(sock)
    elapsed = time.monotonic() - t0
    lat_us = after.get("latency_us", {})
    out = {
        "msgs_per_s": (after["messages"] - before["messages"]) / elapsed,
        "p50_us": lat_us.get("p50"),
        "p99_us": lat_us.get("p99"),
    }
    if base is not None:
        lat.sort()
        out["panel_req_per_s"] = counts[0] / elapsed
        out["panel_errors"] = counts[1]
        out["panel_p50_ms"] = 1000 * lat[len(lat) // 2] if lat else None
        out["panel_p99_ms"] = 1000 * lat[int(len(lat) * 0.99)] if lat else None
    return out


def _summary(runs: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if values:
            out[key] = f"{statistics.mean(values):.1f} (spread {max(values) - min(values):.1f})"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="panel-bench-") as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        set_password(data)
        with running_sim("--seed", "7") as sim:
            log = root / "engine.log"
            engine = spawn(
                _pin(
                    1, appliance(data, "engine", "--rest-url", sim.rest_url, "--ws-url", sim.ws_url)
                ),
                log,
            )
            try:
                sock = data / "control.sock"
                wait_for("engine", lambda: _status(sock)["messages"] > 100, 60, engine, log)
                with running_panel(data, log=root / "panel.log") as panel:
                    subprocess.run(
                        ["taskset", "-pc", "0", str(panel.proc.pid)],
                        capture_output=True,
                        check=False,
                    )
                    idle, loaded = [], []
                    for _ in range(ns.runs):
                        idle.append(_window(sock, ns.seconds, None, 0))
                        loaded.append(_window(sock, ns.seconds, panel.base_url, ns.clients))
            finally:
                stop(engine)
    result = {
        "clients": ns.clients,
        "seconds": ns.seconds,
        "idle": _summary(idle),
        "loaded": _summary(loaded),
        "runs": {"idle": idle, "loaded": loaded},
    }
    if ns.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"engine pinned to core 1, panel to core 0; {ns.clients} clients, {ns.seconds:.0f} s")
        for name in ("idle", "loaded"):
            print(f"  {name:6}: " + "; ".join(f"{k} {v}" for k, v in result[name].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

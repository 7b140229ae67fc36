"""kill -9 between sending an order and recording its answer; the restart finds it, sends no
second order, protects the position, and trades again only after reconciliation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.live.venue import CHAOS_ENV
from tests.live.conftest import KEY, SECRET, SYMBOL, sim_fills
from tests.simproc import REPO, SimHandle

RUN_TIMEOUT_S = 60


def _runner(
    sim: SimHandle, data_dir: Path, *args: str, chaos: str = ""
) -> tuple[int, list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if k != CHAOS_ENV}
    if chaos:
        env[CHAOS_ENV] = chaos
    proc = subprocess.run(
        [
            sys.executable, "-m", "app.live.chaos_runner", "--data-dir", str(data_dir),
            "--rest-url", sim.rest_url, "--ws-url", sim.ws_url, *args,
        ],
        cwd=REPO, env=env, capture_output=True, timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]
    if proc.returncode not in (0, -signal.SIGKILL):
        lines.append({"event": "stderr", "text": proc.stderr.decode()[-3000:]})
    return proc.returncode, lines


def test_kill_9_after_send_then_restart_finds_the_order_and_sends_no_second(
    live_sim: SimHandle, tmp_path: Path
) -> None:
    code, out = _runner(
        live_sim, tmp_path, "--keys", KEY, SECRET, "--go-live", "--entry", "BUY:0.010:50",
        chaos="after_send",
    )  # fmt: skip
    assert code == -signal.SIGKILL, out
    events = [o["event"] for o in out]
    assert events == ["restored", "preflight", "live", "sending"]
    client_id = out[-1]["client_id"]
    # The exchange has the order (filled); the ledger has only its intent.
    assert len({f["orderId"] for f in sim_fills(live_sim, client_id)}) == 1
    open_before = live_sim.stats()["rate_limits"]["clients"]["127.0.0.1"]["orders_1m"]

    code, out = _runner(live_sim, tmp_path)
    assert code == 0, out
    restored = out[0]
    assert restored["event"] == "restored" and restored["mode"] == "live"
    report = restored["report"]
    assert report["queried_orders"] == 1
    assert report["ok"] is True and restored["halted"] is False, report
    assert report["positions"] == {SYMBOL: "0.010"}
    done = out[-1]
    # The restart sent only the entry's two protective exits, never the entry again.
    assert done["orders_sent"] == 2
    assert len({f["orderId"] for f in sim_fills(live_sim, client_id)}) == 1
    orders_after = live_sim.stats()["rate_limits"]["clients"]["127.0.0.1"]["orders_1m"]
    assert orders_after - open_before in (2, 2 - open_before)  # same minute, or a new one
    rows = _ledger_rows(tmp_path)
    assert rows[client_id]["stage"] == "done" and rows[client_id]["status"] == "FILLED"
    assert rows[f"{client_id}-sl"]["stage"] == "open"
    assert rows[f"{client_id}-tp"]["stage"] == "open"


def _ledger_rows(data_dir: Path) -> dict[str, dict[str, Any]]:
    import sqlite3

    conn = sqlite3.connect(data_dir / "orders.db")
    try:
        cursor = conn.execute("SELECT client_id, stage, status FROM orders")
        return {r[0]: {"stage": r[1], "status": r[2]} for r in cursor.fetchall()}
    finally:
        conn.close()

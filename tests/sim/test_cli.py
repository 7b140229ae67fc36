"""The process: exits 0 on SIGTERM, rejects bad options, and plugs into the appliance CLI."""

from __future__ import annotations

import argparse
import subprocess
import sys

from app.sim.cli import config_from_args, register
from tests.simproc import REPO, running_sim, stop


def test_sigterm_exits_zero() -> None:
    with running_sim() as sim:
        assert "sim listening on http://127.0.0.1:" in sim.output()
        assert stop(sim.proc) == 0


def test_bad_option_exits_nonzero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app.sim", "--port", "0", "--step-ms", "7"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--step-ms" in proc.stderr


def test_register_adds_the_sim_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="appliance")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "sim",
            "--port",
            "9123",
            "--seed",
            "3",
            "--symbols",
            "BTCUSDT,solusdt",
            "--funding-interval-s",
            "30",
            "--api-key",
            "k",
            "--api-secret",
            "s",
            "--malformed-every",
            "9",
            "--pong-delay-s",
            "0.5",
        ]
    )
    assert args.func is not None
    cfg = config_from_args(args)
    assert (cfg.port, cfg.seed, cfg.symbols) == (9123, 3, ("btcusdt", "solusdt"))
    assert cfg.funding_interval_s == 30
    assert (cfg.api_key, cfg.api_secret) == ("k", "s")
    assert cfg.faults.malformed_every == 9
    assert cfg.faults.pong_delay_s == 0.5

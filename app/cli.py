"""``appliance``: the one command-line entry point.

Subcommands: ``run`` (developer's stand-in for the appliance: simulator, engine and panel as
child processes), ``engine``, ``sim``, ``ctl``, ``admin`` (the panel), ``set-password``.
``--data-dir`` is common to all; its default is ``data/`` in the working copy when the package
runs from one, and ``/var/lib/appliance`` otherwise (the image). The environment variable
``APPLIANCE_DATA_DIR`` overrides the default.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from app import config as config_mod
from app import contract
from app import ctl as ctl_mod
from app.clock import SystemClock
from app.errors import ApplianceError, ControlError


def default_data_dir() -> Path:
    if env := os.environ.get("APPLIANCE_DATA_DIR"):
        return Path(env)
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").exists() and (checkout / ".git").exists():
        return checkout / "data"
    return Path("/var/lib/appliance")


def _symbols(text: str) -> tuple[str, ...]:
    return tuple(s.strip().lower() for s in text.split(",") if s.strip())


def _load(ns: argparse.Namespace) -> config_mod.AppConfig:
    overrides: dict[str, dict[str, object]] = {}
    if getattr(ns, "symbols", None):
        overrides.setdefault("feed", {})["symbols"] = ns.symbols
    if getattr(ns, "exchange", None):
        overrides.setdefault("exchange", {})["profile"] = ns.exchange
    if getattr(ns, "rest_url", None):
        overrides.setdefault("exchange", {})["rest_url"] = ns.rest_url
    if getattr(ns, "ws_url", None):
        overrides.setdefault("exchange", {})["ws_url"] = ns.ws_url
    return config_mod.load(ns.data_dir.resolve(), ns.config, None, **overrides)


def _cmd_engine(ns: argparse.Namespace) -> int:
    from app.node.engine import run_engine

    cfg = _load(ns)
    return asyncio.run(run_engine(cfg, SystemClock()))


def _cmd_run(ns: argparse.Namespace) -> int:
    from app.devrun import run_all

    cfg = _load(ns)
    return run_all(cfg, ns)


def _cmd_ctl(ns: argparse.Namespace) -> int:
    cfg = _load(ns)
    try:
        spec = ctl_mod.spec_named(ns.command)
        args = ctl_mod.parse_args(spec, ns.args)
    except ControlError as exc:
        print(f"appliance ctl: {exc}", file=sys.stderr)
        return 2
    client = ctl_mod.EngineClient(cfg.control_socket, actor=ns.actor)
    return asyncio.run(_ctl(client, spec, args, ns))


async def _ctl(
    client: ctl_mod.EngineClient, spec: contract.AnySpec, args: Any, ns: argparse.Namespace
) -> int:
    reply: Any
    if spec is contract.HELP:
        return _print_help(await client.call(contract.HELP))
    if spec.slow and not ns.wait:
        reply = await client.start(spec, args)
    else:
        reply = await client.call(spec, args)
    if not reply.reachable:
        print(f"appliance ctl: {reply.error}", file=sys.stderr)
        return 2
    if not reply.ok:
        json.dump({"error": reply.error}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 1
    json.dump(contract.to_builtins(reply.result), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _print_help(reply: ctl_mod.Reply[list[contract.CommandHelp]]) -> int:
    """The engine's commands (the contract) with their arguments; the contract if it is down."""
    if reply.ok and reply.result is not None:
        rows = reply.result
    else:
        rows = [
            contract.CommandHelp(
                name=s.name, doc=s.doc, changes=s.changes, slow=s.slow, args=s.arg_fields()
            )
            for s in contract.COMMANDS.values()
        ]
        print(f"(engine not reachable: {reply.error}; listing the contract)")
    for row in rows:
        flags = ", ".join(
            f for f, on in (("changes: journalled", row.changes), ("slow: a job", row.slow)) if on
        )
        print(f"{row.name:16} {row.doc}" + (f" [{flags}]" if flags else ""))
        for name, kind in row.args.items():
            print(f"{'':16}   {name}: {kind}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="state directory")
    parser.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    parser.add_argument("--log-level", default=os.environ.get("APPLIANCE_LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="subcommand", required=True)

    def exchange_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--symbols", type=_symbols, help="comma-separated, e.g. btcusdt,ethusdt")
        p.add_argument("--exchange", choices=sorted(config_mod.EXCHANGE_PROFILES))
        p.add_argument("--rest-url", help="override the profile's REST base URL")
        p.add_argument("--ws-url", help="override the profile's WebSocket base URL")

    p_engine = sub.add_parser("engine", help="run the trading engine")
    exchange_flags(p_engine)
    p_engine.set_defaults(func=_cmd_engine)

    p_run = sub.add_parser("run", help="simulator + engine as supervised child processes")
    exchange_flags(p_run)
    p_run.add_argument("--sim-port", type=int, default=config_mod.DEFAULT_SIM_PORT)
    p_run.add_argument("--no-sim", action="store_true", help="do not start the simulator")
    p_run.add_argument("--seed", type=int, default=1)
    p_run.add_argument("--admin-port", type=int, default=config_mod.DEFAULT_ADMIN_PORT)
    p_run.add_argument("--no-admin", action="store_true", help="do not start the admin panel")
    p_run.set_defaults(func=_cmd_run)

    p_ctl = sub.add_parser("ctl", help="send a command to the running engine")
    p_ctl.add_argument("command", help="e.g. status, health, pause, resume, kill, help")
    p_ctl.add_argument("args", nargs="*", help="key=value arguments (values may be JSON)")
    p_ctl.add_argument("--actor", default="", help="who is asking (journalled)")
    p_ctl.add_argument("--wait", action="store_true", help="wait for a slow command's job")
    p_ctl.set_defaults(func=_cmd_ctl)

    p_bench = sub.add_parser("bench", help="the decision loop over a recording, with figures")
    _bench_arguments(p_bench)
    p_bench.set_defaults(func=_cmd_bench)

    p_native = sub.add_parser("native", help="the mypyc build of the per-message modules")
    p_native.add_argument("action", nargs="?", choices=("status", "build"), default="status")
    p_native.set_defaults(func=_cmd_native)

    from app.sim.cli import register as register_sim

    register_sim(sub)

    from app.models.cli import register as register_models

    register_models(sub)
    from app.admin.cli import register as register_admin

    register_admin(sub)
    from app.store.cli import register as register_backup

    register_backup(sub)
    from app.update.cli import register as register_update

    register_update(sub)
    return parser


def _bench_arguments(parser: argparse.ArgumentParser) -> None:
    default_model = Path(__file__).resolve().parents[1] / "models" / "default.onnx"
    parser.add_argument("--replay", type=Path, required=True, help="jsonl or raw-log recording")
    parser.add_argument("--snapshots", type=Path, help="REST depth snapshots for the recording")
    parser.add_argument("--exchange-info", type=Path, help="exchangeInfo for the filters")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--model", type=Path, default=default_model)
    parser.add_argument(
        "--decide",
        choices=("bar", "event"),
        default="bar",
        help="bar: decide at bar closes, as the engine does (default); event: on every message",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs; each figure is the median over them"
    )
    parser.add_argument("--json", action="store_true")


def _cmd_bench(ns: argparse.Namespace) -> int:
    from app.node import bench  # numpy and onnxruntime: only for the command that needs them

    return bench.main(ns)


def _cmd_native(ns: argparse.Namespace) -> int:
    from app import native

    if ns.action == "build":
        print(f"native: built {native.build()}")
        return 0
    s = native.status()
    print(f"native: {'in use' if s.active else 'not in use'}: {s.reason} ({s.build_dir})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=ns.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One line per HTTP request to the exchange is noise in the journal; errors still show.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        code: int = ns.func(ns)
    except ApplianceError as exc:
        print(f"appliance: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())

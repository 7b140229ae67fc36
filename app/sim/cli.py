"""``appliance sim``: the command-line entry of the exchange simulator."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from app.config import DEFAULT_SIM_PORT
from app.errors import ConfigError
from app.sim.config import DEFAULT_FUNDING_INTERVAL_S, FaultSettings, SimConfig
from app.sim.server import serve
from app.sim.symbols import SYMBOL_RE


def _symbols(text: str) -> tuple[str, ...]:
    symbols = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    for s in symbols:
        if not SYMBOL_RE.match(s):
            raise argparse.ArgumentTypeError(f"invalid symbol {s!r}")
    return symbols


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sim`` options, shared by ``appliance sim`` and ``python -m app.sim``."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_SIM_PORT, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--symbols", type=_symbols, default=(), help="e.g. btcusdt,ethusdt")
    parser.add_argument("--step-ms", type=int, default=100, help="simulated market cadence")
    parser.add_argument("--funding-interval-s", type=int, default=DEFAULT_FUNDING_INTERVAL_S)
    parser.add_argument("--replay", type=Path, help="a .jsonl recording or a raw-log database")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed; 0 = at once")
    parser.add_argument("--loop", action="store_true", help="replay forever")
    parser.add_argument("--snapshots", type=Path, help="REST depth snapshots for the replay")
    parser.add_argument("--exchange-info", type=Path, help="exchangeInfo response for the replay")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--api-secret", default="")
    faults = parser.add_argument_group("faults (also at runtime: POST /_sim/faults)")
    faults.add_argument("--drop-after-s", type=float, help="close stream connections after N s")
    faults.add_argument("--stall", action="store_true", help="withhold all stream data")
    faults.add_argument("--stall-for-s", type=float, help="withhold stream data for N s")
    faults.add_argument("--malformed-every", type=int, default=0, help="garble every Nth frame")
    faults.add_argument("--pong-delay-s", type=float, default=0.0, help="answer pings late")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """Validate the parsed options into a :class:`SimConfig`."""
    if args.step_ms <= 0 or 1000 % args.step_ms:
        raise ConfigError("--step-ms must divide 1000 (e.g. 50 or 100)")
    if args.funding_interval_s <= 0:
        raise ConfigError("--funding-interval-s must be > 0")
    if args.speed < 0:
        raise ConfigError("--speed must be >= 0")
    for name in ("replay", "snapshots", "exchange_info"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            raise ConfigError(f"--{name.replace('_', '-')}: {path} does not exist")
    if args.malformed_every < 0:
        raise ConfigError("--malformed-every must be >= 0")
    return SimConfig(
        host=args.host,
        port=args.port,
        seed=args.seed,
        symbols=args.symbols,
        step_ms=args.step_ms,
        funding_interval_s=args.funding_interval_s,
        replay=args.replay,
        speed=args.speed,
        loop=args.loop,
        snapshots=args.snapshots,
        exchange_info=args.exchange_info,
        api_key=args.api_key,
        api_secret=args.api_secret,
        faults=FaultSettings(
            drop_after_s=args.drop_after_s,
            stall=args.stall,
            stall_for_s=args.stall_for_s,
            malformed_every=args.malformed_every,
            pong_delay_s=args.pong_delay_s,
        ),
    )


def run(args: argparse.Namespace) -> int:
    """The ``sim`` handler: serve until SIGTERM/SIGINT, return 0."""
    return serve(config_from_args(args))


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``sim`` to the appliance CLI; its handler is ``args.func(args) -> int``."""
    parser = subparsers.add_parser("sim", help="run the Binance USD-M exchange simulator")
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m app.sim``."""
    parser = argparse.ArgumentParser(prog="python -m app.sim", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        parser.exit(2, f"sim: {exc}\n")

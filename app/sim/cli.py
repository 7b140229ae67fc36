"""``appliance sim``: the command-line entry of the exchange simulator."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from app.config import DEFAULT_SIM_PORT
from app.errors import ConfigError
from app.sim.config import DEFAULT_FUNDING_INTERVAL_S, FaultSettings, SimConfig, TradingSettings
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
    parser.add_argument("--api-key", default="", help="the key signed requests must carry")
    parser.add_argument("--api-secret", default="", help="the secret they are signed with")
    trading = parser.add_argument_group("signed side (in memory: a restart loses the account)")
    trading.add_argument("--weight-limit", type=int, default=2400, help="request weight per min")
    trading.add_argument("--order-limit-1m", type=int, default=1200, help="orders per minute")
    trading.add_argument("--order-limit-10s", type=int, default=300, help="orders per 10 s")
    trading.add_argument(
        "--ban-after-429s", type=int, default=5, help="requests ignoring a 429 before a 418 ban"
    )
    trading.add_argument("--ban-s", type=float, default=120.0, help="length of an IP ban")
    trading.add_argument("--listen-key-validity-s", type=float, default=3600.0)
    trading.add_argument("--balance-usdt", default="10000", help="the account's starting wallet")
    trading.add_argument("--default-leverage", type=int, default=20)
    faults = parser.add_argument_group("faults (also at runtime: POST /_sim/faults)")
    faults.add_argument("--drop-after-s", type=float, help="close stream connections after N s")
    faults.add_argument("--stall", action="store_true", help="withhold all stream data")
    faults.add_argument("--stall-for-s", type=float, help="withhold stream data for N s")
    faults.add_argument("--malformed-every", type=int, default=0, help="garble every Nth frame")
    faults.add_argument("--pong-delay-s", type=float, default=0.0, help="answer pings late")
    faults.add_argument(
        "--order-unknown-503", action="store_true", help="place orders but answer 503 -1007"
    )
    faults.add_argument("--order-timeout-s", type=float, help="place orders, answer N s late")
    faults.add_argument(
        "--drop-user-stream", action="store_true", help="close user-data stream connections"
    )
    faults.add_argument("--clock-offset-ms", type=int, default=0, help="shift the server clock")


# Long on purpose: one branch per command-line fault.
def config_from_args(args: argparse.Namespace) -> SimConfig:  # noqa: PLR0912
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
    for name in ("weight_limit", "order_limit_1m", "order_limit_10s", "listen_key_validity_s"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0")
    if args.ban_after_429s < 0 or args.ban_s < 0:
        raise ConfigError("--ban-after-429s and --ban-s must be >= 0")
    if not 1 <= args.default_leverage <= 125:
        raise ConfigError("--default-leverage must be 1..125")
    if args.order_timeout_s is not None and args.order_timeout_s < 0:
        raise ConfigError("--order-timeout-s must be >= 0")
    try:
        balance = Decimal(args.balance_usdt)
    except InvalidOperation:
        balance = Decimal(-1)
    if not balance.is_finite() or balance < 0:
        raise ConfigError("--balance-usdt must be a decimal number >= 0")
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
            order_unknown_503=args.order_unknown_503,
            order_timeout_s=args.order_timeout_s,
            drop_user_stream=args.drop_user_stream,
            clock_offset_ms=args.clock_offset_ms,
        ),
        trading=TradingSettings(
            weight_limit=args.weight_limit,
            order_limit_1m=args.order_limit_1m,
            order_limit_10s=args.order_limit_10s,
            ban_after_429s=args.ban_after_429s,
            ban_s=args.ban_s,
            listen_key_validity_s=args.listen_key_validity_s,
            balance_usdt=args.balance_usdt,
            default_leverage=args.default_leverage,
        ),
    )


def run(args: argparse.Namespace) -> int:
    """The ``sim`` handler: serve until SIGTERM/SIGINT, return 0."""
    # Here, not at the top: every `appliance` command builds the parser, and the engine and
    # `appliance ctl` have no use for the simulator's web server.
    from app.sim.server import serve

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

"""The appliance's configuration: frozen dataclasses, loaded in layers, passed in explicitly.

Layers, later wins: shipped defaults → a TOML file (``/etc/appliance/appliance.toml`` on the image,
or ``--config``) → environment variables ``APPLIANCE_<SECTION>_<KEY>`` (for example
``APPLIANCE_EXCHANGE_PROFILE=testnet``) → settings saved from the panel or ``settings.set`` (the
engine applies them at start with :func:`with_saved`; only :data:`RUNTIME` settings) → the CLI's
flags. Every layer passes the same :func:`validate`, so a TOML file cannot set a limit that the
panel would refuse. Nothing reads configuration from a global: the CLI builds one :class:`AppConfig`
and hands the parts to the components that need them; ``AppConfig.sources`` says which layer set
each value that is not a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from app.errors import ConfigError

DEFAULT_SIM_PORT = 9100
DEFAULT_ADMIN_PORT = 8080

# Named exchange profiles. Tests and demos only ever use "sim"; the others exist so that an
# operator can point the appliance at Binance by name instead of typing URLs.
EXCHANGE_PROFILES: dict[str, tuple[str, str]] = {
    "sim": (f"http://127.0.0.1:{DEFAULT_SIM_PORT}", f"ws://127.0.0.1:{DEFAULT_SIM_PORT}"),
    "binance": ("https://fapi.binance.com", "wss://fstream.binance.com"),
    "testnet": ("https://testnet.binancefuture.com", "wss://fstream.binancefuture.com"),
}


@dataclass(frozen=True)
class ExchangeConfig:
    """Where the exchange is. ``rest_url``/``ws_url`` override the profile's URLs when set."""

    profile: str = "sim"
    rest_url: str = ""
    ws_url: str = ""
    recv_window_ms: int = 5000

    @property
    def rest_base(self) -> str:
        return self.rest_url or EXCHANGE_PROFILES[self.profile][0]

    @property
    def ws_base(self) -> str:
        return self.ws_url or EXCHANGE_PROFILES[self.profile][1]


@dataclass(frozen=True)
class FeedConfig:
    """Which streams to subscribe and how to judge their health."""

    symbols: tuple[str, ...] = ("btcusdt", "ethusdt")
    # depth20@100ms replaces the top of the book every 100 ms; "diff" subscribes depth@100ms and
    # keeps a full book synced from REST snapshots (Binance's documented procedure).
    depth_mode: str = "partial"
    depth_levels: int = 20
    # A stream silent this long is reconnected.
    stale_after_s: float = 10.0
    # Entries stop while a symbol's book or mark stream is silent this long, or its trades this
    # long (trades may pause in a quiet market); they resume when messages flow again.
    halt_after_s: float = 5.0
    halt_trades_after_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    open_timeout_s: float = 10.0

    def streams(self) -> tuple[str, ...]:
        depth = f"depth{self.depth_levels}@100ms" if self.depth_mode == "partial" else "depth@100ms"
        kinds = ("aggTrade", depth, "bookTicker", "markPrice@1s")
        return tuple(f"{s}@{k}" for s in self.symbols for k in kinds)


@dataclass(frozen=True)
class StoreConfig:
    """Recording, rotation, retention and backups."""

    batch_max: int = 2000
    flush_interval_s: float = 0.25
    queue_max: int = 200_000
    book_snapshot_interval_s: float = 1.0
    book_snapshot_levels: int = 20
    retention_weeks: int = 12
    # Recording stops (and an alarm is raised) when free space drops below this, so the trading
    # database always has room to write.
    min_free_bytes: int = 512 * 1024 * 1024
    # Space held back beside the trading database and given to it when the disk is full, so that
    # the kill switch and the breakers can still be saved (re-made when space returns).
    trading_reserve_bytes: int = 8 * 1024 * 1024
    # Whole-state archives (app/store/archive.py): kept this many days, and never fewer than the
    # newest ``archive_keep_min``.
    archive_retention_days: int = 14
    archive_keep_min: int = 7
    # The panel's data directory, archived with the engine's ("": /var/lib/appliance-panel beside
    # /var/lib/appliance on the image, else the data directory itself).
    panel_data_dir: str = ""
    # Optional page budget for the market-data database (0 = unlimited). Tests use it to make
    # SQLite itself report "database or disk is full".
    max_page_count: int = 0


@dataclass(frozen=True)
class RiskConfig:
    """Limits of the risk gate. Fractions are of equity (``0.01`` = 1 %)."""

    # Equity lost if the stop is hit, at most, per trade.
    risk_per_trade: Decimal = Decimal("0.01")
    # Share of the full Kelly fraction used as a further cap (full Kelly is far too aggressive
    # with an estimated edge).
    kelly_fraction: Decimal = Decimal("0.25")
    atr_stop_mult: Decimal = Decimal("2")
    atr_take_profit_mult: Decimal = Decimal("3")
    # Per symbol, |position| × price, in the quote asset (USDT).
    max_position_notional: Decimal = Decimal("1000")
    # Gross notional of every position over equity.
    max_leverage: Decimal = Decimal("3")
    max_daily_loss: Decimal = Decimal("0.03")
    max_drawdown: Decimal = Decimal("0.10")
    losing_streak: int = 3
    cooldown_minutes: int = 30
    # A decision older than this is refused (0 = no limit): the market has moved on.
    max_intent_age_ms: int = 2000
    # The ATR stop must come at least this many ATRs before the position's liquidation price.
    liquidation_buffer_atr: Decimal = Decimal("1")
    # Entries stop (exits stay allowed) while maintenance margin over equity is at least this;
    # Binance liquidates at 1.
    max_margin_ratio: Decimal = Decimal("0.8")


@dataclass(frozen=True)
class PaperConfig:
    """Paper trading's account and execution model."""

    initial_balance: Decimal = Decimal("10000")
    # Binance USD-M's base-tier fees.
    taker_fee: Decimal = Decimal("0.0004")
    maker_fee: Decimal = Decimal("0.0002")
    # Decision → order at the exchange.
    latency_ms: int = 50
    equity_interval_s: float = 5.0
    # How many levels of its side are searched for a resting order's price.
    scan_levels: int = 50


@dataclass(frozen=True)
class LiveConfig:
    """How live execution talks to the exchange and what it requires before trading.

    Times are seconds unless named ``*_ms``.
    """

    recv_window_ms: int = 5000
    # A read that takes longer fails (and is retried by its caller); an order that takes longer
    # is in an unknown state and is resolved by querying it, never by sending it again blindly.
    timeout_s: float = 10.0
    order_timeout_s: float = 5.0
    # Slow down (wait for the next minute) once this share of the weight limit is used; the limit
    # itself comes from exchangeInfo's REQUEST_WEIGHT rate limit.
    weight_soft_fraction: float = 0.8
    # The longest a request waits for the weight budget before it fails with RateLimitedError.
    max_budget_wait_s: float = 5.0
    # Binance expires a listenKey 60 minutes after its last keep-alive; it recommends one every
    # 30 minutes.
    keepalive_s: float = 30 * 60.0
    stream_backoff_initial_s: float = 0.2
    stream_backoff_max_s: float = 10.0
    reconcile_interval_s: float = 60.0
    # How often the clock offset to the exchange is measured (the halts read it).
    clock_check_interval_s: float = 30.0
    # Preflight bounds.
    max_clock_offset_ms: int = 1000
    min_balance: Decimal = Decimal("100")
    # Account settings that are set and then checked, never assumed.
    leverage: int = 3
    margin_type: str = "CROSSED"
    # What reconciliation does with a difference: "adopt" the exchange's state, or "wait" (stay
    # halted until the operator resolves it with ``live.reconcile {"policy": "adopt"}``).
    reconcile_policy: str = "wait"
    # How long an order query keeps trying (timeouts, 5xx) before the order is left "unknown"
    # and trading halts.
    resolve_attempts: int = 5


@dataclass(frozen=True)
class ModelConfig:
    """Which model trades at first start (afterwards the model store's active pointer decides)."""

    # Empty: the default model shipped in ``models/default.onnx``.
    path: str = ""


@dataclass(frozen=True)
class EngineConfig:
    """The engine process as a whole."""

    status_interval_s: float = 5.0
    restart_backoff_initial_s: float = 0.2
    restart_backoff_max_s: float = 30.0


@dataclass(frozen=True)
class AppConfig:
    """Everything, in one object built once by the CLI."""

    data_dir: Path = Path("data")
    exchange: ExchangeConfig = field(default_factory=ExchangeConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    paper: PaperConfig = field(default_factory=PaperConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    # "section.key" -> the layer that set it ("toml", "env", "saved", "cli"); absent: default.
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False)

    def source(self, key: str) -> Source:
        return self.sources.get(key, "default")

    @property
    def control_socket(self) -> Path:
        return self.data_dir / "control.sock"

    @property
    def market_dir(self) -> Path:
        return self.data_dir / "market"

    @property
    def backup_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def trading_db(self) -> Path:
        return self.data_dir / "trading.db"


Source = Literal["default", "toml", "env", "saved", "cli"]


@dataclass(frozen=True)
class Bound:
    """What an operator may set a runtime setting to."""

    kind: Literal["decimal", "int", "symbols"]
    low: Decimal = Decimal(0)
    high: Decimal = Decimal(0)


# The settings that may change while the engine runs (the panel's Settings page, ``settings.set``),
# and their bounds, which every layer must respect: generous enough for any sane account, tight
# enough that a typo (0.5 for 0.005) cannot risk half the equity on one trade.
RUNTIME: dict[str, Bound] = {
    "risk.risk_per_trade": Bound("decimal", Decimal("0.0001"), Decimal("0.05")),
    "risk.kelly_fraction": Bound("decimal", Decimal("0"), Decimal("1")),
    "risk.max_position_notional": Bound("decimal", Decimal("1"), Decimal("1000000")),
    "risk.max_leverage": Bound("decimal", Decimal("0.1"), Decimal("10")),
    "risk.max_daily_loss": Bound("decimal", Decimal("0.001"), Decimal("0.5")),
    "risk.max_drawdown": Bound("decimal", Decimal("0.01"), Decimal("0.9")),
    "risk.losing_streak": Bound("int", Decimal("1"), Decimal("100")),
    "risk.cooldown_minutes": Bound("int", Decimal("0"), Decimal("10080")),
    "feed.symbols": Bound("symbols", Decimal("1"), Decimal("20")),
}
_SYMBOL = re.compile(r"^[a-z0-9]{2,20}$")


def setting_text(cfg: AppConfig, key: str) -> str:
    """A runtime setting's current value as the text the panel shows and the journal records."""
    section, name = key.split(".")
    value = getattr(getattr(cfg, section), name)
    return ",".join(value) if isinstance(value, tuple) else str(value)


_SECTIONS: dict[str, type[Any]] = {
    "exchange": ExchangeConfig,
    "feed": FeedConfig,
    "store": StoreConfig,
    "engine": EngineConfig,
    "risk": RiskConfig,
    "paper": PaperConfig,
    "model": ModelConfig,
    "live": LiveConfig,
}


def _coerce(section: str, name: str, current: object, raw: object) -> object:
    """Convert a TOML or environment value to the type of the default it replaces."""
    where = f"{section}.{name}"
    try:
        if isinstance(current, Decimal):
            value = Decimal(str(raw))
            if not value.is_finite():
                raise ValueError("not a finite number")
            return value
        if isinstance(current, bool):
            if isinstance(raw, str):
                if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                    raise ValueError(raw)
                return raw.lower() in {"1", "true", "yes"}
            return bool(raw)
        if isinstance(current, int):
            return int(raw)  # type: ignore[call-overload]
        if isinstance(current, float):
            return float(raw)  # type: ignore[arg-type]
        if isinstance(current, tuple):
            items = raw.split(",") if isinstance(raw, str) else list(raw)  # type: ignore[call-overload]
            return tuple(str(i).strip().lower() for i in items if str(i).strip())
        return str(raw)
    except (TypeError, ValueError, InvalidOperation) as exc:
        raise ConfigError(f"{where}: cannot use {raw!r} ({exc})") from exc


def _apply(section: str, obj: Any, values: Mapping[str, object]) -> Any:
    known = {f.name: f for f in dataclasses.fields(obj)}
    changes: dict[str, object] = {}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {section}.{key}; known: {', '.join(known)}")
        changes[key] = _coerce(section, key, getattr(obj, key), raw)
    return dataclasses.replace(obj, **changes)


def validate(cfg: AppConfig) -> AppConfig:
    """Reject settings that cannot work, with a message that names the setting."""
    if cfg.exchange.profile not in EXCHANGE_PROFILES:
        raise ConfigError(
            f"exchange.profile {cfg.exchange.profile!r} is not one of {sorted(EXCHANGE_PROFILES)}"
        )
    if not cfg.feed.symbols:
        raise ConfigError("feed.symbols is empty: configure at least one symbol")
    if cfg.feed.depth_mode not in {"partial", "diff"}:
        raise ConfigError("feed.depth_mode must be 'partial' or 'diff'")
    if cfg.feed.depth_levels not in {5, 10, 20}:
        raise ConfigError("feed.depth_levels must be 5, 10 or 20 (Binance's partial depths)")
    if cfg.store.batch_max < 1 or cfg.store.flush_interval_s <= 0:
        raise ConfigError("store.batch_max must be >= 1 and store.flush_interval_s > 0")
    for key, bound in RUNTIME.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if bound.kind == "symbols":
            bad = [s for s in value if not _SYMBOL.match(s)]
            if bad:
                raise ConfigError(f"{key}: {', '.join(map(repr, bad))} is not a symbol")
            if len(value) > bound.high:
                raise ConfigError(f"{key}: at most {bound.high} symbols")
            if len(set(value)) != len(value):
                raise ConfigError(f"{key}: a symbol is listed twice")
            continue
        if not bound.low <= Decimal(value) <= bound.high:
            raise ConfigError(
                f"{key}: {value} is outside [{bound.low}, {bound.high}]"
                f"{' (set by ' + cfg.source(key) + ')' if cfg.source(key) != 'default' else ''}"
            )
    return cfg


def with_saved(cfg: AppConfig, saved: Mapping[str, object]) -> tuple[AppConfig, list[str]]:
    """``cfg`` with the saved runtime settings applied where no CLI flag set the value.

    Returns the problems with saved values that were skipped (unknown, or no longer valid), for
    an alarm: a saved setting must never keep the engine from starting.
    """
    problems: list[str] = []
    for key, raw in saved.items():
        if key not in RUNTIME:
            problems.append(f"saved setting {key} is not a runtime setting; ignored")
            continue
        if cfg.source(key) == "cli":
            continue
        try:
            cfg = with_changes(cfg, {key: raw}, "saved")
        except ConfigError as exc:
            problems.append(f"saved setting ignored: {exc}")
    return cfg, problems


def with_changes(cfg: AppConfig, changes: Mapping[str, object], source: Source) -> AppConfig:
    """``cfg`` with runtime ``changes`` ("section.key" -> value), validated as a whole."""
    sections: dict[str, Any] = {name: getattr(cfg, name) for name in _SECTIONS}
    sources = dict(cfg.sources)
    for key, raw in changes.items():
        if key not in RUNTIME:
            raise ConfigError(f"{key} cannot be changed at run time; known: {', '.join(RUNTIME)}")
        section, name = key.split(".")
        value = raw
        if RUNTIME[key].kind == "int":
            if not _is_whole(raw):
                raise ConfigError(f"{key}: {raw!r} is not a whole number")
            value = int(Decimal(str(raw)))
        sections[section] = _apply(section, sections[section], {name: value})
        sources[key] = source
    return validate(dataclasses.replace(cfg, sources=sources, **sections))


def _is_whole(raw: object) -> bool:
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return False
    return value.is_finite() and value == value.to_integral_value()


def load(
    data_dir: Path,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Mapping[str, object],
) -> AppConfig:
    """Build the configuration from defaults, an optional TOML file, the environment and overrides.

    ``overrides`` maps a section name to settings, for the CLI's own flags.
    """
    environ = os.environ if environ is None else environ
    sections: dict[str, Any] = {name: cls() for name, cls in _SECTIONS.items()}
    sources: dict[str, Source] = {}
    if config_file is not None:
        try:
            doc = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {config_file}: {exc}") from exc
        for name, values in doc.items():
            if name not in sections or not isinstance(values, dict):
                raise ConfigError(f"{config_file}: unknown section [{name}]")
            sections[name] = _apply(name, sections[name], values)
            sources.update({f"{name}.{k}": "toml" for k in values})
    for name, section in list(sections.items()):
        prefix = f"APPLIANCE_{name.upper()}_"
        env_values = {
            k[len(prefix) :].lower(): v for k, v in environ.items() if k.startswith(prefix)
        }
        if env_values:
            sections[name] = _apply(name, section, env_values)
            sources.update({f"{name}.{k}": "env" for k in env_values})
    for name, values in overrides.items():
        sections[name] = _apply(name, sections[name], values)
        sources.update({f"{name}.{k}": "cli" for k in values})
    return validate(AppConfig(data_dir=data_dir, sources=sources, **sections))

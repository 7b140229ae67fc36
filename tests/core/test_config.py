"""Configuration layers: defaults, TOML file, environment, overrides; clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import config
from app.errors import ConfigError


def test_layers_later_wins(tmp_path: Path) -> None:
    toml = tmp_path / "appliance.toml"
    toml.write_text(
        '[feed]\nsymbols = ["SOLUSDT"]\nstale_after_s = 3\n[exchange]\nprofile = "testnet"\n'
    )
    env = {"APPLIANCE_FEED_STALE_AFTER_S": "4.5", "APPLIANCE_STORE_BATCH_MAX": "10"}
    cfg = config.load(tmp_path, toml, env, exchange={"rest_url": "http://127.0.0.1:1"})
    assert cfg.feed.symbols == ("solusdt",)
    assert cfg.feed.stale_after_s == 4.5
    assert cfg.store.batch_max == 10
    assert cfg.exchange.profile == "testnet"
    assert cfg.exchange.rest_base == "http://127.0.0.1:1"
    assert cfg.exchange.ws_base == config.EXCHANGE_PROFILES["testnet"][1]
    assert cfg.control_socket == tmp_path / "control.sock"


def test_defaults_point_at_the_simulator(tmp_path: Path) -> None:
    cfg = config.load(tmp_path, None, {})
    assert cfg.exchange.profile == "sim"
    assert cfg.exchange.rest_base.startswith("http://127.0.0.1:")
    assert "btcusdt@depth20@100ms" in cfg.feed.streams()
    assert len(cfg.feed.streams()) == 4 * len(cfg.feed.symbols)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APPLIANCE_FEED_NOPE": "1"}, "unknown setting feed.nope"),
        ({"APPLIANCE_FEED_STALE_AFTER_S": "soon"}, "feed.stale_after_s: cannot use 'soon'"),
        ({"APPLIANCE_EXCHANGE_PROFILE": "mainnet"}, "exchange.profile 'mainnet' is not one of"),
        ({"APPLIANCE_FEED_SYMBOLS": " , "}, "feed.symbols is empty"),
        ({"APPLIANCE_FEED_DEPTH_LEVELS": "15"}, "depth_levels must be 5, 10 or 20"),
    ],
)
def test_bad_settings_name_the_setting(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(tmp_path, None, env)


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[feed\n")
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path, bad, {})
    (tmp_path / "s.toml").write_text("[nope]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        config.load(tmp_path, tmp_path / "s.toml", {})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("risk.max_leverage", "50", r"risk.max_leverage: 50 is outside \[0.1, 10\]"),
        ("risk.risk_per_trade", "0.5", r"risk.risk_per_trade: 0.5 is outside \[0.0001, 0.05\]"),
        ("risk.losing_streak", "2.5", "risk.losing_streak: '2.5' is not a whole number"),
        ("feed.symbols", "btc/usdt", "feed.symbols: 'btc/usdt' is not a symbol"),
        ("feed.symbols", "btcusdt,btcusdt", "listed twice"),
        ("engine.status_interval_s", "1", "cannot be changed at run time"),
    ],
)
def test_runtime_changes_obey_the_bounds(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.with_changes(config.AppConfig(), {key: value}, "saved")


def test_a_config_file_obeys_the_same_bounds(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text("[risk]\nmax_leverage = 25\n")
    with pytest.raises(ConfigError, match=r"max_leverage: 25 is outside .*\(set by toml\)"):
        config.load(tmp_path, toml, {})


def test_saved_settings_sit_between_environment_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text("[risk]\nmax_leverage = 2\nlosing_streak = 5\n")
    env = {"APPLIANCE_RISK_COOLDOWN_MINUTES": "10"}
    cfg = config.load(tmp_path, toml, env, feed={"symbols": "solusdt"})
    assert [cfg.source(k) for k in ("risk.max_leverage", "risk.cooldown_minutes")] == [
        "toml",
        "env",
    ]
    assert (cfg.source("feed.symbols"), cfg.source("risk.max_drawdown")) == ("cli", "default")
    saved = {
        "risk.max_leverage": "4",  # wins over the file
        "risk.cooldown_minutes": "20",  # wins over the environment
        "feed.symbols": "btcusdt",  # a flag wins over a saved value
        "risk.max_daily_loss": "0.9",  # out of bounds since it was saved: skipped, said
        "risk.nonsense": "1",
    }
    merged, problems = config.with_saved(cfg, saved)
    assert str(merged.risk.max_leverage) == "4" and merged.source("risk.max_leverage") == "saved"
    assert merged.risk.cooldown_minutes == 20
    assert merged.risk.losing_streak == 5 and merged.source("risk.losing_streak") == "toml"
    assert merged.feed.symbols == ("solusdt",) and merged.source("feed.symbols") == "cli"
    assert merged.risk.max_daily_loss == config.RiskConfig().max_daily_loss
    assert len(problems) == 2
    assert "risk.max_daily_loss: 0.9 is outside" in problems[0]
    assert "risk.nonsense is not a runtime setting" in problems[1]
    assert config.setting_text(merged, "feed.symbols") == "solusdt"

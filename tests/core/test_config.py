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

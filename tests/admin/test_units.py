"""The panel's pieces with a ManualClock: throttle, sessions, passwords and set-up code, risk
bounds, charts, and the readers over a trading database written by the engine's own code."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from app.admin import charts
from app.admin.alerts import post_alert
from app.admin.config import AdminConfig
from app.admin.paneldb import PanelDb
from app.admin.passwords import (
    PasswordStore,
    ensure_setup_code,
    make_context,
    use_setup_code,
)
from app.admin.readers import EngineReader, TradeFilter
from app.admin.sessions import Sessions, hash_id
from app.admin.throttle import Throttle
from app.admin.uploads import UploadError, receive_upload
from app.admin.views.settings import parse_risk, parse_symbols
from app.clock import ManualClock
from app.contract import RiskLimits
from app.errors import ConfigError


@pytest.fixture
def cfg(tmp_path: Path) -> AdminConfig:
    return AdminConfig(data_dir=tmp_path)


@pytest.fixture
def pdb(cfg: AdminConfig) -> Iterator[PanelDb]:
    panel_db = PanelDb(cfg.panel_db)
    yield panel_db
    panel_db.close()


def test_throttle_grows_caps_and_forgets(cfg: AdminConfig, pdb: PanelDb) -> None:
    clock = ManualClock()
    throttle = Throttle(cfg, pdb, clock)
    delays = [throttle.failure("10.0.0.1") for _ in range(14)]
    assert delays[:2] == [0.0, 0.0]
    assert delays[2:6] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == cfg.throttle_max_delay_s  # capped: never a permanent lock-out
    assert throttle.wait_s("10.0.0.1") == cfg.throttle_max_delay_s
    assert throttle.wait_s("10.0.0.2") == 0.0  # per client
    clock.advance(cfg.throttle_max_delay_s)
    assert throttle.wait_s("10.0.0.1") == 0.0
    clock.advance(cfg.throttle_forget_after_s)
    assert throttle.failure("10.0.0.1") == 0.0  # a quiet hour later it starts over
    throttle.success("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == 0.0


def test_sessions_idle_and_absolute_timeouts(cfg: AdminConfig, pdb: PanelDb) -> None:
    clock = ManualClock()
    sessions = Sessions(cfg, pdb, clock)
    token = sessions.create("admin", "127.0.0.1", "test")
    assert pdb.rows("SELECT id_hash FROM sessions") == [(hash_id(token),)]
    assert sessions.lookup(token) is not None
    clock.advance(cfg.idle_timeout_s + 1)
    assert sessions.lookup(token) is None  # idle too long
    busy = sessions.create("admin", "127.0.0.1", "test")
    for _ in range(int(cfg.absolute_timeout_s // (cfg.idle_timeout_s / 2)) + 1):
        clock.advance(cfg.idle_timeout_s / 2)
        if sessions.lookup(busy) is None:
            break
    else:
        raise AssertionError("a busy session outlived the absolute timeout")
    other = sessions.create("admin", "127.0.0.2", "test")
    assert [s.client for s in sessions.active()] == ["127.0.0.2"]
    assert sessions.revoke(hash_id(other)) and sessions.lookup(other) is None


def test_password_hashing_is_argon2_and_warning_free(cfg: AdminConfig) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = PasswordStore(cfg, make_context())
        assert not store.is_set() and not store.verify("anything at all")
        store.set("a long enough password")
        assert store.verify("a long enough password")
        assert not store.verify("a long enough passwore")
    text = cfg.password_file.read_text()
    assert text.startswith("$argon2id$") and cfg.password_file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="at least"):
        store.set("short")
    store.set("é" * 40 + "x" * 100)  # long and non-ASCII: no 72-byte truncation
    assert store.verify("é" * 40 + "x" * 100) and not store.verify("é" * 40 + "x" * 99)


def test_setup_code_is_single_use_and_expires(
    cfg: AdminConfig, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    store = PasswordStore(cfg, make_context())
    code = ensure_setup_code(cfg, store, clock)
    assert code is not None and f"setup code: {code.code}" in caplog.text
    assert ensure_setup_code(cfg, store, clock) == code  # same code while valid, logged once
    assert caplog.text.count("setup code:") == 1
    assert use_setup_code(cfg, code.code.lower(), clock)
    assert not use_setup_code(cfg, "ABCD-EFGH", clock)
    clock.advance(cfg.setup_code_ttl_s + 1)
    assert not use_setup_code(cfg, code.code, clock)
    fresh = ensure_setup_code(cfg, store, clock)
    assert fresh is not None and fresh.code != code.code
    store.set("now a password is set")
    assert ensure_setup_code(cfg, store, clock) is None


def test_risk_form_is_parsed_and_left_to_the_engine_to_bound() -> None:
    limits, problems = parse_risk({"risk_per_trade": "0.01", "max_drawdown": "x"})
    assert limits is None and problems == ["max drawdown: 'x' is not a number"]
    limits, problems = parse_risk(
        {"risk_per_trade": "0.01", "losing_streak": "4", "max_leverage": ""}
    )
    assert problems == [] and limits == RiskLimits(risk_per_trade=Decimal("0.01"), losing_streak=4)
    # Out of bounds is the engine's verdict (app.config.RUNTIME), not the page's.
    limits, problems = parse_risk({"max_leverage": "50"})
    assert limits == RiskLimits(max_leverage=Decimal(50)) and problems == []
    assert parse_symbols("BTCUSDT, ethusdt") == ["btcusdt", "ethusdt"]


def test_charts_are_plain_svg() -> None:
    line = charts.line_chart("Equity", [(1, Decimal("10")), (2, Decimal("12")), (3, Decimal("11"))])
    assert line.startswith("<svg") and "<polyline" in line and "<script" not in line
    assert "style=" not in line
    bars = charts.bar_chart("Daily", [("01-01", Decimal("-2")), ("01-02", Decimal("3"))])
    assert 'class="loss"' in bars and 'class="gain"' in bars
    assert "no data yet" in charts.line_chart("Equity", [])
    assert "&lt;x&gt;" in charts.line_chart("<x>", [(1, Decimal(1))])


def test_readers_over_the_engines_own_tables(tmp_path: Path) -> None:
    from app.engine.orders import Fill, Liquidity, Side
    from app.engine.portfolio import EquityPoint, append_equity
    from app.store import db, schema

    conn = db.connect(tmp_path / "trading.db", synchronous="FULL")
    db.migrate(conn, schema.TRADING_MIGRATIONS)
    day = 86_400 * 10**9
    t0 = 20_000 * day
    append_equity(
        conn,
        [
            EquityPoint(
                t0 + i * 3_600 * 10**9,
                Decimal(10_000 + i),
                Decimal(i),
                Decimal(0),
                Decimal("0.1"),
                Decimal(0),
            )
            for i in range(48)
        ],
    )
    from app.engine.orders import save_fills

    conn.execute(
        "INSERT INTO orders (client_id, ts_created_ns, ts_updated_ns, symbol, side, type, qty, "
        "reduce_only, model_version, purpose, status, filled_qty, fees, reason) "
        "VALUES ('c1', 1, 1, 'btcusdt', 'BUY', 'MARKET', '0.01', 0, 'm', 'entry', 'FILLED', "
        "'0.01', '0.02', '')"
    )
    fills = [
        (
            Fill(
                "c1",
                "btcusdt",
                Side.BUY,
                Decimal("50000"),
                Decimal("0.001"),
                Decimal("0.02"),
                Liquidity.TAKER,
                t0 + i,
            ),
            Decimal(0),
        )
        for i in range(120)
    ]
    save_fills(conn, fills)
    conn.close()
    reader = EngineReader(tmp_path)
    series = reader.equity_series(0, 10)
    assert 2 <= len(series) <= 11 and series[-1].equity == Decimal(10_047)
    summary = reader.pnl_summary(t0 + 47 * 3_600 * 10**9)
    assert summary is not None and summary.today == Decimal(47 - 23)
    assert [v for _, v in reader.daily_pnl()] == [Decimal(23), Decimal(24)]
    rows, total = reader.trades(TradeFilter(symbol="btcusdt", side="BUY"), 100, 50)
    assert total == 120 and len(rows) == 20
    assert reader.trades(TradeFilter(side="SELL"))[1] == 0
    assert reader.fee_funding_totals()[0] == Decimal("2.40")
    # A missing database or table is "nothing yet", never an error.
    assert EngineReader(tmp_path / "nowhere").equity_series() == []


async def test_upload_is_streamed_with_a_size_limit(tmp_path: Path) -> None:
    boundary = "XyZ"

    def body(payload: bytes) -> list[bytes]:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"; '
            f'filename="m.onnx"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        whole = head + payload + f"\r\n--{boundary}--\r\n".encode()
        return [whole[i : i + 1000] for i in range(0, len(whole), 1000)]

    async def stream(chunks: list[bytes]):  # type: ignore[no-untyped-def]
        for c in chunks:
            yield c

    ctype = f"multipart/form-data; boundary={boundary}"
    up = await receive_upload(ctype, stream(body(b"a" * 5000)), tmp_path / "up", 10_000)
    assert up.size == 5000 and up.path.read_bytes() == b"a" * 5000
    assert (tmp_path / "up").stat().st_mode & 0o777 == 0o750
    with pytest.raises(UploadError, match="larger"):
        await receive_upload(ctype, stream(body(b"b" * 20_000)), tmp_path / "up", 10_000)
    assert len(list((tmp_path / "up").iterdir())) == 1  # the refused file is gone


async def test_alerts_reach_a_local_webhook() -> None:
    received: list[dict[str, object]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        received.append(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        problem = await post_alert(
            f"http://127.0.0.1:{port}/hook",
            {"kind": "disk_full", "message": "m", "state": "raised"},
        )
    assert problem == ""
    assert received == [
        {"source": "appliance-panel", "kind": "disk_full", "message": "m", "state": "raised"}
    ]
    refused = await post_alert(f"http://127.0.0.1:{port}/hook", {"kind": "x"})
    assert refused  # the receiver is gone: reported, not raised

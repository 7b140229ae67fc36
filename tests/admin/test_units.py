"""The panel's pieces with a ManualClock: throttle, sessions, passwords and set-up code, risk
bounds, charts, and the readers over a trading database written by the engine's own code."""

from __future__ import annotations

import asyncio
import json
import time
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.admin import charts
from app.admin.alerts import post_alert
from app.admin.config import AdminConfig
from app.admin.paneldb import PanelDb
from app.admin.passwords import (
    HASH_SLOTS,
    PasswordStore,
    ensure_setup_code,
    make_context,
    use_setup_code,
)
from app.admin.readers import EngineReader, TradeFilter
from app.admin.redact import hide_paths
from app.admin.security import SecurityHeaders
from app.admin.sessions import Sessions, hash_id
from app.admin.state import build_panel
from app.admin.throttle import Throttle, address_key, session_key
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
    delays = []
    for _ in range(14):
        claim = throttle.attempt("10.0.0.1")
        assert claim.granted
        delays.append(claim.delay_s)
        clock.advance(claim.delay_s)
    assert delays[:2] == [0.0, 0.0]
    assert delays[2:6] == [1.0, 2.0, 4.0, 8.0]
    assert max(delays) == cfg.throttle_max_delay_s  # capped: never a permanent lock-out
    throttle.attempt("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == cfg.throttle_max_delay_s
    assert throttle.wait_s("10.0.0.2") == 0.0  # per key
    clock.advance(cfg.throttle_max_delay_s)
    assert throttle.wait_s("10.0.0.1") == 0.0
    clock.advance(cfg.throttle_forget_after_s)
    assert throttle.attempt("10.0.0.1").delay_s == 0.0  # a quiet hour later it starts over
    throttle.success("10.0.0.1")
    assert throttle.wait_s("10.0.0.1") == 0.0


def test_throttle_counts_an_attempt_before_its_check(cfg: AdminConfig, pdb: PanelDb) -> None:
    """Attempts that have not answered yet use up the allowance: no clock moves between them."""
    throttle = Throttle(cfg, pdb, ManualClock())
    claims = [throttle.attempt(address_key("10.0.0.1")) for _ in range(100)]
    assert sum(c.granted for c in claims) == cfg.throttle_free_attempts
    assert all(c.wait_s > 0 for c in claims[cfg.throttle_free_attempts :])
    # Another key (a session's re-entered password) has its own allowance.
    assert throttle.attempt(session_key("ab" * 32)).granted


def test_throttle_refusal_says_exactly_how_long_to_wait(cfg: AdminConfig, pdb: PanelDb) -> None:
    """The Retry-After a locked-out operator sees is the time left, not the whole delay."""
    clock = ManualClock()
    throttle = Throttle(cfg, pdb, clock)
    claims = [throttle.attempt("10.0.0.1") for _ in range(cfg.throttle_free_attempts)]
    assert claims[-1].delay_s == cfg.throttle_base_delay_s == 1.0
    clock.advance(0.25)
    refused = throttle.attempt("10.0.0.1")
    assert not refused.granted
    assert refused.wait_s == 0.75
    assert throttle.wait_s("10.0.0.1") == 0.75


def test_throttle_forgets_failures_after_exactly_the_quiet_period(
    cfg: AdminConfig, pdb: PanelDb
) -> None:
    """Failures are remembered for ``throttle_forget_after_s`` after the last attempt (not after
    the end of its delay), and forgotten from that instant on."""
    clock = ManualClock()
    throttle = Throttle(cfg, pdb, clock)
    start = clock.now_ns
    for key in ("early", "on-time"):
        for _ in range(cfg.throttle_free_attempts):
            throttle.attempt(key)  # the last of these imposes a delay of 1 s
    forget_ns = int(cfg.throttle_forget_after_s * 1_000_000_000)
    clock.now_ns = start + forget_ns - 1
    assert throttle.attempt("early").delay_s == 2.0  # still counted: the next delay doubles
    clock.now_ns = start + forget_ns
    assert throttle.attempt("on-time").delay_s == 0.0  # a quiet hour: it starts over


class _SlowContext:
    """A stand-in for passlib's context that records how many checks overlap."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.calls = 0

    def hash(self, password: str) -> str:
        return "$fake$" + password

    def verify(self, password: str, stored: str) -> bool:
        self.running += 1
        self.calls += 1
        self.peak = max(self.peak, self.running)
        time.sleep(0.02)
        self.running -= 1
        return stored == "$fake$" + password


def test_password_checks_run_at_most_hash_slots_at_once(cfg: AdminConfig) -> None:
    ctx = _SlowContext()
    store = PasswordStore(cfg, ctx)
    store.set("correct horse battery")

    async def burst() -> list[bool]:
        checks = [asyncio.ensure_future(store.check("wrong password!")) for _ in range(12)]
        await asyncio.sleep(0.01)
        checks[-1].cancel()  # a client that gave up: its slot is not freed before the thread ends
        done = await asyncio.gather(*checks[:-1])
        return [*done, await store.check("correct horse battery")]

    results = asyncio.run(burst())
    assert results == [False] * 11 + [True]
    assert ctx.peak == HASH_SLOTS
    assert ctx.calls in (12, 13)  # the cancelled one may or may not have started


def test_a_500_carries_the_security_headers() -> None:
    async def boom(request: Request) -> Response:
        raise RuntimeError("/srv/secret/path went wrong")

    app = Starlette(routes=[Route("/boom", boom)], middleware=[Middleware(SecurityHeaders)])

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://panel") as client:
            return await client.get("/boom")

    response = asyncio.run(get())
    assert response.status_code == 500
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "/srv/secret" not in response.text


def test_redact_hides_server_paths() -> None:
    assert hide_paths("no socket at /srv/data/control.sock") == "no socket at control.sock"
    up = "/srv/data/uploads/upload-0123.onnx"
    assert hide_paths(f"cannot load {up}: bad", {up: "'m.onnx'"}) == "cannot load 'm.onnx': bad"
    assert hide_paths("see https://example.com/a/b") == "see https://example.com/a/b"
    assert hide_paths("1/2 of a/b") == "1/2 of a/b"


def test_leftover_uploads_are_removed_at_start(cfg: AdminConfig) -> None:
    cfg.uploads_dir.mkdir(parents=True)
    (cfg.uploads_dir / "upload-00ff.onnx").write_bytes(b"x" * 10)
    (cfg.uploads_dir / "keep.txt").write_bytes(b"x")
    panel = build_panel(cfg, ManualClock())
    try:
        assert sorted(p.name for p in cfg.uploads_dir.iterdir()) == ["keep.txt"]
    finally:
        panel.db.close()


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

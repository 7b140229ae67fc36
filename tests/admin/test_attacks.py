"""The panel under attack, over real HTTP against a real `appliance admin` process (issue 14):
concurrent wrong logins, the operator's re-entered passwords, large anonymous bodies, out-of-range
parameters, 500s, and what uploads and messages leave behind.

Assertions are on counts and memory, never on times; the operator's page time during the login
burst is printed (``pytest -s``) as a figure, not asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.admin.config import AdminConfig

from .panelproc import PASSWORD, PanelHandle, csrf_from, login, page_token, running_panel
from .panelproc import set_password as set_panel_password

pytestmark = pytest.mark.slow

ATTACKER = "127.0.0.2"  # loopback, but not the operator's 127.0.0.1: a fresh address
MEMORY_MAX_MB = 400  # the image's unit: MemoryMax=400M
BURST = 100
MiB = 1024 * 1024


@pytest.fixture
def panel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PanelHandle]:
    """A panel with its password set and its own empty TMPDIR (where spooled bodies would go)."""
    data = tmp_path / "data"
    data.mkdir()
    set_panel_password(data)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    with running_panel(data) as handle:
        yield handle


@contextlib.contextmanager
def _logged_in(panel: PanelHandle) -> Iterator[httpx.Client]:
    with panel.client() as client:
        response = login(client)
        assert response.status_code == 303, response.text[:300]
        yield client


def _vm_hwm_mb(pid: int) -> float:
    """The process's peak resident set size (what a cgroup's MemoryMax is measured against)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _audit(panel: PanelHandle, client: str) -> dict[str, int]:
    """Login outcomes per kind for ``client``: "wrong password" rows are real password checks."""
    conn = sqlite3.connect(f"file:{panel.data_dir / 'panel.db'}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT outcome, count(*) FROM login_audit WHERE client = ? GROUP BY outcome",
            (client,),
        ).fetchall()
    finally:
        conn.close()
    return {str(k): int(v) for k, v in rows}


def _allowance(span_s: float) -> int:
    """Password checks the throttle allows one address within ``span_s`` seconds: the free
    attempts at once, then one more each time the delay (1, 2, 4, ... s) has passed."""
    cfg = AdminConfig(data_dir=Path("unused"))
    granted = cfg.throttle_free_attempts
    elapsed = 0.0
    while True:
        extra = granted - cfg.throttle_free_attempts
        elapsed += min(cfg.throttle_base_delay_s * 2.0**extra, cfg.throttle_max_delay_s)
        if elapsed > span_s:
            return granted
        granted += 1


async def _burst(panel: PanelHandle) -> list[int]:
    """BURST concurrent wrong-password POSTs to /login from ATTACKER, each on its connection."""
    transport = httpx.AsyncHTTPTransport(
        local_address=ATTACKER, limits=httpx.Limits(max_connections=BURST + 10)
    )
    async with httpx.AsyncClient(
        base_url=panel.base_url, transport=transport, timeout=120
    ) as client:
        token = csrf_from((await client.get("/login")).text)
        data = {"password": "not the password", "csrf_token": token}
        responses = await asyncio.gather(*(client.post("/login", data=data) for _ in range(BURST)))
    return [r.status_code for r in responses]


def _burst_with_operator(
    panel: PanelHandle, operator: httpx.Client
) -> tuple[list[float], list[int], float]:
    """Run the burst while the operator loads GET / in a loop; returns the operator's page
    times, the burst's status codes and its span in seconds."""
    times: list[float] = []
    statuses: list[int] = []
    done = threading.Event()

    def operator_pages() -> None:
        while not done.is_set():
            start = time.perf_counter()
            statuses.append(operator.get("/").status_code)
            times.append(time.perf_counter() - start)

    watcher = threading.Thread(target=operator_pages)
    start = time.monotonic()
    watcher.start()
    try:
        codes = asyncio.run(_burst(panel))
    finally:
        span = time.monotonic() - start
        done.set()
        watcher.join()
    assert set(statuses) == {200}
    return times, codes, span


def test_a_burst_of_wrong_logins_gets_the_allowance_of_checks_in_bounded_memory(
    panel: PanelHandle,
) -> None:
    with _logged_in(panel) as operator:
        times, codes, span = _burst_with_operator(panel, operator)
    audit = _audit(panel, ATTACKER)

    checks = audit.get("wrong password", 0)
    hwm = _vm_hwm_mb(panel.proc.pid)
    print(
        f"\n{BURST} concurrent wrong logins in {span:.2f} s: {checks} password checks, "
        f"{codes.count(429)} answered 429; panel VmHWM {hwm:.0f} MB; operator GET / during the "
        f"burst: {len(times)} requests, median {statistics.median(times) * 1000:.0f} ms, "
        f"max {max(times) * 1000:.0f} ms"
    )
    assert sorted(set(codes)) == [401, 429]
    assert codes.count(401) == checks
    assert checks + audit.get("throttled", 0) == BURST
    assert 1 <= checks <= _allowance(span)
    assert hwm < MEMORY_MAX_MB


def test_wrong_logins_from_the_operators_address_never_block_re_entered_passwords(
    panel: PanelHandle,
) -> None:
    with _logged_in(panel) as operator:
        _re_enter_after_wrong_logins(panel, operator)


def _re_enter_after_wrong_logins(panel: PanelHandle, operator: httpx.Client) -> None:
    with panel.client() as stranger:  # same address (127.0.0.1), no session
        codes = [login(stranger, "not the password").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    token = page_token(operator, "/mode")
    # Going live passes the password check; only the missing engine stops it (not a 403).
    live = operator.post(
        "/mode/live",
        data={"confirm": "GO LIVE", "password": PASSWORD, "csrf_token": token},
    )
    assert live.status_code == 422 and "too many" not in live.text, live.text[:300]
    new = PASSWORD + " two"
    changed = operator.post(
        "/settings/password",
        data={"current": PASSWORD, "new": new, "confirm": new, "csrf_token": token},
    )
    assert changed.status_code == 200 and "changed" in changed.text, changed.text[:300]
    # The session's own wrong answers are throttled, for that session only.
    wrong = [
        operator.post(
            "/mode/live", data={"confirm": "x", "password": "nope nope!", "csrf_token": token}
        )
        for _ in range(4)
    ]
    assert [w.status_code for w in wrong] == [403] * 4
    assert "wrong password" in wrong[0].text and "too many" in wrong[3].text
    with panel.client() as other_browser:
        time.sleep(1.1)  # the address's own delay from the four wrong logins above
        assert login(other_browser, new).status_code == 303


def _raw_post(
    panel: PanelHandle, path: str, headers: dict[str, str], total: int, *, chunked: bool
) -> tuple[int, int]:
    """POST a ``total``-byte multipart body over a raw socket, stopping as soon as the panel
    answers; returns (status, bytes of body the panel let us send before it answered)."""
    url = urlsplit(panel.base_url)
    boundary = "b0undary"
    prefix = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    suffix = f"\r\n--{boundary}--\r\n".encode()
    filler = total - len(prefix) - len(suffix)
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {url.hostname}:{url.port}",
        f"Content-Type: multipart/form-data; boundary={boundary}",
        *(f"{k}: {v}" for k, v in headers.items()),
        "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}",
    ]

    def frames() -> Iterator[bytes]:
        pieces = [prefix, *([b"a" * MiB] * (filler // MiB)), b"a" * (filler % MiB), suffix]
        for piece in pieces:
            if piece:
                yield (f"{len(piece):x}\r\n".encode() + piece + b"\r\n") if chunked else piece
        if chunked:
            yield b"0\r\n\r\n"

    sent = 0
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80)) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sock.setblocking(False)
        answered = False
        for frame in frames():
            view = memoryview(frame)
            while view and not answered:
                readable, writable, _ = select.select([sock], [sock], [], 30)
                if readable:
                    answered = True
                elif writable:
                    try:
                        n = sock.send(view)
                    except (BrokenPipeError, ConnectionResetError):
                        answered = True
                        break
                    sent += n
                    view = view[n:]
            if answered:
                break
        sock.setblocking(True)
        sock.settimeout(30)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/") else 0
    return status, sent


def _panel_temp_files(panel: PanelHandle, tmp_dir: Path) -> list[str]:
    """Files the panel has open under its TMPDIR (spooled temp files are unnamed but still show
    in /proc/<pid>/fd), and any file of a MiB or more left there."""
    found = [str(p) for p in tmp_dir.rglob("*") if p.is_file() and p.stat().st_size >= MiB]
    fd_dir = Path(f"/proc/{panel.proc.pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(tmp_dir)):
            found.append(target)
    return found


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_large_anonymous_body_is_refused_before_it_is_read(
    panel: PanelHandle, tmp_path: Path, chunked: bool
) -> None:
    total = 100 * MiB
    with panel.client() as c:
        token = csrf_from(c.get("/login").text)
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    headers = {"Cookie": cookie, "X-CSRF-Token": token}
    status, sent = _raw_post(panel, "/login", headers, total, chunked=chunked)
    assert status == 413
    # Loopback socket buffers take a few MiB; a spooled body would have been read to the end.
    assert sent < 16 * MiB, sent
    assert _panel_temp_files(panel, tmp_path / "tmp") == []
    # A private path is refused without a session before any of its body is read.
    status, sent = _raw_post(panel, "/models/upload", headers, total, chunked=chunked)
    assert status == 401 and sent < 16 * MiB, (status, sent)
    assert _vm_hwm_mb(panel.proc.pid) < MEMORY_MAX_MB


def _trading_db(panel: PanelHandle) -> None:
    from app.store import db, schema

    conn = db.connect(panel.data_dir / "trading.db", synchronous="FULL")
    db.migrate(conn, schema.TRADING_MIGRATIONS)
    conn.close()


SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("until=9999-12-31", "until"),
        ("since=9999-12-31", "since"),
        ("since=0001-01-01", "since"),
        ("until=2024-02-30", "until"),
        ("page=100000000000000000000", "page"),
        ("page=0", "page"),
    ],
)
def test_out_of_range_parameters_answer_400_with_a_message(
    panel: PanelHandle, query: str, named: str
) -> None:
    _trading_db(panel)
    with _logged_in(panel) as client:
        for path in ("/pnl", "/pnl/trades.csv") if named != "page" else ("/pnl",):
            response = client.get(f"{path}?{query}")
            assert response.status_code == 400, (path, query, response.status_code)
            assert f"{named}: expected" in response.text, response.text
            assert all(h in response.headers for h in SECURITY_HEADERS)
        fine = client.get("/pnl/trades.csv?since=2024-01-01&until=2261-12-31")
        assert fine.status_code == 200


def test_a_500_carries_the_security_headers(panel: PanelHandle) -> None:
    # A trading database whose fills table lacks the columns the reader asks for: an honest bug.
    conn = sqlite3.connect(panel.data_dir / "trading.db")
    conn.execute("CREATE TABLE fills (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with _logged_in(panel) as client:
        response = client.get("/pnl/trades.csv")
    assert response.status_code == 500
    assert all(h in response.headers for h in SECURITY_HEADERS), response.headers
    assert response.headers["cache-control"] == "no-store"
    assert str(panel.data_dir) not in response.text


def test_uploads_leave_nothing_behind_and_messages_name_no_server_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    uploads = data / "uploads"
    uploads.mkdir(parents=True)
    set_panel_password(data)
    (uploads / "upload-0123456789abcdef.onnx").write_bytes(b"left by a crash")
    with running_panel(data) as handle, _logged_in(handle) as client:
        assert list(uploads.iterdir()) == []  # cleaned at start
        token = page_token(client, "/models")
        response = client.post(
            "/models/upload",
            files={"model": ("m.onnx", b"\x08\x01" * 100, "application/octet-stream")},
            headers={"X-CSRF-Token": token, "HX-Request": "true"},
        )
        assert response.status_code == 422 and "engine not running" in response.text
        assert str(data) not in response.text and "/control.sock" not in response.text
        assert list(uploads.iterdir()) == []  # refused: removed
        for page in ("/", "/models", "/mode"):
            assert str(data) not in client.get(page).text, page

"""Fetching a bundle from an address: a real HTTP server on loopback."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.update import fetch
from app.update.bundle import BundleError


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
            return
        if self.path == "/unsized":  # no Content-Length: the cap must hold while streaming
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"x" * 5000)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "b.update").write_bytes(b"bundle bytes " * 1000)
    (root / "empty.update").write_bytes(b"")

    def handler(*args: object) -> _Handler:
        return _Handler(*args, directory=str(root))  # type: ignore[arg-type]

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_bundle_is_streamed_to_a_new_file(server: str, tmp_path: Path) -> None:
    path, size = fetch.download(f" {server}/b.update\n", tmp_path / "dl", 1 << 20)
    assert size == 13_000 and path.read_bytes() == b"bundle bytes " * 1000
    assert path.parent == tmp_path / "dl" and path.suffix == ".update"


@pytest.mark.parametrize(
    ("what", "max_bytes", "says"),
    [
        ("/missing.update", 1 << 20, "could not download {u}: HTTP 404 File not found"),
        ("/b.update", 12_999, "refused: {u} is 13,000 bytes, more than the 12,999 an update"),
        ("/unsized", 4096, "refused: {u} is more than the 4,096 bytes an update bundle may be"),
        ("/empty.update", 1 << 20, "refused: {u} is empty"),
        ("/to-file", 1 << 20, "could not download {u}: HTTP 302"),
    ],
)
def test_a_bad_address_is_refused_and_leaves_nothing(
    server: str, tmp_path: Path, what: str, max_bytes: int, says: str
) -> None:
    url = server + what
    with pytest.raises(BundleError) as info:
        fetch.download(url, tmp_path / "dl", max_bytes)
    assert str(info.value).startswith(says.format(u=url)), str(info.value)
    assert list((tmp_path / "dl").iterdir()) == []


def test_nothing_listening_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/b.update"
    with pytest.raises(BundleError, match=f"could not download {url}: .*refused"):
        fetch.download(url, tmp_path, 1 << 20)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url",
    ["", "file:///etc/passwd", "ftp://host/b.update", "http://", "http://host/a b", "b.update"],
)
def test_only_http_addresses_are_taken(url: str) -> None:
    with pytest.raises(BundleError, match="must be an http:// or https:// URL"):
        fetch.check_url(url)

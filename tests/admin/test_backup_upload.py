"""The System page's archive upload, short of the engine: CSRF as every form, its own size limit
(refused from the declared length before a byte of the body is read), a missing file named, and
with the engine down the reason shown and nothing left behind. The upload that the engine takes in
and the restore that follows are driven in a browser (tests/admin/test_browser_restore.py); the
verdicts on truncated, foreign and tampered files in tests/store/test_archive.py."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import httpx

from app.admin.config import AdminConfig
from app.store import archive
from tests.admin.conftest import PanelHandle
from tests.admin.panelproc import page_token

MiB = 1024 * 1024


def _post_archive(client: httpx.Client, token: str, body: bytes, name: str) -> httpx.Response:
    return client.post(
        "/system/upload",
        files={"archive": (name, body, "application/zstd")},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )


def test_the_upload_form_is_on_the_system_page(client: httpx.Client) -> None:
    page = client.get("/system").text
    assert 'hx-post="/system/upload"' in page and 'hx-encoding="multipart/form-data"' in page
    assert 'name="archive" type="file"' in page
    assert f"at most {AdminConfig.archive_upload_max_bytes // MiB} MiB" in page


def test_an_upload_without_the_csrf_token_is_refused(client: httpx.Client) -> None:
    response = client.post(
        "/system/upload", files={"archive": ("a.tar.zst", b"x" * 100, "application/zstd")}
    )
    assert response.status_code == 403 and "CSRF" in response.text


def test_an_upload_without_its_file_is_named(client: httpx.Client) -> None:
    token = page_token(client, "/system")
    response = client.post(
        "/system/upload",
        files={"model": ("m.onnx", b"x" * 100, "application/octet-stream")},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert response.status_code == 400
    assert "no file in the upload (field &#39;archive&#39;)" in response.text


def test_with_the_engine_down_the_reason_is_shown_and_nothing_kept(
    panel: PanelHandle, client: httpx.Client
) -> None:
    token = page_token(client, "/system")
    response = _post_archive(client, token, b"\x28\xb5\x2f\xfd" + bytes(100), "mine.tar.zst")
    assert response.status_code == 422 and "engine not running" in response.text
    assert str(panel.data_dir) not in response.text
    assert list((panel.data_dir / "uploads").iterdir()) == []
    assert archive.list_archives(panel.data_dir / "backups") == []


def test_an_archive_over_the_limit_is_refused_before_its_body_is_read(
    panel: PanelHandle, client: httpx.Client
) -> None:
    token = page_token(client, "/system")
    url = urlsplit(panel.base_url)
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    head = [
        "POST /system/upload HTTP/1.1",
        f"Host: {url.hostname}:{url.port}",
        "Content-Type: multipart/form-data; boundary=b0undary",
        f"Cookie: {cookie}",
        f"X-CSRF-Token: {token}",
        f"Content-Length: {AdminConfig.archive_upload_max_bytes + 65 * 1024}",
    ]
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), 20) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        answer = ""
        while "MiB" not in answer and (chunk := sock.recv(4096)):
            answer += chunk.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert f"at most {AdminConfig.archive_upload_max_bytes // MiB} MiB" in answer

"""A system update through the panel: the real panel, engine and simulator processes; the root side
(``appliance update serve``) run in-process against the panel's spool, with a stand-in for
systemd-sysupdate (it would write this machine's disk)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import config as config_mod
from app import contract
from app.update import bundle, install, request, rollback
from tests.admin.panelproc import PASSWORD, csrf_from, login, running_panel, set_password
from tests.handlers import call_engine
from tests.integration.engineproc import (
    REPO,
    appliance,
    running_engine,
    spawn,
    status,
    stop,
    wait_for,
)
from tests.simproc import running_sim


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("update")
    data = root / "data"
    data.mkdir()
    public = bundle.generate_key(root / "signing.pem")
    (root / "update-key.pem").write_bytes(public)
    set_password(data)
    (root / "os-release").write_text('ID=debian\nIMAGE_VERSION="9.0.0"\n')
    keys = ("--update-key", str(root / "update-key.pem"), "--os-release", str(root / "os-release"))
    with running_sim("--seed", "7") as sim:
        with running_engine(data, sim.rest_url, sim.ws_url, log=root / "engine.log"):
            with running_panel(data, *keys, log=root / "panel.log") as panel:
                yield {"root": root, "data": data, "panel": panel, "public": public}


@pytest.fixture
def client(stack: dict[str, Any]) -> Iterator[httpx.Client]:
    with stack["panel"].client() as c:
        assert login(c).status_code == 303
        yield c


def _bundle(root: Path, version: str) -> Path:
    # Larger than a form may be (256 KiB): the upload must take the gate's streamed path.
    (root / "root.img").write_bytes(os.urandom(300_000) + bytes(50_000))
    (root / "uki.efi").write_bytes(b"MZ" + bytes(1000))
    out = root / f"appliance_{version}.update"
    bundle.write_bundle(
        out,
        version=version,
        root_image=root / "root.img",
        uki=root / "uki.efi",
        private_key=root / "signing.pem",
    )
    return out


def _upload(
    client: httpx.Client, path: Path, password: str = PASSWORD, flatten: bool = False
) -> httpx.Response:
    token = csrf_from(client.get("/system").text)
    fields = {"password": password, "reboot": "on"} | ({"flatten": "on"} if flatten else {})
    return client.post(
        "/system/update",
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
        files={"bundle": (path.name, path.read_bytes(), "application/octet-stream")},
        data=fields,
    )


def test_a_bundle_goes_from_the_panel_to_the_installer_and_back(
    stack: dict[str, Any], client: httpx.Client
) -> None:
    root, spool = stack["root"], stack["data"] / "update"
    r = _upload(client, _bundle(root, "9.0.1"))
    assert r.status_code == 202, r.text[:400]
    assert "Version 9.0.1 checked" in r.text and "every checksum good" in r.text
    assert 'hx-get="/system/update/status"' in r.text  # it polls
    assert sorted(p.name for p in spool.iterdir()) == ["pending.update", "request.json"]

    # Root's side, as appliance-update-request.service runs it.
    log = root / "sysupdate.log"
    (root / "sysupdate").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (root / "sysupdate").chmod(0o755)
    socket_path = config_mod.load(stack["data"].resolve(), None, None).control_socket
    rebooted: list[bool] = []

    def install_fn(path: Path, say: Any) -> str:
        m = install.install(
            path,
            stack["public"],
            trading=install.engine_trading(socket_path),
            running="9.0.0",
            staging=root / "staged",
            sysupdate=[str(root / "sysupdate")],
            say=say,
        )
        return m.version

    assert request.serve(spool, install_fn, lambda: rebooted.append(True)) == "rebooting"
    assert rebooted == [True] and log.read_text() == "update 9.0.1\n"
    assert sorted(p.name for p in spool.iterdir()) == ["status.json"]

    status = client.get("/system/update/status", headers={"HX-Request": "true"})
    assert status.status_code == 200
    assert '<strong id="update-state">Restarting</strong> version 9.0.1' in status.text
    assert "version 9.0.1 asked for by panel:admin@127.0.0.1" in status.text
    assert "checking the signature and checksums, then unpacking" in status.text
    assert "hx-trigger" not in status.text  # done: no more polling
    assert "Restarting" in client.get("/system").text


@pytest.mark.parametrize("case", ["tampered", "unsigned", "other key", "wrong password"])
def test_a_bad_bundle_or_password_is_refused_at_once(
    stack: dict[str, Any], client: httpx.Client, case: str, tmp_path: Path
) -> None:
    spool = stack["data"] / "update"
    before = sorted(p.name for p in spool.iterdir()) if spool.exists() else []
    path = _bundle(stack["root"], "9.0.2")
    if case == "tampered":
        data = bytearray(path.read_bytes())
        data[bundle.verify_bundle(path, stack["public"]).root.offset + 7] ^= 1
        path.write_bytes(data)
    elif case == "unsigned":
        import tarfile

        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
        del members[bundle.SIG]
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
            import io

            for name, blob in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    elif case == "other key":
        bundle.generate_key(tmp_path / "other.pem")
        (stack["root"] / "root.img").write_bytes(b"x" * 4096)
        bundle.write_bundle(
            path,
            version="9.0.2",
            root_image=stack["root"] / "root.img",
            uki=stack["root"] / "uki.efi",
            private_key=tmp_path / "other.pem",
        )
    r = _upload(
        client,
        path,
        password="wrong" if case == "wrong password" else PASSWORD,
    )
    expected = {
        "tampered": (422, "root.raw.zst does not match its checksum"),
        "unsigned": (422, "refused: not signed: manifest.json where SHA256SUMS.sig must be"),
        "other key": (422, "the signature does not match this appliance&#39;s update key"),
        "wrong password": (403, "Not updated: wrong password"),
    }[case]
    assert (r.status_code, expected[1] in r.text) == (expected[0], True), r.text[:600]
    after = sorted(p.name for p in spool.iterdir()) if spool.exists() else []
    assert after == before  # nothing queued for root
    uploads = stack["data"] / "uploads"
    assert not list(uploads.glob("*.update"))  # and no upload left behind


SIM_KEY, SIM_SECRET = "simTestApiKey0001", "simTestApiSecret0001"


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Live trading on the simulator with a model that goes long at every decision."""
    onnx = pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("update-live")
    data = root / "data"
    data.mkdir()
    public = bundle.generate_key(root / "signing.pem")
    (root / "update-key.pem").write_bytes(public)
    set_password(data)
    model = onnx.load(str(REPO / "models" / "default.onnx"))
    for prop in model.metadata_props:
        value = {"long_threshold": "0.001", "short_threshold": "0.0"}.get(prop.key)
        prop.value = value if value is not None else prop.value
    onnx.save(model, str(root / "always_long.onnx"))
    (root / "appliance.toml").write_text(f'[model]\npath = "{root / "always_long.onnx"}"\n')
    keys = ("--api-key", SIM_KEY, "--api-secret", SIM_SECRET)
    with running_sim("--seed", "7", *keys) as sim:
        argv = [*appliance(data), "--config", str(root / "appliance.toml"), "engine"]
        argv += ["--rest-url", sim.rest_url, "--ws-url", sim.ws_url, "--symbols", "btcusdt"]
        engine = spawn(argv, root / "engine.log")
        try:
            wait_for("the control socket", lambda: status(data), 30, engine, root / "engine.log")
            sock = data / "control.sock"
            keys_args = contract.KeysSetArgs(api_key=SIM_KEY, api_secret=SIM_SECRET)
            assert call_engine(sock, contract.KEYS_SET, keys_args).saved
            phrase = call_engine(sock, contract.MODE_PREFLIGHT).phrase
            live = contract.ModeSetArgs(mode="live", confirm=phrase)
            assert call_engine(sock, contract.MODE_SET, live).mode == "live"
            with running_panel(
                data, "--update-key", str(root / "update-key.pem"), log=root / "panel.log"
            ) as panel:
                yield {"root": root, "data": data, "panel": panel, "engine": engine}
        finally:
            stop(engine)


def test_live_trading_with_a_position_is_flattened_only_when_the_owner_asks(
    live_stack: dict[str, Any],
) -> None:
    root, data = live_stack["root"], live_stack["data"]
    spool = data / "update"
    st = wait_for(
        "a live position",
        lambda: (s := status(data))["positions"] and s,
        120,
        live_stack["engine"],
        root / "engine.log",
    )
    assert st["mode"] == "live" and float(st["positions"]["BTCUSDT"]) > 0
    with live_stack["panel"].client() as client:
        assert login(client).status_code == 303
        # Not asked to flatten: refused, the position untouched, nothing queued for root.
        r = _upload(client, _bundle(root, "9.0.1"))
        assert r.status_code == 422, r.text[:400]
        assert "refused: live trading has open positions in BTCUSDT" in r.text
        assert status(data)["positions"] and status(data)["state"] == "running"
        assert not spool.exists() or not list(spool.iterdir())
        # A bad bundle with "flatten first" is refused before anything is flattened.
        bad = _bundle(root, "9.0.1")
        blob = bytearray(bad.read_bytes())
        blob[-2000] ^= 1
        bad.write_bytes(blob)
        r = _upload(client, bad, flatten=True)
        assert r.status_code == 422 and status(data)["positions"], r.text[:400]
        # Asked to: the kill switch flattens, and the update is queued.
        r = _upload(client, _bundle(root, "9.0.1"), flatten=True)
    assert r.status_code == 202, r.text[:600]
    assert "Live trading was flattened first: the kill switch is on" in r.text
    after = status(data)
    assert not after["positions"] and after["state"] == "halted"
    assert after["breakers"][0]["code"] == "kill_switch"
    assert sorted(p.name for p in spool.iterdir()) == ["pending.update", "request.json"]
    # Root's helper asks the engine again, finds nothing open, and installs.
    (root / "sysupdate").write_text("#!/bin/sh\nexit 0\n")
    (root / "sysupdate").chmod(0o755)
    socket_path = config_mod.load(data.resolve(), None, None).control_socket

    def install_fn(path: Path, say: Any) -> str:
        trading = install.engine_trading(socket_path)
        assert trading is not None and trading.mode == "live" and not trading.open_orders
        m = install.install(
            path,
            bundle.public_pem_of(root / "signing.pem"),
            trading=trading,
            running="9.0.0",
            staging=root / "staged",
            sysupdate=[str(root / "sysupdate")],
            say=say,
            carry=lambda v: f"carried to {v}",
        )
        return m.version

    assert request.serve(spool, install_fn, lambda: None) == "rebooting"


@pytest.fixture
def files(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A plain HTTP file server on loopback: (its directory, its address)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _from_url(client: httpx.Client, url: str, password: str = PASSWORD) -> httpx.Response:
    token = csrf_from(client.get("/system").text)
    return client.post(
        "/system/update/url",
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
        data={"url": url, "password": password, "reboot": "on"},
    )


def test_a_bundle_from_an_address_is_fetched_checked_and_queued(
    stack: dict[str, Any], client: httpx.Client, files: tuple[Path, str]
) -> None:
    www, base = files
    spool, uploads = stack["data"] / "update", stack["data"] / "uploads"
    _bundle(stack["root"], "9.0.3").rename(www / "appliance_9.0.3.update")
    refusals = {
        f"{base}/missing.update": f"could not download {base}/missing.update: HTTP 404",
        "file:///etc/passwd": "refused: the address must be an http:// or https:// URL",
    }
    for url, says in refusals.items():
        r = _from_url(client, url)
        assert r.status_code == 422 and says in r.text, r.text[:400]
    assert "Not updated: wrong password" in _from_url(client, base, "wrong").text
    assert not list(uploads.glob("*.update"))

    url = f"{base}/appliance_9.0.3.update"
    r = _from_url(client, url)
    assert r.status_code == 202, r.text[:400]
    assert "Version 9.0.3 checked" in r.text and url in r.text
    assert request.take_request(spool) is not None  # queued for root, as an upload is
    assert (spool / request.BUNDLE).read_bytes() == (www / "appliance_9.0.3.update").read_bytes()
    (spool / request.BUNDLE).unlink()
    # The form offers the address again; nothing is left in the uploads.
    assert f'value="{url}"' in client.get("/system").text
    assert not list(uploads.glob("*.update"))


def test_the_owner_goes_back_to_the_previous_version(
    stack: dict[str, Any], client: httpx.Client
) -> None:
    data, spool = stack["data"], stack["data"] / "update"
    assert "Go back to version" not in client.get("/system").text  # root has said nothing yet
    rollback.write_slots(data, "9.0.0", "8.9.0")  # as the health gate does at boot
    page = client.get("/system").text
    assert "Version 8.9.0 is still in the other system slot" in page
    assert "Go back to version 8.9.0" in page

    def post(version: str, password: str = PASSWORD) -> httpx.Response:
        token = csrf_from(client.get("/system").text)
        return client.post(
            "/system/goback",
            headers={"X-CSRF-Token": token, "HX-Request": "true"},
            data={"version": version, "password": password},
        )

    assert "Not changed: wrong password" in post("8.9.0", "wrong").text
    r = post("8.8.0")
    assert r.status_code == 422 and "version 8.8.0 is not the previous version" in r.text
    assert not (spool / request.REQUEST).exists()
    r = post("8.9.0")
    assert r.status_code == 202, r.text[:400]
    assert "Going back to version 8.9.0" in r.text and 'hx-get="/system/update/status"' in r.text
    req = request.take_request(spool)
    assert req is not None and (req.action, req.version, req.reboot) == ("go back", "8.9.0", True)
    (data / rollback.SLOTS).unlink()


def test_an_upload_larger_than_a_models_goes_through_to_the_bundle_check(
    client: httpx.Client, tmp_path: Path
) -> None:
    """The gate lets a bundle-sized upload through (not the 64 MiB of a model): here 70 MiB of
    junk, refused by the bundle check, not by the gate."""
    junk = tmp_path / "junk.update"
    with junk.open("wb") as f:
        f.truncate(70 * 1024 * 1024)
    token = csrf_from(client.get("/system").text)
    with junk.open("rb") as f:
        r = client.post(
            "/system/update",
            headers={"X-CSRF-Token": token, "HX-Request": "true"},
            files={"bundle": (junk.name, f, "application/octet-stream")},
            data={"password": PASSWORD},
            timeout=120,
        )
    assert r.status_code == 422 and "the bundle has no SHA256SUMS" in r.text, r.text[:300]

"""The checks of ``just image-test``, run on the host against the booted image.

Not a pytest module: ``scripts/image-test.sh`` builds (if needed) and boots the image under
qemu-system-riscv64, starts the simulator on the host, then runs this file. Each check prints one
line (``PASS name: detail`` or ``FAIL name: detail``); the last line is ``N passed, M failed`` and
the exit status is 1 when anything failed. A check that cannot run because an earlier one failed
fails too (never skipped).

Two ways in: the panel through QEMU's forwarded port (as a browser would use it), and the CI
image's test agent, a root shell over a virtio-serial port (``/usr/lib/appliance/test-agent``,
only in the ``ci`` profile), for what only the inside can tell (services, sysctl, partitions).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import re
import shlex
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

GUEST_BENCH = Path(__file__).with_name("guest_bench.py")
# The reference recording `just bench` replays (in <reference>/market-data/).
BENCH_FILES = {
    "replay": "usdm_2021-07-22_ws.jsonl",
    "snapshots": "usdm_2021-07-22_rest_depth_snapshots.txt",
    "exchange_info": "usdm_2021-07-22_exchangeInfo.txt",
}
GUEST_BENCH_DIR = "/var/tmp/appliance-bench"
SETUP_CODE_RE = re.compile(r"APPLIANCE SETUP CODE: ([A-Z0-9]{4}-[A-Z0-9]{4})")
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
TEST_PASSWORD = "image-test-password-1"  # a throw-away VM's panel


class Agent:
    """Client of the guest's test agent: JSON lines over QEMU's virtio-serial Unix socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._buf = b""
        self._id = 0

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(self.path))
            self._sock = sock
        return self._sock

    def run(self, cmd: str, timeout: float = 60.0) -> tuple[int, str, str]:
        """Run ``cmd`` with /bin/sh in the guest as root: (exit status, stdout, stderr)."""
        sock = self._connect()
        self._id += 1
        req = {"id": self._id, "cmd": cmd, "timeout": timeout}
        sock.sendall(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + timeout + 10
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                reply = json.loads(line)
                if reply.get("id") == self._id:
                    return int(reply["rc"]), str(reply["out"]), str(reply["err"])
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"agent: no answer to {cmd!r}")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                self._sock = None
                raise ConnectionError("agent: connection closed")
            self._buf += chunk

    def ok(self, cmd: str, timeout: float = 60.0) -> str:
        """Run ``cmd``; its stdout, or an AssertionError with its stderr when it fails."""
        rc, out, err = self.run(cmd, timeout)
        if rc != 0:
            raise AssertionError(f"`{cmd}` exited {rc}: {(err or out).strip()[-400:]}")
        return out

    def put(self, local: Path, remote: str) -> None:
        """Copy ``local`` to ``remote`` in the guest (gzip + base64 through the command channel,
        in pieces below the kernel's 128 KiB limit on one argument), then compare sha256."""
        data = base64.b64encode(gzip.compress(local.read_bytes())).decode()
        tmp = shlex.quote(remote + ".gz.b64")
        self.ok(f"mkdir -p {shlex.quote(str(Path(remote).parent))} && : > {tmp}")
        for i in range(0, len(data), 60_000):
            self.ok(f"printf %s {data[i : i + 60_000]} >> {tmp}")
        self.ok(f"base64 -d {tmp} | gzip -dc > {shlex.quote(remote)} && rm {tmp}")
        got = self.ok(f"sha256sum {shlex.quote(remote)}").split()[0]
        if got != hashlib.sha256(local.read_bytes()).hexdigest():
            raise AssertionError(f"{remote}: sha256 {got} in the guest differs from {local}")

    def wait_ready(self, timeout: float) -> float:
        """Seconds until the agent answered (the guest is up to multi-user)."""
        start = time.monotonic()
        while True:
            try:
                self.run("true", timeout=10)
                return time.monotonic() - start
            except (OSError, TimeoutError, ConnectionError, ValueError):
                self._sock = None
                if time.monotonic() - start > timeout:
                    raise
                time.sleep(2)


@dataclass
class Context:
    """What the checks share: the ways in, and what earlier checks learnt."""

    agent: Agent
    panel: str
    serial_log: Path
    model: Path
    boot_timeout: float
    reference: Path | None = None
    bench: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    facts_out: Path | None = None
    bundle_dir: Path = Path(".")
    http: httpx.Client = field(
        default_factory=lambda: httpx.Client(timeout=60.0, follow_redirects=False)
    )

    def ctl(self, command: str) -> dict[str, Any]:
        """``appliance ctl COMMAND`` in the guest (as root, through the control socket)."""
        out = self.agent.ok(f"appliance --data-dir /var/lib/appliance ctl {command}")
        result: dict[str, Any] = json.loads(out)
        return result

    def csrf(self, path: str) -> str:
        page = self.http.get(self.panel + path)
        found = CSRF_RE.search(page.text)
        if not found:
            raise AssertionError(f"GET {path}: {page.status_code}, no csrf_token in the page")
        return found.group(1)


@dataclass
class Report:
    passed: int = 0
    failed: int = 0

    def check(self, name: str, fn: Callable[[], str]) -> bool:
        start = time.monotonic()
        try:
            detail = fn()
        except Exception as exc:  # every failure is reported, none ends the run
            self.failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
            return False
        self.passed += 1
        print(f"PASS {name}: {detail} ({time.monotonic() - start:.1f}s)", flush=True)
        return True


def wait_for(what: str, fn: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    """Poll ``fn`` until it returns something truthy; AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
            last = value
        except (AssertionError, OSError, ValueError, httpx.HTTPError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last: {last})")


# -- checks ------------------------------------------------------------------------------------


def check_boot(ctx: Context) -> str:
    seconds = ctx.agent.wait_ready(ctx.boot_timeout)
    state = ctx.agent.run("systemctl is-system-running --wait", timeout=300)[1].strip()
    failed = ctx.agent.run("systemctl --failed --no-legend --plain")[1].strip()
    ctx.facts["boot_s"] = seconds
    if failed:
        raise AssertionError(f"system {state}; failed units: {failed.replace(chr(10), '; ')}")
    return f"agent answered after {seconds:.0f}s of waiting; system {state}"


def check_setup_code(ctx: Context) -> str:
    def from_console() -> str | None:
        text = ctx.serial_log.read_text(errors="replace") if ctx.serial_log.exists() else ""
        found = SETUP_CODE_RE.search(text)
        return found.group(1) if found else None

    code: str = wait_for("setup code on the serial console", from_console, 120)
    stored = ctx.agent.ok("cat /var/lib/appliance-panel/setup-code").strip()
    esp = ctx.agent.ok('cat "$(bootctl --print-esp-path)/appliance-setup-code.txt"')
    mode = ctx.agent.ok("stat -c '%a %U' /var/lib/appliance-panel/setup-code").strip()
    if stored != code or code not in esp:
        raise AssertionError(f"console {code}, file {stored!r}, ESP {esp!r}")
    if mode != "600 appliance-panel":
        raise AssertionError(f"setup-code is {mode}, want 600 appliance-panel")
    ctx.facts["setup_code"] = code
    return f"{code[:2]}..-.... on the console, in setup-code ({mode}) and on the ESP"


def check_services(ctx: Context) -> str:
    units = [
        "appliance-engine",
        "appliance-panel",
        "nftables",
        "systemd-networkd",
        "systemd-resolved",
        "appliance-firstboot",
    ]
    states = {u: ctx.agent.run(f"systemctl is-active {u}")[1].strip() for u in units}
    bad = {u: s for u, s in states.items() if s != "active"}
    if bad:
        raise AssertionError(f"not active: {bad}")
    timesync = ctx.agent.run("systemctl is-enabled systemd-timesyncd")[1].strip()
    if timesync != "disabled":
        raise AssertionError(f"systemd-timesyncd is {timesync} in the CI image (want disabled)")
    return "engine, panel, nftables, networkd, resolved active; timesyncd disabled (CI)"


def check_engine_paper_sim(ctx: Context) -> str:
    def recording() -> dict[str, Any] | None:
        status = ctx.ctl("status")
        return status if status["recorder"]["frames"] > 0 and status["messages"] > 0 else None

    status: dict[str, Any] = wait_for("engine receiving and recording", recording, 300, 5)
    if status["mode"] != "paper":
        raise AssertionError(f"mode {status['mode']!r}, want paper")
    if status["exchange"] != "http://10.0.2.100:9100":
        raise AssertionError(f"exchange {status['exchange']!r}, want the host's simulator")
    files = ctx.agent.ok("ls /var/lib/appliance/market").split()
    ctx.facts["frames"] = status["recorder"]["frames"]
    return (
        f"mode paper, exchange {status['exchange']}, {status['messages']} msgs, "
        f"{status['recorder']['frames']} frames recorded in {files}"
    )


def check_native(ctx: Context) -> str:
    # The per-message modules cross-compiled for riscv64 (scripts/image-native.sh): the guest's own
    # stamp check accepts them, and the running engine has them loaded.
    out = ctx.agent.ok("appliance native").strip()
    if ": in use:" not in out:
        raise AssertionError(f"`appliance native` in the guest: {out}")
    pid = ctx.agent.ok("systemctl show -P MainPID appliance-engine").strip()
    mapped = ctx.agent.run(f"grep -m1 -o '/[^ ]*appliance_native__mypyc[^ ]*' /proc/{pid}/maps")
    if mapped[0] != 0:
        raise AssertionError(f"{out}; but the engine (pid {pid}) has not loaded the build")
    return f"{out}; the engine (pid {pid}) runs {mapped[1].strip().rsplit('/', 1)[-1]}"


def check_network_restricted(ctx: Context) -> str:
    probe = (
        "python3 -c 'import socket,sys; h,p=sys.argv[1],int(sys.argv[2]);"
        'socket.create_connection((h,p),timeout=5); print("open")\' {} {}'
    )
    # guestfwd accepts any connection itself; only an HTTP answer proves the simulator is there.
    ping = (
        "python3 -c 'import urllib.request as u;"
        'print(u.urlopen("http://10.0.2.100:9100/fapi/v1/time", timeout=10).read()[:60])\''
    )
    sim = ctx.agent.run(ping, timeout=30)
    if sim[0] != 0:
        raise AssertionError(f"the simulator at 10.0.2.100:9100 does not answer: {sim[2][-200:]}")
    reached = []
    for host, port in (("10.0.2.2", 22), ("10.0.2.2", 80), ("192.0.2.1", 80), ("10.0.2.3", 53)):
        rc, out, _ = ctx.agent.run(probe.format(host, port), timeout=30)
        if rc == 0 and "open" in out:
            reached.append(f"{host}:{port}")
    if reached:
        raise AssertionError(f"the guest reached {reached}")
    return "10.0.2.100:9100 (simulator) reachable; host, gateway, DNS and outside are not"


def check_sysctl(ctx: Context) -> str:
    text = ctx.agent.ok("cat /usr/lib/sysctl.d/60-appliance.conf")
    wanted = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")) and "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            wanted[key] = value
    if not wanted:
        raise AssertionError("no settings in 60-appliance.conf")
    wrong = {}
    for key, value in wanted.items():
        got = ctx.agent.ok(f"cat /proc/sys/{key.replace('.', '/')}").strip()
        if got.split() != value.split():
            wrong[key] = (got, value)
    if wrong:
        raise AssertionError(f"not in effect (got, want): {wrong}")
    return f"{len(wanted)} settings in effect: " + ", ".join(f"{k}={v}" for k, v in wanted.items())


def check_partitions(ctx: Context) -> str:
    out = ctx.agent.ok(
        "findmnt -rno SOURCE,SIZE,FSTYPE /var/lib/appliance; "
        "findmnt -rno SOURCE,SIZE / ; lsblk -bnro NAME,SIZE,PARTLABEL"
    )
    lines = out.splitlines()
    data = lines[0].split() if lines else []
    root = lines[1].split() if len(lines) > 1 else []
    if len(data) < 3 or data[2] != "ext4" or data[0] == root[0]:
        raise AssertionError(f"/var/lib/appliance is not its own ext4 partition: {out.strip()}")
    size = int(ctx.agent.ok("df -B1 --output=size / | tail -1").strip())
    image_root = int(ctx.facts.get("image_root_bytes", 0))
    if image_root and size <= image_root:
        raise AssertionError(f"root file system {size} B not grown beyond the image's {image_root}")
    panel = ctx.agent.ok("findmnt -rno SOURCE /var/lib/appliance-panel").strip()
    if panel != f"{data[0]}[/.panel]":
        raise AssertionError(f"/var/lib/appliance-panel is {panel!r}, not {data[0]}[/.panel]")
    # A/B: two system slots of one size, this version's and an empty one for the next.
    version = ctx.agent.ok("cat /usr/lib/appliance/version").strip()
    slots = dict(
        line.split()[::-1]
        for line in ctx.agent.ok(
            "lsblk -bnro SIZE,PARTLABEL,PARTTYPE | grep -i 72ec70a6 | cut -d' ' -f1,2"
        ).splitlines()
    )
    mine = ctx.agent.ok(f"lsblk -rno PARTLABEL {root[0]}").strip()
    if mine != f"appliance_{version}" or sorted(slots) != sorted([mine, "_empty"]):
        raise AssertionError(f"system slots {slots}, / on {mine!r}; expected appliance_{version}")
    if len(set(slots.values())) != 1:
        raise AssertionError(f"the system slots differ in size: {slots}")
    return (
        f"/ {root[1] if len(root) > 1 else '?'} (grown) on slot {mine}, the other _empty "
        f"({int(next(iter(slots.values()))) >> 20} MiB each), /var/lib/appliance {data[0]} "
        f"{data[1]}, /var/lib/appliance-panel {panel}"
    )


def check_firewall(ctx: Context) -> str:
    rules = ctx.agent.ok("nft list chain inet appliance input")
    if "policy drop" not in rules or "8080" not in rules:
        raise AssertionError(f"unexpected input chain: {rules[:300]}")
    return "input policy drop; LAN may reach 22, 8080; DHCP, mDNS, ICMP"


def check_mdns(ctx: Context) -> str:
    out = ctx.agent.ok("resolvectl mdns; resolvectl status | grep -i 'mDNS\\|MulticastDNS'")
    if "yes" not in out.lower():
        raise AssertionError(f"mDNS not on: {out.strip()}")
    host = ctx.agent.ok("hostname").strip()
    return f"resolved answers {host}.local (MulticastDNS=yes on the wired link)"


def check_panel_reads_wal(ctx: Context) -> str:
    # The panel's sandbox, as its unit has it, reading the engine's WAL database read-only.
    props = (
        "-p User=appliance-panel -p Group=appliance -p ProtectSystem=strict "
        "-p PrivateUsers=yes -p NoNewPrivileges=yes"
    )
    code = (
        "import sqlite3; c = sqlite3.connect('file:/var/lib/appliance-panel/trading.db"
        "?mode=ro', uri=True); print(c.execute('pragma journal_mode').fetchone()[0],"
        " c.execute('select count(*) from sqlite_master').fetchone()[0])"
    )
    out = ctx.agent.ok(f"systemd-run --quiet --wait --pipe {props} python3 -c {shlex.quote(code)}")
    modes = ctx.agent.ok(
        "stat -c '%n %a %U:%G' /var/lib/appliance/trading.db* | paste -sd';'"
    ).strip()
    return f"journal_mode, tables = {out.strip()} while the engine writes; {modes}"


def check_security_scores(ctx: Context) -> str:
    scores = {}
    for unit in ("appliance-engine", "appliance-panel"):
        out = ctx.agent.run(f"systemd-analyze security --no-pager {unit}.service | tail -1")[1]
        found = re.search(r"exposure level for \S+: ([0-9.]+) (\w+)", out)
        scores[unit] = f"{found.group(1)} {found.group(2)}" if found else out.strip()
    ctx.facts["security"] = scores
    worst = max(float(s.split()[0]) for s in scores.values() if s[:1].isdigit())
    if worst > 3.0:
        raise AssertionError(f"exposure above 3.0: {scores}")
    return f"systemd-analyze security: {scores}"


def check_onnxruntime_mdwe(ctx: Context) -> str:
    # The default model's golden vectors, reproduced on riscv64 under the engine's own
    # MemoryDenyWriteExecute=yes and system-call filter.
    props = (
        "-p User=appliance -p Group=appliance -p MemoryDenyWriteExecute=yes "
        "-p SystemCallFilter=@system-service -p NoNewPrivileges=yes"
    )
    code = (
        "from app.engine.inference import load_model; "
        "m = load_model('/usr/share/appliance/models/default.onnx'); "
        "print(m.contract.model_version)"
    )
    out = ctx.agent.ok(
        f"systemd-run --quiet --wait --pipe {props} python3 -c {shlex.quote(code)}", timeout=300
    )
    return f"default model {out.strip()} loaded, golden vectors reproduced, MDWE on"


def check_panel_answers(ctx: Context) -> str:
    def answer() -> httpx.Response | None:
        r = ctx.http.get(ctx.panel + "/")
        return r if r.status_code < 500 else None

    r: httpx.Response = wait_for("panel answers on the forwarded port", answer, 180, 3)
    return f"GET / -> {r.status_code} {r.headers.get('location', '')}"


def check_set_password(ctx: Context) -> str:
    code = ctx.facts.get("setup_code")
    if not code:
        raise AssertionError("no setup code (see the setup-code check)")
    token = ctx.csrf("/setup")
    r = ctx.http.post(
        ctx.panel + "/setup",
        data={
            "csrf_token": token,
            "code": code,
            "password": TEST_PASSWORD,
            "confirm": TEST_PASSWORD,
        },
    )
    if r.status_code >= 400:
        raise AssertionError(f"POST /setup -> {r.status_code}: {r.text[:300]}")
    if ctx.agent.run("test -e /var/lib/appliance-panel/setup-code")[0] == 0:
        raise AssertionError("the setup code was not consumed")
    return f"POST /setup -> {r.status_code}; setup code consumed"


def check_login(ctx: Context) -> str:
    ctx.http.cookies.clear()
    token = ctx.csrf("/login")
    r = ctx.http.post(ctx.panel + "/login", data={"csrf_token": token, "password": TEST_PASSWORD})
    if r.status_code >= 400:
        raise AssertionError(f"POST /login -> {r.status_code}: {r.text[:300]}")
    home = ctx.http.get(ctx.panel + "/")
    if home.status_code != 200:
        raise AssertionError(f"after login GET / -> {home.status_code} {home.headers}")
    return f"POST /login -> {r.status_code}; GET / -> 200"


def _variant(model: Path) -> bytes:
    """``model`` under another version: new bytes (a new sha256), the same graph and goldens, so
    activating it is a real switch that a restart must keep."""
    from app.engine.onnxproto import read_header, with_metadata

    data = model.read_bytes()
    meta = {**dict(read_header(data).metadata), "model_version": "image-test-upload"}
    return with_metadata(data, meta)


def check_model_upload(ctx: Context) -> str:
    token = ctx.csrf("/models")
    headers = {"X-CSRF-Token": token, "HX-Request": "true"}
    r = ctx.http.post(
        ctx.panel + "/models/upload",
        headers=headers,
        files={"model": ("image-test.onnx", _variant(ctx.model), "application/octet-stream")},
    )
    if r.status_code != 200 or "passed validation and is stored as" not in r.text:
        text = re.sub(r"<[^>]+>|\s+", " ", r.text).strip()
        raise AssertionError(f"upload -> {r.status_code}: {text[:400]}")
    # The store names the upload by its original file name; the buttons post its sha256.
    stored = [m for m in ctx.ctl("model.list")["models"] if m["source"] == "image-test.onnx"]
    if len(stored) != 1:
        raise AssertionError(f"model.list has {len(stored)} models from image-test.onnx")
    version = str(stored[0]["sha256"])
    r = ctx.http.post(
        ctx.panel + "/models/activate",
        headers=headers,
        data={"sha256": version, "csrf_token": token},
    )
    if r.status_code != 200 or "is now the active model" not in r.text:
        detail = re.sub(r"<[^>]+>|\s+", " ", r.text.replace("&#34;", '"'))[:300]
        raise AssertionError(
            f"uploaded and validated, but activate {version[:12]} -> {r.status_code}: {detail}"
        )
    listing = ctx.ctl("model.list")
    if listing.get("active") != version:
        raise AssertionError(f"model.list's active model is not {version[:12]}: {listing}")
    return f"uploaded, validated (golden vectors on riscv64) and activated {version[:12]}"


def check_kill_restart(ctx: Context) -> str:
    before = ctx.agent.ok("systemctl show -P MainPID -P NRestarts appliance-engine").split()
    frames_before = ctx.ctl("status")["recorder"]["frames"]
    ctx.agent.ok("systemctl kill -s KILL appliance-engine")

    def restarted() -> list[str] | None:
        now = ctx.agent.ok(
            "systemctl show -P MainPID -P NRestarts -P ActiveState appliance-engine"
        ).split()
        return now if now[0] not in ("0", before[0]) and now[2] == "active" else None

    after: list[str] = wait_for("engine restarted by systemd", restarted, 300, 3)

    def resumed() -> int | None:
        frames = int(ctx.ctl("status")["recorder"]["frames"])
        return frames if frames > 0 else None

    frames_after = wait_for("engine recording again", resumed, 300, 5)
    # The store's active model (the upload activated above) trades after the restart, not the
    # shipped default.
    active = ctx.ctl("model.list")["active"]

    def trading_active() -> str | None:
        model = ctx.ctl("status")["trader"]["model"]
        return str(model["sha256"]) if model and model["sha256"] == active else None

    wait_for("the active model loaded again", trading_active, 300, 5)
    return (
        f"pid {before[0]} killed; pid {after[0]} up (NRestarts {before[1]} -> {after[1]}); "
        f"recording again ({frames_before} frames before, {frames_after} since restart); "
        f"trading the active model {active[:12]}"
    )


def _bench_rows(ctx: Context) -> list[dict[str, Any]]:
    """Copy the recording and the driver in, stop the engine and the panel (two vCPUs: they would
    share them with the loop), run tests/image/guest_bench.py, start them again."""
    if ctx.reference is None:
        raise AssertionError("no --reference directory with the recording")
    args = []
    for arg, name in BENCH_FILES.items():
        ctx.agent.put(ctx.reference / "market-data" / name, f"{GUEST_BENCH_DIR}/{name}")
        args.append(f"--{arg.replace('_', '-')} {name}")
    ctx.agent.put(GUEST_BENCH, f"{GUEST_BENCH_DIR}/guest_bench.py")
    ctx.agent.ok("systemctl stop appliance-engine appliance-panel", timeout=180)
    try:
        out = ctx.agent.ok(
            f"cd {GUEST_BENCH_DIR} && python3 guest_bench.py --dir {GUEST_BENCH_DIR} "
            f"{' '.join(args)} --messages {ctx.bench['messages']} "
            f"--rounds {ctx.bench['rounds']} --decide {ctx.bench['decide']}",
            timeout=float(ctx.bench["timeout"]),
        )
    finally:
        ctx.agent.run("systemctl start --no-block appliance-engine appliance-panel")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def check_bench(ctx: Context) -> str:
    """``appliance bench`` on riscv64 (TCG), compiled and as Python, each as a share of a bare
    ``json.loads`` of the same frames run just before it. Figures, not a pass mark: the check
    fails only when a run is not what it claims (compiled or not) or a book lost sync."""
    rows = _bench_rows(ctx)
    ctx.facts["bench"] = rows
    runs = [r for r in rows if r["kind"] == "bench"]
    if not runs:
        raise AssertionError("no bench result")
    parts = []
    for decide in ctx.bench["decide"].split(","):
        summary = {}
        for compiled in (True, False):
            pairs = [
                (rows[i - 1], r)
                for i, r in enumerate(rows)
                if r["kind"] == "bench" and r["decide"] == decide and r["compiled"] == compiled
            ]
            for base, r in pairs:
                if r["native"] != compiled:
                    raise AssertionError(f"a {'compiled' if compiled else 'Python'} run: {r}")
                if r["passes_books_synced"] != r["passes"]:
                    raise AssertionError(f"books out of sync in a pass: {r}")
                r["ratio"] = r["msgs_per_s"] / base["msgs_per_s"]
            summary[compiled] = {
                key: statistics.median(r[key] for _, r in pairs)
                for key in ("msgs_per_s", "p99_us", "ratio", "rss_mb")
            } | {"loads": statistics.median(b["msgs_per_s"] for b, _ in pairs)}
        c, p = summary[True], summary[False]
        parts.append(
            f"{decide}: compiled {c['msgs_per_s']:,.0f} msg/s, p99 {c['p99_us']:,.0f} µs, "
            f"{c['ratio']:.2f} of json.loads ({c['loads']:,.0f}); Python {p['msgs_per_s']:,.0f} "
            f"msg/s, p99 {p['p99_us']:,.0f} µs, {p['ratio']:.2f} of json.loads "
            f"({p['loads']:,.0f}); compiled/Python {c['msgs_per_s'] / p['msgs_per_s']:.2f}x, "
            f"RSS {c['rss_mb']:.0f}/{p['rss_mb']:.0f} MB"
        )
    first = runs[0]
    return (
        f"indicative (TCG): riscv64 Python {first['python']}, {first['messages']} msgs, "
        f"{ctx.bench['rounds']} round(s); " + "; ".join(parts)
    )


def _state(ctx: Context) -> dict[str, Any]:
    """What an owner would miss after an update: the data a new system must find."""
    listing = ctx.ctl("model.list")
    rows = ctx.agent.ok(
        "python3 -c \"import sqlite3; c = sqlite3.connect('file:/var/lib/appliance/trading.db"
        "?mode=ro', uri=True); print(c.execute('select count(*) from journal').fetchone()[0])\""
    )
    # The databases (their -wal and -shm go with a clean shutdown).
    recordings = [
        f for f in ctx.agent.ok("ls /var/lib/appliance/market").split() if f.endswith(".db")
    ]
    return {
        "active_model": listing.get("active"),
        "models": sorted(str(m["sha256"]) for m in listing["models"]),
        "journal": int(rows.strip()),
        "recordings": recordings,
        "password_hash": ctx.agent.ok(
            "sha256sum /var/lib/appliance-panel/secrets/admin-password.hash"
        ).split()[0],
    }


def _install(ctx: Context, name: str, new: str) -> tuple[float, float, list[str], list[str]]:
    """Upload bundle ``name`` (from the host's bundle directory) on the panel's System page, as
    the owner would, and follow the install there: (seconds to upload and check, seconds to
    install, system slot labels, UKIs on the ESP)."""
    # The bench before restarted the panel: QEMU's port forward resets a connection until it
    # listens again.
    check_panel_answers(ctx)
    check_login(ctx)
    token = ctx.csrf("/system")
    headers = {"X-CSRF-Token": token, "HX-Request": "true"}
    started = time.monotonic()
    with (ctx.bundle_dir / name).open("rb") as f:
        r = ctx.http.post(
            ctx.panel + "/system/update",
            headers=headers,
            data={"password": TEST_PASSWORD},
            files={"bundle": (name, f, "application/octet-stream")},
            timeout=1800,
        )
    uploaded = time.monotonic() - started
    if r.status_code != 202 or f"Version {new} checked" not in r.text:
        raise AssertionError(f"upload of {name} -> {r.status_code}: {_text(r.text)[:400]}")
    started = time.monotonic()

    def finished() -> tuple[str, str] | None:
        page = ctx.http.get(ctx.panel + "/system/update/status", headers=headers).text
        state = re.search(r'id="update-state">([^<]+)<', page)
        if state is None or state.group(1) in ("Installing", "Restarting"):
            return None
        return state.group(1), _text(page)

    state, page = wait_for(f"the panel to report {new} installed", finished, 1800, 5)
    applied = time.monotonic() - started
    if state != "Installed":
        raise AssertionError(f"the panel says {state}: {page[-600:]}")
    slots = ctx.agent.ok("lsblk -rno PARTLABEL,PARTTYPE | grep -i 72ec70a6 | cut -d' ' -f1")
    efi = ctx.agent.ok("ls $(bootctl -p)/EFI/Linux")
    return uploaded, applied, sorted(slots.split()), sorted(efi.split())


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>|\s+", " ", html.replace("&#34;", '"')).strip()


def _save_facts(ctx: Context) -> None:
    if ctx.facts_out is not None:
        ctx.facts_out.write_text(json.dumps(ctx.facts, default=str))


def check_prepare_update(ctx: Context) -> str:
    """Last check of the first boot: note the state, then install version N+1 into the other slot
    through the panel (the bundle scripts/image-test.sh derived from this build), for the next
    boot."""
    # The bench before this one restarts the engine and the panel.
    ctx.facts["before_update"] = wait_for("the engine answers", lambda: _state(ctx), 300, 5)
    ctx.facts["machine_id"] = ctx.agent.ok("cat /etc/machine-id").strip()
    running = ctx.agent.ok("cat /usr/lib/appliance/version").strip()
    ctx.facts["first_version"] = running
    new = ctx.facts["next_version"]
    fetched, applied, slots, efi = _install(ctx, ctx.facts["next_bundle"], new)
    if slots != sorted([f"appliance_{running}", f"appliance_{new}"]):
        raise AssertionError(f"slot labels after the install: {slots}")
    # On trial: three tries left, none done (sysupdate names it after its first pattern).
    if f"appliance_{new}+3-0.efi" not in efi:
        raise AssertionError(f"no appliance_{new}+3-0.efi (on trial) on the ESP: {efi}")
    ctx.facts["update_figures"] = {"upload_s": round(fetched, 1), "apply_s": round(applied, 1)}
    _save_facts(ctx)
    state = ctx.facts["before_update"]
    return (
        f"{len(state['models'])} models (active {str(state['active_model'])[:12]}), "
        f"{state['journal']} journal rows, recordings {state['recordings']}, password set; "
        f"{running} -> {new}: uploaded and checked by the panel in {fetched:.0f}s, installed in "
        f"{applied:.0f}s "
        f"(slots {' '.join(slots)}; ESP {' '.join(efi)})"
    )


def _verdict(ctx: Context, version: str) -> dict[str, Any]:
    """The health gate's newest verdict on ``version``, once it has given one."""

    def find() -> dict[str, Any] | None:
        out = ctx.agent.ok("cat /var/lib/appliance-panel/update-health.json 2>/dev/null || echo []")
        found = [v for v in json.loads(out) if v.get("version") == version]
        return found[0] if found else None

    found: dict[str, Any] = wait_for(f"the health gate's verdict on {version}", find, 900, 10)
    return found


def check_health_gate(ctx: Context) -> str:
    """The gate passes on a sound system (here the first boot's, whose entry is not on trial)."""
    version = ctx.agent.ok("cat /usr/lib/appliance/version").strip()
    v = _verdict(ctx, version)
    probes = "; ".join(f"{p['name']} {'ok' if p['ok'] else 'FAILED'}" for p in v["probes"])
    if not v["ok"] or v["action"] != "kept":
        raise AssertionError(f"the gate failed a sound system: {v}")
    return f"version {version}: passed after {v['waited_s']:.0f}s ({probes})"


def check_blessed(ctx: Context) -> str:
    """N+1 passed its health gate: its entry lost its counter, and the verdict is recorded."""
    new = ctx.facts["next_version"]
    v = _verdict(ctx, new)
    efi = sorted(ctx.agent.ok("ls $(bootctl -p)/EFI/Linux").split())
    if not v["ok"] or v["action"] != "kept" or f"appliance_{new}.efi" not in efi:
        raise AssertionError(f"verdict {v}; ESP {efi}")
    gate = ctx.agent.ok("systemctl show -P ActiveState -P Result appliance-update-health")
    return (
        f"health gate passed after {v['waited_s']:.0f}s ({' '.join(gate.split())}); "
        f"ESP {' '.join(efi)}"
    )


def check_go_back_offered(ctx: Context) -> str:
    """On N+1 the System page offers N, still in the other slot, as the way back (root's health
    gate worked that out at this boot). Not pressed: the broken N+2 comes next."""
    check_login(ctx)
    old = ctx.agent.ok("cat /var/lib/appliance-panel/update-slots.json")
    page = ctx.http.get(ctx.panel + "/system").text
    # scripts/image-test.sh derives N+1 as "N.1".
    first = str(ctx.facts.get("first_version") or ctx.facts["next_version"].removesuffix(".1"))
    if f"Go back to version {first}" not in page:
        raise AssertionError(f"no way back to {first!r} on the System page; root wrote {old}")
    return f"the System page offers to go back to {first} ({' '.join(old.split())})"


def check_prepare_broken_update(ctx: Context) -> str:
    """Install N+2, whose engine never reports ready: the next boot must come back to N+1."""
    running = ctx.facts["next_version"]
    broken = ctx.facts["broken_version"]
    fetched, applied, slots, efi = _install(ctx, ctx.facts["broken_bundle"], broken)
    if slots != sorted([f"appliance_{running}", f"appliance_{broken}"]):
        raise AssertionError(f"slot labels after the install: {slots}")
    if f"appliance_{broken}+3-0.efi" not in efi or f"appliance_{running}.efi" not in efi:
        raise AssertionError(f"ESP after installing {broken}: {efi}")
    ctx.facts["broken_figures"] = {"upload_s": round(fetched, 1), "apply_s": round(applied, 1)}
    _save_facts(ctx)
    return (
        f"{running} -> {broken} (its engine never ready): uploaded in {fetched:.0f}s, installed in "
        f"{applied:.0f}s; slots "
        f"{' '.join(slots)}; ESP {' '.join(efi)}"
    )


def check_rollback(ctx: Context) -> str:
    """The broken N+2 boots, fails its health gate, marks itself bad and reboots; N+1 comes back.
    Replaces the boot check of this phase: the agent answers in N+2 too."""
    broken, good = ctx.facts["broken_version"], ctx.facts["next_version"]
    started = time.monotonic()
    seen: list[str] = []

    def version() -> str | None:
        try:
            ctx.agent.wait_ready(60)
            v = ctx.agent.ok("cat /usr/lib/appliance/version", timeout=30).strip()
        except (OSError, TimeoutError, ConnectionError, ValueError, AssertionError):
            ctx.agent._sock = None
            return None
        if not seen or seen[-1] != v:
            seen.append(v)
        return v if v == good and broken in seen else None

    wait_for(f"back on {good} after {broken}", version, ctx.boot_timeout + 1200, 10)
    back = time.monotonic() - started
    state = ctx.agent.run("systemctl is-system-running --wait", timeout=600)[1].strip()
    return f"saw {' -> '.join(seen)}: back on {good} {back:.0f}s after power-on; system {state}"


def check_rolled_back(ctx: Context) -> str:
    broken, good = ctx.facts["broken_version"], ctx.facts["next_version"]
    root = ctx.agent.ok("lsblk -rno PARTLABEL $(findmnt -rno SOURCE /)").strip()
    efi = sorted(ctx.agent.ok("ls $(bootctl -p)/EFI/Linux").split())
    record = json.loads(ctx.agent.ok("cat /var/lib/appliance-panel/update-health.json"))
    failed = next((v for v in record if v["version"] == broken), None)
    if root != f"appliance_{good}" or f"appliance_{broken}+0-0.efi" not in efi:
        raise AssertionError(f"running from {root}; ESP {efi}")
    if failed is None or failed["action"] != "rolled back" or failed["ok"]:
        raise AssertionError(f"the health record has no rollback of {broken}: {record[:3]}")
    why = "; ".join(f"{p['name']}: {p['detail']}" for p in failed["probes"] if not p["ok"])
    check_login(ctx)
    page = ctx.http.get(ctx.panel + "/system").text
    banner = f"Version {broken} did not pass its health check, and the appliance went back to "
    if banner + f"version {good} by itself" not in page:
        raise AssertionError(f"the System page does not report the rollback: {page[:600]}")
    return f"slot appliance_{good}; ESP {' '.join(efi)}; gate said {why}; the panel reports it"


def check_update_key(ctx: Context) -> str:
    """The image trusts the key that signed this build's bundle, and checks bundles itself."""
    import tempfile

    from app.update import bundle

    key, built = ctx.facts["update_key"], ctx.facts["update_bundle"]
    if not key or not built:
        raise AssertionError("no --update-key/--update-bundle: the build made no update bundle")
    public = bundle.public_pem_of(Path(key))
    manifest = bundle.verify_bundle(Path(built), public)
    guest_pem = ctx.agent.ok("cat /usr/lib/appliance/update-key.pem").encode()
    guest_version = ctx.agent.ok("cat /usr/lib/appliance/version").strip()
    if bundle.key_id(guest_pem) != manifest.key_id or guest_version != manifest.version:
        raise AssertionError(
            f"the image has key {bundle.key_id(guest_pem)} and version {guest_version}; the "
            f"build's bundle {manifest.key_id} and {manifest.version}"
        )
    # A small bundle signed with the build's key, checked in the guest by the image's own
    # code and key; then one byte of its system image changed.
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "root").write_bytes(bytes(range(256)) * 256)
        (work / "uki").write_bytes(b"MZ" + bytes(4094))
        bundle.write_bundle(
            work / "b",
            version=f"{manifest.version}.test",
            root_image=work / "root",
            uki=work / "uki",
            private_key=Path(key),
        )
        good = (work / "b").read_bytes()
    results = []
    for name, data in (("good", good), ("tampered", _flip_root_byte(good))):
        blob = base64.b64encode(data).decode()
        ctx.agent.ok(f"echo {blob} | base64 -d > /var/tmp/{name}.update")
        rc, out, err = ctx.agent.run(f"appliance update verify /var/tmp/{name}.update")
        results.append((name, rc, (out + err).strip()))
    ctx.agent.run("rm -f /var/tmp/good.update /var/tmp/tampered.update")
    (_, good_rc, good_says), (_, bad_rc, bad_says) = results
    if good_rc != 0 or "signature and checksums good" not in good_says:
        raise AssertionError(
            f"the guest refused a bundle the build signed: rc {good_rc}, {good_says}"
        )
    if bad_rc != 2 or "root.raw.zst does not match its checksum" not in bad_says:
        raise AssertionError(f"the guest did not refuse a tampered bundle: rc {bad_rc}, {bad_says}")
    return (
        f"image {guest_version} trusts key {manifest.key_id}; the build's bundle "
        f"{Path(built).stat().st_size:,} bytes verifies; in the guest a signed bundle passes and "
        f"one byte changed is refused ({bad_says.removeprefix('appliance: ')[:70]})"
    )


def _flip_root_byte(data: bytes) -> bytes:
    """``data`` with one byte in the middle of its system image changed."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        info = tar.getmember("root.raw.zst")
    changed = bytearray(data)
    changed[info.offset_data + info.size // 2] ^= 0x01
    return bytes(changed)


def check_updated(ctx: Context) -> str:
    """The machine came back on version N+1, from its own slot, without running first boot."""
    new = ctx.facts["next_version"]
    version = ctx.agent.ok("cat /usr/lib/appliance/version").strip()
    image = ctx.agent.ok(". /etc/os-release; echo $IMAGE_VERSION").strip()
    root = ctx.agent.ok("lsblk -rno PARTLABEL $(findmnt -rno SOURCE /)").strip()
    if (version, image, root) != (new, new, f"appliance_{new}"):
        raise AssertionError(
            f"running version {version} (os-release {image}) from slot {root}; expected {new}"
        )
    ran = ctx.agent.ok("systemctl show -P ConditionResult appliance-firstboot").strip()
    if ran != "no":
        raise AssertionError(f"first boot's set-up ran again on the new slot (condition {ran})")
    # The slot holds an image as small as its contents; its file system must fill the slot, or
    # the next update has no room to stage in.
    ctx.agent.ok("systemctl is-active appliance-growfs-root.service")
    slot = int(ctx.agent.ok("lsblk -bdnro SIZE $(findmnt -rno SOURCE /)").strip())
    size, free = map(int, ctx.agent.ok("df -B1 --output=size,avail / | tail -1").split())
    if size < slot * 0.9:
        raise AssertionError(f"/ is {size >> 20} MiB in a {slot >> 20} MiB slot: not grown")
    return (
        f"version {new} from slot appliance_{new}; first-boot set-up skipped; / grown to "
        f"{size >> 20} MiB of its {slot >> 20} MiB slot ({free >> 20} MiB free)"
    )


def check_state_after_update(ctx: Context) -> str:
    """A new system slot keeps the appliance's password, models and trading data."""
    before = ctx.facts["before_update"]
    if ctx.agent.run("test -e /var/lib/appliance-panel/setup-code")[0] == 0:
        raise AssertionError("a new setup code was made: first boot ran again")
    wait_for("the engine answers", lambda: ctx.ctl("status"), 300, 5)
    after = _state(ctx)
    kept = ("active_model", "models", "password_hash")
    lost = {k: (before[k], after[k]) for k in kept if before[k] != after[k]}
    gone = set(before["recordings"]) - set(after["recordings"])
    if lost or gone or after["journal"] < before["journal"]:
        raise AssertionError(
            f"changed by the update (before, after): {lost}, recordings lost {gone}"
        )
    check_panel_answers(ctx)
    login = check_login(ctx)
    # The installer wrote it into the new slot (app/update/install.py: carry_machine_id).
    machine_id = ctx.agent.ok("cat /etc/machine-id").strip()
    if machine_id != ctx.facts.get("machine_id"):
        raise AssertionError(f"a new machine id {machine_id}, was {ctx.facts.get('machine_id')}")
    return (
        f"machine id {machine_id[:8]}… kept, no new setup code, active model "
        f"{str(after['active_model'])[:12]} and {len(after['models'])} models, "
        f"{after['journal']} journal rows (>= {before['journal']}), recordings kept; the old "
        f"password logs in ({login})"
    )


def dump_diagnostics(agent: Agent, path: Path) -> None:
    """The guest's view for a post-mortem: unit states and our units' journal."""
    cmds = [
        "systemctl --no-pager status appliance-engine appliance-panel appliance-firstboot",
        "journalctl --no-pager -b -o short-monotonic -u appliance-engine -u appliance-panel "
        "-u appliance-firstboot -u systemd-repart -u appliance-update-health "
        "-u appliance-update-request -n 400",
        "cat /var/lib/appliance-panel/update-health.json; ls -la $(bootctl -p)/EFI/Linux",
        "ls -la /var/lib/appliance /var/lib/appliance-panel; findmnt; lsblk",
        "systemd-analyze security --no-pager appliance-engine.service appliance-panel.service",
        "systemd-analyze blame --no-pager | head -30; systemd-analyze --no-pager",
    ]
    with path.open("w") as out:
        for cmd in cmds:
            try:
                rc, stdout, stderr = agent.run(cmd, timeout=120)
            except (OSError, TimeoutError, ValueError) as exc:
                rc, stdout, stderr = -1, "", str(exc)
            out.write(f"$ {cmd}  (exit {rc})\n{stdout}{stderr}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", type=Path, required=True, help="QEMU's virtio-serial socket")
    parser.add_argument("--panel", required=True, help="the panel's forwarded URL")
    parser.add_argument("--serial-log", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="an ONNX model to upload")
    parser.add_argument("--image-root-bytes", type=int, default=0)
    parser.add_argument("--boot-timeout", type=float, default=900.0)
    parser.add_argument("--diagnostics", type=Path, help="write the guest's journal here")
    parser.add_argument("--only", default="", help="comma-separated check names (debugging)")
    parser.add_argument("--reference", type=Path, help="the shared reference data (bench)")
    parser.add_argument("--bench-messages", type=int, default=20_000)
    parser.add_argument("--bench-rounds", type=int, default=1)
    parser.add_argument("--bench-decide", default="bar", help="bar, event or bar,event")
    parser.add_argument("--bench-timeout", type=float, default=2400.0)
    parser.add_argument(
        "--phase",
        choices=("first", "updated", "rolled-back"),
        default="first",
        help="first: the first boot's checks; updated: after the update to N+1 and a reboot",
    )
    parser.add_argument("--facts", type=Path, help="what the first phase learnt, for the second")
    parser.add_argument("--update-key", default="", help="the build's signing key (private PEM)")
    parser.add_argument("--update-bundle", default="", help="the build's update bundle")
    parser.add_argument("--next-bundle", default="", help="N+1's bundle file name, for the guest")
    parser.add_argument("--next-version", default="", help="N+1's version")
    parser.add_argument("--broken-bundle", default="", help="N+2's bundle (never ready)")
    parser.add_argument("--broken-version", default="", help="N+2's version")
    parser.add_argument("--bundle-dir", type=Path, default=Path("."), help="where they are")
    ns = parser.parse_args(argv)
    ctx = Context(
        Agent(ns.agent),
        ns.panel.rstrip("/"),
        ns.serial_log,
        ns.model,
        ns.boot_timeout,
        ns.reference,
        {
            "messages": ns.bench_messages,
            "rounds": ns.bench_rounds,
            "decide": ns.bench_decide,
            "timeout": ns.bench_timeout,
        },
    )
    ctx.facts["image_root_bytes"] = ns.image_root_bytes
    ctx.facts["update_key"], ctx.facts["update_bundle"] = ns.update_key, ns.update_bundle
    ctx.facts["next_bundle"], ctx.facts["next_version"] = ns.next_bundle, ns.next_version
    ctx.facts["broken_bundle"], ctx.facts["broken_version"] = ns.broken_bundle, ns.broken_version
    ctx.bundle_dir = ns.bundle_dir
    # Each phase reads what the ones before learnt, and adds to it for the next.
    if ns.phase != "first" and ns.facts is not None:
        ctx.facts.update(json.loads(ns.facts.read_text()))
    ctx.facts_out = ns.facts
    report = Report()
    if ns.phase == "rolled-back":
        booted = report.check("rollback", lambda: check_rollback(ctx))
    else:
        booted = report.check("boot", lambda: check_boot(ctx))
    checks: list[tuple[str, Callable[[Context], str]]] = [
        ("setup-code", check_setup_code),
        ("services", check_services),
        ("health-gate", check_health_gate),
        ("engine-paper-sim", check_engine_paper_sim),
        ("native-in-use", check_native),
        ("network-restricted", check_network_restricted),
        ("sysctl", check_sysctl),
        ("partitions", check_partitions),
        ("firewall", check_firewall),
        ("mdns", check_mdns),
        ("panel-reads-wal", check_panel_reads_wal),
        ("security-scores", check_security_scores),
        ("onnxruntime-mdwe", check_onnxruntime_mdwe),
        ("panel-answers", check_panel_answers),
        ("panel-set-password", check_set_password),
        ("panel-login", check_login),
        ("panel-model-upload", check_model_upload),
        ("engine-sigkill-restart", check_kill_restart),
        # It stops the engine and the panel while it measures.
        ("bench-riscv64", check_bench),
        ("update-key", check_update_key),
        # Last: what the second boot, on the other system slot, must find again.
        ("prepare-update", check_prepare_update),
    ]
    if ns.phase == "updated":
        checks = [
            ("updated", check_updated),
            ("state-after-update", check_state_after_update),
            ("blessed", check_blessed),
            ("go-back-offered", check_go_back_offered),
            # Last: N+2, which the next boot must reject by itself.
            ("prepare-broken-update", check_prepare_broken_update),
        ]
    if ns.phase == "rolled-back":
        checks = [
            ("rolled-back", check_rolled_back),
            ("state-after-rollback", check_state_after_update),
        ]
    only = {n for n in ns.only.split(",") if n}
    for name, fn in checks:
        if only and name not in only:
            continue
        if booted:
            report.check(name, lambda fn=fn: fn(ctx))  # type: ignore[misc]
        else:
            report.check(name, lambda: (_ for _ in ()).throw(AssertionError("guest not up")))
    if ns.diagnostics is not None and booted:
        dump_diagnostics(ctx.agent, ns.diagnostics)
    print(f"{report.passed} passed, {report.failed} failed", flush=True)
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

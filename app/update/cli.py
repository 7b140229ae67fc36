"""``appliance update {keygen,bundle,verify}``: make and check signed update bundles.

``keygen`` and ``bundle`` run on the build machine (``just image`` calls them); ``verify`` runs
anywhere, and on the appliance checks against the key baked into its image.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from app.update import bundle, gpt


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("update", help="signed system update bundles")
    actions = p.add_subparsers(dest="action", required=True)

    keygen = actions.add_parser("keygen", help="a new Ed25519 signing key (private, mode 0600)")
    keygen.add_argument("private_key", type=Path)
    keygen.add_argument("--public", type=Path, help="also write the public key here")
    keygen.set_defaults(func=_keygen)

    public = actions.add_parser("public", help="print the public key (PEM) of a signing key")
    public.add_argument("private_key", type=Path)
    public.set_defaults(func=_public)

    make = actions.add_parser("bundle", help="sign a system partition and its boot image")
    make.add_argument("--image", type=Path, required=True, help="the built disk image (GPT)")
    make.add_argument("--uki", type=Path, required=True, help="the unified kernel image")
    make.add_argument("--version", required=True)
    make.add_argument("--key", type=Path, required=True, help="the private signing key")
    make.add_argument("--level", type=int, default=6, help="zstd level of the system image")
    make.add_argument("-o", "--out", type=Path, required=True)
    make.set_defaults(func=_bundle)

    inst = actions.add_parser("install", help="install a bundle into the other slot (root)")
    inst.add_argument("bundle", type=Path)
    inst.add_argument("--key", type=Path, default=bundle.TRUSTED_KEY, help="public key (PEM)")
    inst.add_argument("--staging", type=Path, default=None, help="where to unpack it")
    inst.add_argument("--allow-downgrade", action="store_true")
    inst.add_argument("--reboot", action="store_true", help="reboot into it when installed")
    inst.set_defaults(func=_install)

    gate = actions.add_parser("health", help="the health gate of this boot (root, at boot)")
    gate.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for health")
    gate.add_argument("--panel-url", default="http://127.0.0.1:8080/")
    gate.add_argument("--record", type=Path, default=None, help="where the verdict goes")
    gate.add_argument(
        "--no-rollback", action="store_true", help="only report: never mark bad or reboot"
    )
    gate.set_defaults(func=_health)

    serve = actions.add_parser("serve", help="carry out the panel's update request (root)")
    serve.add_argument("--spool", type=Path, default=Path("/var/lib/appliance-panel/update"))
    serve.add_argument("--key", type=Path, default=bundle.TRUSTED_KEY, help="public key (PEM)")
    serve.set_defaults(func=_serve)

    check = actions.add_parser("verify", help="check a bundle's signature and checksums")
    check.add_argument("bundle", type=Path)
    check.add_argument("--key", type=Path, default=bundle.TRUSTED_KEY, help="public key (PEM)")
    check.set_defaults(func=_verify)


def _keygen(ns: argparse.Namespace) -> int:
    public = bundle.generate_key(ns.private_key)
    if ns.public:
        ns.public.write_bytes(public)
    print(f"update key {bundle.key_id(public)}: private {ns.private_key} (keep it off the device)")
    return 0


def _public(ns: argparse.Namespace) -> int:
    print(bundle.public_pem_of(ns.private_key).decode(), end="")
    return 0


def _bundle(ns: argparse.Namespace) -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".root-", dir=ns.out.parent) as tmp:
        root = Path(tmp) / "root.raw"
        gpt.extract_partition(ns.image, root)
        m = bundle.write_bundle(
            ns.out,
            version=ns.version,
            root_image=root,
            uki=ns.uki,
            private_key=ns.key,
            level=ns.level,
        )
    print(
        f"bundle {ns.out}: version {m.version}, key {m.key_id}, {ns.out.stat().st_size} bytes "
        f"(system {m.root.installed_size} bytes as {m.root.size}, boot image {m.uki.size})"
    )
    return 0


def _verify(ns: argparse.Namespace) -> int:
    try:
        trusted = ns.key.read_bytes()
    except OSError as exc:
        raise bundle.BundleError(f"no update key to check against: {exc}") from None
    m = bundle.verify_bundle(ns.bundle, trusted)
    print(f"bundle {ns.bundle}: version {m.version}, key {m.key_id}: signature and checksums good")
    return 0


def _install(ns: argparse.Namespace) -> int:
    import subprocess

    from app import config as config_mod
    from app.update import install

    cfg = config_mod.load(ns.data_dir.resolve(), ns.config, None)
    try:
        trusted = ns.key.read_bytes()
    except OSError as exc:
        raise bundle.BundleError(f"no update key to check against: {exc}") from None
    m = install.install(
        ns.bundle,
        trusted,
        trading=install.engine_trading(cfg.control_socket),
        running=install.running_version(),
        staging=ns.staging or install.STAGING,
        allow_downgrade=ns.allow_downgrade,
        say=lambda line: print(f"update: {line}", flush=True),
    )
    if ns.reboot:
        print(f"update: rebooting into {m.version}", flush=True)
        subprocess.run(["systemctl", "reboot"], check=True)
    return 0


def _esp() -> Path | None:
    import subprocess

    try:
        done = subprocess.run(
            ["bootctl", "--print-esp-path"], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:  # not a systemd-boot system
        return None
    path = done.stdout.strip()
    return Path(path) if done.returncode == 0 and path else None


def _health(ns: argparse.Namespace) -> int:
    import subprocess
    import time

    from app import config as config_mod
    from app.update import health, install, rollback

    cfg = config_mod.load(ns.data_dir.resolve(), ns.config, None)
    version = install.running_version()
    esp = _esp()
    entry = health.boot_entry(esp, version) if esp else None

    def probes() -> list[health.Probe]:
        return [
            health.probe_engine(),
            *health.probe_control_and_model(cfg.control_socket),
            health.probe_panel(ns.panel_url),
        ]

    outcome = health.wait_healthy(probes, ns.timeout)
    for p in outcome.probes:
        print(f"health: {'ok  ' if p.ok else 'FAIL'} {p.name}: {p.detail}", flush=True)
    trial = entry is not None and entry.on_trial
    roll_back = not outcome.ok and trial and not ns.no_rollback
    action = "kept" if outcome.ok else "rolled back" if roll_back else "stayed"
    record = ns.record or health.RECORD
    health.record(record, version, outcome, action, time.time_ns() // 1_000_000)
    if esp is not None:
        # What the System page offers to go back to (root's view; the panel cannot read the ESP).
        previous = rollback.previous_version(esp, version, install.BY_PARTLABEL)
        rollback.write_slots(record.parent, version, previous)
    counted = health.loader_counts()
    if outcome.ok:
        if entry is not None and trial and not counted:
            print(f"health: boot entry {health.settle(entry, good=True).name} blessed", flush=True)
        print(f"health: version {version} works (after {outcome.waited_s:.0f} s)", flush=True)
        return 0
    failed = ", ".join(p.name for p in outcome.failed())
    print(f"health: version {version} failed ({failed}) after {outcome.waited_s:.0f} s", flush=True)
    if action == "rolled back" and entry is not None:
        if counted:
            subprocess.run(["systemd-bless-boot", "bad"], check=False)
        else:
            health.settle(entry, good=False)
        print("health: boot entry marked bad; rebooting into the previous version", flush=True)
        subprocess.run(["systemctl", "reboot", "--no-block"], check=False)
    return 1


def _serve(ns: argparse.Namespace) -> int:
    import subprocess
    import time

    from app import config as config_mod
    from app.update import health, install, request, rollback

    cfg = config_mod.load(ns.data_dir.resolve(), ns.config, None)

    def install_fn(path: Path, say: Callable[[str], None]) -> str:
        try:
            trusted = ns.key.read_bytes()
        except OSError as exc:
            raise bundle.BundleError(f"no update key to check against: {exc}") from None
        m = install.install(
            path,
            trusted,
            trading=install.engine_trading(cfg.control_socket),
            running=install.running_version(),
            say=say,
        )
        return m.version

    def go_back_fn(req: request.Request, say: Callable[[str], None]) -> None:
        esp = _esp()
        if esp is None:
            raise install.UpdateRefused("refused: no boot partition found: cannot go back here")
        running = install.running_version()
        install.check_trading(install.engine_trading(cfg.control_socket))
        target = rollback.go_back(esp, running, req.version, install.BY_PARTLABEL)
        say(f"version {running}'s boot entry marked bad ({target.name})")
        rollback.record_go_back(
            health.RECORD, running, req.version, req.actor, time.time_ns() // 1_000_000
        )

    def reboot() -> None:
        subprocess.run(["systemctl", "reboot", "--no-block"], check=False)

    state = request.serve(ns.spool, install_fn, reboot, go_back_fn)
    print(f"update: request {state or 'none'}")
    return 0 if state in (None, "installed", "rebooting") else 1

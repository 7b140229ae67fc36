"""The System page's figures, from /proc and /sys where the kernel exposes them (None elsewhere)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SERVICES = ("appliance-engine.service", "appliance-panel.service")


@dataclass(frozen=True)
class Backup:
    name: str
    size: int
    ts_ns: int


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def cpu_percent(sample_s: float = 0.1) -> float | None:
    def totals() -> tuple[int, int] | None:
        text = _read("/proc/stat")
        if not text:
            return None
        fields = [int(x) for x in text.splitlines()[0].split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)

    first = totals()
    time.sleep(sample_s)
    second = totals()
    if first is None or second is None or second[0] == first[0]:
        return None
    busy = (second[0] - first[0]) - (second[1] - first[1])
    return round(100.0 * busy / (second[0] - first[0]), 1)


def memory() -> dict[str, int] | None:
    text = _read("/proc/meminfo")
    if not text:
        return None
    info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in text.splitlines()}
    return {"total": info.get("MemTotal", 0), "available": info.get("MemAvailable", 0)}


def temperatures() -> dict[str, float]:
    out: dict[str, float] = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        raw, kind = _read(str(zone / "temp")), _read(str(zone / "type"))
        if raw and raw.strip().lstrip("-").isdigit():
            out[(kind or zone.name).strip()] = int(raw) / 1000
    return out


def uptime_s() -> float | None:
    text = _read("/proc/uptime")
    return float(text.split()[0]) if text else None


def service_states() -> dict[str, str]:
    """systemd's view of our units, where systemd runs (empty in a container or on a laptop)."""
    if not shutil.which("systemctl") or not Path("/run/systemd/system").exists():
        return {}
    out: dict[str, str] = {}
    for unit in SERVICES:
        try:
            done = subprocess.run(
                ["systemctl", "is-active", unit],
                capture_output=True,
                text=True,
                timeout=3,
                check=False,
            )
            out[unit] = done.stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            out[unit] = "unknown"
    return out


def clock_sync() -> str:
    """Whether the clock is synchronised (timedatectl), as systemd reports it."""
    if not shutil.which("timedatectl") or not Path("/run/systemd/system").exists():
        return "unknown (no systemd)"
    try:
        done = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return {"yes": "synchronised", "no": "NOT synchronised"}.get(done.stdout.strip(), "unknown")


def recent_log_lines(limit: int = 40) -> list[str]:
    if not shutil.which("journalctl") or not Path("/run/systemd/system").exists():
        return []
    try:
        done = subprocess.run(
            [
                "journalctl",
                "--no-pager",
                "-o",
                "short-iso",
                "-n",
                str(limit),
                *(f"--unit={u}" for u in SERVICES),
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return done.stdout.splitlines()[-limit:]


def backups(backup_dir: Path) -> list[Backup]:
    if not backup_dir.is_dir():
        return []
    out = [
        Backup(p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in backup_dir.iterdir()
        if p.is_file() and p.name.endswith(".zst")
    ]
    return sorted(out, key=lambda b: b.ts_ns, reverse=True)


def snapshot(data_dir: Path) -> dict[str, object]:
    disk = shutil.disk_usage(data_dir) if data_dir.exists() else None
    return {
        "cpu_percent": cpu_percent(),
        "load": os.getloadavg(),
        "memory": memory(),
        "disk": {"total": disk.total, "free": disk.free} if disk else None,
        "temperatures": temperatures(),
        "uptime_s": uptime_s(),
        "services": service_states(),
        "clock": clock_sync(),
        "logs": recent_log_lines(),
    }

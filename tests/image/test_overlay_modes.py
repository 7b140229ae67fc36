"""Who may read the appliance's secrets and backups, as the image's overlay declares it.

Read on the host, without building the image: ``tmpfiles.d/appliance.conf``, the two service
units and ``sysusers.d``. The panel's password hash, its session/CSRF key and the setup code are
0600 and the panel user's; the API keys 0600 and the engine user's; their directories 0700; the
backups 0750 (the panel's group reads them, nobody else); no line under /var/lib grants the world
anything, and each service applies its own directory's lines again at start (the data partition
may be mounted after tmpfiles ran at boot). The paths are the ones the code uses. Where
``systemd-tmpfiles`` is installed and we are root, the file is also applied to a scratch root:
directories made with their modes, a file left 0644 set to 0600.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.admin.config import AdminConfig
from app.live.keys import keys_path

OVERLAY = Path(__file__).resolve().parents[2] / "image" / "overlay"
TMPFILES = OVERLAY / "usr/lib/tmpfiles.d/appliance.conf"
UNITS = OVERLAY / "usr/lib/systemd/system"
SYSUSERS = OVERLAY / "usr/lib/sysusers.d/appliance.conf"
ENGINE_DIR = Path("/var/lib/appliance")
PANEL_DIR = Path("/var/lib/appliance-panel")
PANEL = AdminConfig(data_dir=PANEL_DIR)


@dataclass(frozen=True)
class Line:
    kind: str
    path: str
    mode: str
    user: str
    group: str


def tmpfiles() -> dict[str, Line]:
    """Path -> its tmpfiles.d line (type, path, mode, user, group; age and argument ignored)."""
    out: dict[str, Line] = {}
    for raw in TMPFILES.read_text().splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        kind, path, mode, user, group, *_ = shlex.split(raw)
        assert path not in out, f"{path} declared twice"
        out[path] = Line(kind, path, mode, user, group)
    return out


def unit(name: str) -> dict[str, list[str]]:
    """The [Service] section of a unit: key -> every value it is given, in order."""
    section, values = "", dict[str, list[str]]()
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


SECRETS = {
    # path (from the code) -> the service user that alone may read it
    str(keys_path(ENGINE_DIR)): "appliance",
    str(PANEL.password_file): "appliance-panel",
    str(PANEL.key_file): "appliance-panel",
    str(PANEL.setup_code_file): "appliance-panel",
}
PRIVATE_DIRS = {
    str(keys_path(ENGINE_DIR).parent): "appliance",
    str(PANEL.secrets_dir): "appliance-panel",
}


@pytest.mark.parametrize(("path", "owner"), sorted(SECRETS.items()))
def test_each_secret_is_0600_and_its_service_users(path: str, owner: str) -> None:
    line = tmpfiles().get(path)
    assert line is not None, f"no tmpfiles.d line for {path}"
    # z: mode and owner set on a file that exists, nothing created (the service writes it).
    assert (line.kind, line.mode, line.user, line.group) == ("z", "0600", owner, "appliance")


@pytest.mark.parametrize(("path", "owner"), sorted(PRIVATE_DIRS.items()))
def test_secret_directories_are_0700(path: str, owner: str) -> None:
    line = tmpfiles()[path]
    assert (line.kind, line.mode, line.user) == ("d", "0700", owner)


def test_backups_are_read_by_the_panels_group_and_nobody_else() -> None:
    backups = tmpfiles()[str(ENGINE_DIR / "backups")]
    assert (backups.kind, backups.mode, backups.user, backups.group) == (
        "d",
        "0750",
        "appliance",
        "appliance",
    )
    # The panel sees them through its own directory, as a link.
    link = tmpfiles()[str(PANEL.backup_dir)]
    assert link.kind == "L"


def test_nothing_under_var_lib_is_open_to_the_world() -> None:
    for line in tmpfiles().values():
        if line.path.startswith("/var/lib/") and line.kind != "L":
            assert int(line.mode, 8) & 0o007 == 0, line


def test_the_service_users_and_groups_exist() -> None:
    users = {
        fields[1]: fields[2]
        for fields in (
            shlex.split(line) for line in SYSUSERS.read_text().splitlines() if line[:1] in "ug"
        )
        if fields
    }
    assert {"appliance", "appliance-panel"} <= set(users)
    assert users["appliance-panel"].endswith(":appliance")  # primary group: the engine's


@pytest.mark.parametrize(
    ("name", "user", "data_dir"),
    [
        ("appliance-engine.service", "appliance", ENGINE_DIR),
        ("appliance-panel.service", "appliance-panel", PANEL_DIR),
    ],
)
def test_each_service_makes_private_files_and_applies_its_lines_at_start(
    name: str, user: str, data_dir: Path
) -> None:
    service = unit(name)
    assert service["User"] == [user] and service["Group"] == ["appliance"]
    # Files a service makes without a mode of their own are 0640 at most, directories 0750.
    assert service["UMask"] == ["0027"] and service["StateDirectoryMode"] == ["0750"]
    [pre] = service["ExecStartPre"]
    assert pre.startswith("-+")  # as root, outside the sandbox; a refusal does not stop it
    argv = shlex.split(pre[2:])
    assert argv[0].endswith("/systemd-tmpfiles") and "--create" in argv
    assert f"--prefix={data_dir}" in argv and argv[-1] == "/usr/lib/tmpfiles.d/appliance.conf"


def test_the_panels_state_is_bound_from_the_data_partition() -> None:
    """A new system slot replaces the root file system: the panel's password, key and database
    must be on the partition no update writes, bound onto the path the panel uses."""
    mounts = {
        fields[1]: fields
        for fields in (line.split() for line in (OVERLAY / "etc/fstab").read_text().splitlines())
        if fields and not fields[0].startswith("#")
    }
    assert mounts[str(ENGINE_DIR)][0] == "PARTLABEL=appliance-data"
    source, _, kind, options, *_ = mounts[str(PANEL_DIR)]
    assert kind == "none" and "bind" in options.split(",")
    assert Path(source).parent == ENGINE_DIR
    assert "x-systemd.requires=appliance-data-dirs.service" in options.split(",")
    # The unit that makes the bind's source on a fresh partition, owned as tmpfiles would.
    dirs = unit("appliance-data-dirs.service")
    argv = shlex.split(dirs["ExecStart"][0])
    assert argv[-1] == source
    assert argv[2:8] == ["-m", "0750", "-o", "appliance-panel", "-g", "appliance"]


def _scratch_root(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        "root:x:0:0::/root:/bin/sh\n"
        "appliance:x:64990:64990::/var/lib/appliance:/usr/sbin/nologin\n"
        "appliance-panel:x:64991:64990::/var/lib/appliance:/usr/sbin/nologin\n"
    )
    (root / "etc/group").write_text("root:x:0:\nappliance:x:64990:\n")


@pytest.mark.skipif(
    shutil.which("systemd-tmpfiles") is None or os.geteuid() != 0,
    reason="needs systemd-tmpfiles and root (chown)",
)
def test_systemd_tmpfiles_applies_the_modes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _scratch_root(root)
    keys = root / str(keys_path(ENGINE_DIR)).lstrip("/")
    keys.parent.mkdir(parents=True)
    keys.write_text("{}")
    os.chown(keys.parent, 64990, 64990)
    os.chown(keys, 64990, 64990)
    keys.chmod(0o644)  # as a copy made by hand might be
    for prefix in (ENGINE_DIR, PANEL_DIR):
        done = subprocess.run(
            ["systemd-tmpfiles", "--create", f"--root={root}", f"--prefix={prefix}", str(TMPFILES)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    def mode(path: Path) -> tuple[str, int, int]:
        st = (root / str(path).lstrip("/")).stat()
        return oct(st.st_mode & 0o777), st.st_uid, st.st_gid

    assert mode(keys_path(ENGINE_DIR)) == ("0o600", 64990, 64990)
    assert mode(keys_path(ENGINE_DIR).parent) == ("0o700", 64990, 64990)
    assert mode(ENGINE_DIR / "backups") == ("0o750", 64990, 64990)
    assert mode(PANEL.secrets_dir) == ("0o700", 64991, 64990)
    assert mode(PANEL_DIR) == ("0o750", 64991, 64990)
    assert not (root / str(PANEL.key_file).lstrip("/")).exists()  # z makes no file

"""The panel's configuration: one frozen object built by ``appliance admin`` and passed in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.config import DEFAULT_ADMIN_PORT

# The repository's web/ directory; the image may install it elsewhere (``APPLIANCE_WEB_DIR``).
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[2] / "web"
ADMIN_USER = "admin"


@dataclass(frozen=True)
class AdminConfig:
    """Where the panel's state lives, how it listens, and its security limits."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_ADMIN_PORT
    https: bool = False
    web_dir: Path = DEFAULT_WEB_DIR
    # Sessions: an idle session ends after idle_timeout_s, any session after absolute_timeout_s.
    idle_timeout_s: float = 30 * 60
    absolute_timeout_s: float = 12 * 3600
    # Login throttling: free attempts, then a delay doubling per failure up to the cap; failures
    # are forgotten after forget_after_s without one, so there is never a permanent lock-out.
    throttle_free_attempts: int = 3
    throttle_base_delay_s: float = 1.0
    throttle_max_delay_s: float = 300.0
    throttle_forget_after_s: float = 3600.0
    setup_code_ttl_s: float = 24 * 3600
    upload_max_bytes: int = 64 * 1024 * 1024
    # A backup archive holds the model store (several models) and the journals: more room.
    archive_upload_max_bytes: int = 512 * 1024 * 1024
    # A system update bundle: the system image (zstd) and its UKI, about 300 MB today.
    update_upload_max_bytes: int = 1024 * 1024 * 1024
    # The public key update bundles must be signed with (baked into the image).
    update_key: Path = Path("/usr/lib/appliance/update-key.pem")
    # Where the running system version is read (IMAGE_VERSION): the image's own.
    os_release: Path = Path("/etc/os-release")
    # How long a control command may take before the page says the engine did not answer.
    control_timeout_s: float = 5.0
    live_interval_s: float = 1.0
    alert_poll_s: float = 2.0

    @property
    def control_socket(self) -> Path:
        return self.data_dir / "control.sock"

    @property
    def trading_db(self) -> Path:
        return self.data_dir / "trading.db"

    @property
    def panel_db(self) -> Path:
        return self.data_dir / "panel.db"

    @property
    def secrets_dir(self) -> Path:
        return self.data_dir / "secrets"

    @property
    def password_file(self) -> Path:
        return self.secrets_dir / "admin-password.hash"

    @property
    def key_file(self) -> Path:
        return self.secrets_dir / "panel.key"

    @property
    def setup_code_file(self) -> Path:
        return self.data_dir / "setup-code"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def update_spool(self) -> Path:
        """Where a checked bundle waits for root's install (app/update/request.py)."""
        return self.data_dir / "update"

    @property
    def update_url_file(self) -> Path:
        """The address the owner last fetched an update bundle from (the form offers it again)."""
        return self.data_dir / "update-url"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def backup_dir(self) -> Path:
        return self.data_dir / "backups"

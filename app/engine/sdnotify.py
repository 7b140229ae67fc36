"""systemd's notify protocol (READY, WATCHDOG, STATUS), without a libsystemd dependency.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op, so the engine runs the same way under
``appliance run`` on a developer's machine.
"""

from __future__ import annotations

import contextlib
import os
import socket


class Notifier:
    """Sends datagrams to ``$NOTIFY_SOCKET``; silent when not run by systemd."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | None = None
        if address:
            # A leading "@" names a socket in the abstract namespace.
            self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        owned = not pid or pid == str(os.getpid())
        self.watchdog_interval_s = int(usec) / 2_000_000 if usec.isdigit() and owned else 0.0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        # systemd gone or socket full: never let bookkeeping take the engine down.
        with contextlib.suppress(OSError):
            self._sock.sendto(message.encode(), self._address)

    def ready(self, status: str = "") -> None:
        self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

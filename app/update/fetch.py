"""An update bundle from an address the owner gives (a file server on the LAN, a release page):
http or https only, streamed to disk under a size cap, never held in memory.

What is fetched is only a candidate: it goes through the same checks as an upload (the signature
and every checksum, the version, the trading guard) before root installs it. No proxy settings
from the environment, no ``file:`` or ``ftp:`` (not even through a redirect).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from app.update.bundle import BundleError

SCHEMES = ("http", "https")
MAX_URL = 2000
CHUNK = 1 << 20


def check_url(url: str) -> str:
    """``url`` stripped, if it is an http(s) address with a host; else a clear refusal."""
    url = url.strip()
    parts = urllib.parse.urlsplit(url)
    if (
        parts.scheme not in SCHEMES
        or not parts.hostname
        or len(url) > MAX_URL
        or any(c.isspace() or ord(c) < 0x20 for c in url)
    ):
        raise BundleError("refused: the address must be an http:// or https:// URL")
    return url


def _opener() -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPRedirectHandler(),  # refuses a redirect to anything but http(s)/ftp
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def download(
    url: str, directory: Path, max_bytes: int, timeout_s: float = 60.0
) -> tuple[Path, int]:
    """Fetch ``url`` into a new file in ``directory``: (its path, its size). Nothing is left
    behind on a failure."""
    url = check_url(url)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="fetched-", suffix=".update", dir=directory)
    path, size = Path(name), 0
    try:
        with os.fdopen(fd, "wb") as out:
            # check_url took http(s) only, and the opener has no other handlers.
            request = urllib.request.Request(url, headers={"User-Agent": "appliance-update"})  # noqa: S310
            with _opener().open(request, timeout=timeout_s) as resp:
                if urllib.parse.urlsplit(resp.geturl()).scheme not in SCHEMES:
                    raise BundleError(f"refused: {url} redirects away from http(s)")
                length = resp.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > max_bytes:
                    raise BundleError(
                        f"refused: {url} is {int(length):,} bytes, more than the {max_bytes:,} "
                        "an update bundle may be"
                    )
                while chunk := resp.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BundleError(
                            f"refused: {url} is more than the {max_bytes:,} bytes an update "
                            "bundle may be"
                        )
                    out.write(chunk)
        if size == 0:
            raise BundleError(f"refused: {url} is empty")
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the connection
        path.unlink(missing_ok=True)
        raise BundleError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        path.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise BundleError(f"could not download {url}: {reason}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size

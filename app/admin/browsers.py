"""A browser's User-Agent header as the Sessions page names it: "Firefox 128 on Linux"."""

from __future__ import annotations

import re

# Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
_BROWSERS = (
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"OPR/(\d+)")),
    ("Firefox", re.compile(r"(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome (headless)", re.compile(r"HeadlessChrome/(\d+)")),
    ("Chromium", re.compile(r"Chromium/(\d+)")),
    ("Chrome", re.compile(r"(?:Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+)[.\d]* (?:Mobile/\S+ )?Safari/")),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iOS"),
    ("iPad", "iPadOS"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def browser_name(user_agent: object) -> str:
    """The browser, its major version and the system; "unknown browser" for anything else
    (curl, a script): the raw header is never shown."""
    ua = str(user_agent or "")
    name = next(
        (f"{label} {m.group(1)}" for label, rx in _BROWSERS if (m := rx.search(ua))),
        "",
    )
    system = next((label for mark, label in _SYSTEMS if mark in ua), "")
    if not name:
        return f"unknown browser on {system}" if system else "unknown browser"
    return f"{name} on {system}" if system else name

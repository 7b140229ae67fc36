#!/bin/sh
# One-time (and idempotent) set-up for a developer machine or CI: a virtual environment in .venv
# with the project and its development tools (Debian's system pip is externally managed, and
# `just` comes from PyPI's rust-just). Re-installs only when pyproject.toml has changed.
set -eu
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing python3-venv with apt" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
        echo "setup: $PY has no venv module; install it (Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
# The per-message modules compiled with mypyc (app/native.py): rebuilt only when their sources
# changed, by the Python sources (APPLIANCE_NATIVE=0), and dropped if the result does not import.
# Without a C compiler or Python's headers the engine runs them as Python, the same code.
if ! .venv/bin/appliance native 2>/dev/null | grep -q ': in use:'; then
    echo "setup: compiling the per-message modules with mypyc (about a minute)" >&2
    if ! APPLIANCE_NATIVE=0 .venv/bin/appliance --log-level WARNING native build \
        >.venv/native-build.log 2>&1; then
        echo "setup: mypyc build failed (see .venv/native-build.log); the engine runs as Python" >&2
    elif ! .venv/bin/python -c 'import app.node.bench' >>.venv/native-build.log 2>&1; then
        echo "setup: the mypyc build does not import (see .venv/native-build.log); removed" >&2
        rm -rf "$(APPLIANCE_NATIVE=0 .venv/bin/python -c 'from app import native; print(native.build_dir())')"
    fi
fi
.venv/bin/appliance native >&2

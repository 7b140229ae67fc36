#!/usr/bin/env bash
# Installs Debian's Chromium for the panel's Playwright browser tests. Playwright never downloads
# a browser here (the tests launch /usr/bin/chromium through executable_path), so this is the one
# install step they need besides the Python `playwright` package (a test dependency).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    # Not root: the browser tests skip, saying why; everything else still runs.
    echo "install-browser.sh: not root, cannot apt-get install chromium; browser tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core

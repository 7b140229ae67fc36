#!/usr/bin/env bash
# Runs the test suite on Debian trixie's own packages (python3 and the python3-* packages listed in
# scripts/trixie-packages.txt) inside a debootstrapped trixie amd64 chroot. The appliance image
# installs exactly those packages, so a green run proves the lower bounds in pyproject.toml.
#
# Usage: scripts/trixie-chroot.sh [--setup-only | --run CMD...] [pytest args...]
#   --setup-only   make or update the chroot and print the versions in it; run no test
#   --run CMD...   run CMD in the repository inside the chroot instead of pytest (for example
#                  `--run python3 -m app.cli bench ...`: the benchmark on the appliance's stack)
#   pytest args    passed on to `python3 -m pytest -q -p no:cacheprovider` (run in the repo)
# Environment: TRIXIE_ROOT (default /var/cache/appliance/trixie-amd64) is where the chroot lives;
#   CI, PYTEST_ADDOPTS and PYTHONTRACEMALLOC/FAULTHANDLER/DEVMODE/ASYNCIODEBUG pass through.
# Exit code: pytest's; 100 when the chroot could not be made.
#
# Needs root (apt, debootstrap, chroot, mount). The chroot is made once and reused; a changed
# package list re-installs. The Debian mirror is read from this machine's apt configuration at
# run time, so no mirror's name is written into the repository. Everything is mounted inside a
# private mount namespace, so nothing stays mounted on the host even if the script is killed.
set -euo pipefail

SUITE=trixie
ARCH=amd64
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=$REPO/../shared
LIST=$REPO/scripts/trixie-packages.txt
ROOT=${TRIXIE_ROOT:-/var/cache/appliance/trixie-amd64}
ROOT=${ROOT%/}
DONE_STAMP=.appliance-debootstrap-done
PKG_STAMP=.appliance-packages
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "trixie: $*" >&2; }
die() { log "error: $*"; exit 100; }

case ${1:-} in
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
esac
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount need it)"
[ -r "$LIST" ] || die "missing $LIST"

# Mounts made below must never show on the host (nor outlive us): re-run in a private mount
# namespace. `unshare` execs in place, so pytest's exit code comes back unchanged.
if [ -z "${TRIXIE_CHROOT_IN_NS:-}" ]; then
    TRIXIE_CHROOT_IN_NS=1 exec unshare --mount --propagation private -- \
        bash "${BASH_SOURCE[0]}" "$@"
fi

setup_only=0 run_cmd=0
if [ "${1:-}" = --setup-only ]; then setup_only=1; shift; fi
if [ "${1:-}" = --run ]; then run_cmd=1; shift; fi

# The packages of the list, comments and blank lines dropped.
packages() { sed -e 's/#.*//' "$LIST" | tr -s '[:blank:]' '\n' | sed '/^$/d'; }

# shellcheck source=scripts/host-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/host-mirror.sh"

# Mounts, undone in reverse order on exit (the namespace would drop them anyway when we end).
MOUNTS=()
mnt() { mount "$@"; MOUNTS+=("${*: -1}"); }
bind_ro() { mnt --bind "$1" "$2"; mount -o remount,bind,ro "$2"; }
unmount_all() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" || true
    done
    MOUNTS=()
}
trap unmount_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# /proc, /dev, /dev/pts, /dev/shm, /sys and a fresh /tmp in the chroot at $1.
mount_system() {
    local r=$1
    mnt -t proc proc "$r/proc"
    mnt --bind /dev "$r/dev"
    mnt --bind /dev/pts "$r/dev/pts"
    mnt -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
    bind_ro /sys "$r/sys"
    mnt -t tmpfs -o mode=1777,nosuid,nodev tmp "$r/tmp"
}

in_chroot() {
    chroot "$1" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "${@:2}"
}

# apt-get update, check that every listed package exists in the suite, install them (and drop
# what an earlier list had that this one has not), then forget the mirror again.
install_packages() {
    local r=$1 mirror=$2 hash=$3 p missing=() cand
    local -a want old=()
    mapfile -t want < <(packages)
    [ -e "$r/$PKG_STAMP" ] && mapfile -t old < <(tail -n +2 "$r/$PKG_STAMP")
    log "installing ${#want[@]} packages from $mirror $SUITE"
    printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$r/etc/apt/sources.list"
    cp -L /etc/resolv.conf "$r/etc/resolv.conf"
    mount_system "$r"
    in_chroot "$r" apt-get update -qq
    for p in "${want[@]}"; do
        cand=$(in_chroot "$r" apt-cache policy "$p" | awk '/Candidate:/ { print $2 }')
        [ -n "$cand" ] && [ "$cand" != "(none)" ] || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] || die "not in Debian $SUITE: ${missing[*]} (edit $LIST)"
    if [ ${#old[@]} -gt 0 ]; then
        in_chroot "$r" apt-mark auto "${old[@]}" >/dev/null 2>&1 || true
    fi
    in_chroot "$r" apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
    in_chroot "$r" apt-get autoremove -y -qq --purge >/dev/null
    in_chroot "$r" apt-get clean
    unmount_all
    # The lists and sources name the mirror; they are only needed while installing.
    rm -rf "$r"/var/lib/apt/lists/*
    echo "# Written only while installing, from the host's apt configuration (scripts/trixie-chroot.sh)." \
        >"$r/etc/apt/sources.list"
    { echo "$hash"; printf '%s\n' "${want[@]}"; } >"$r/$PKG_STAMP"
}

list_hash() { packages | sha256sum | cut -c1-16; }
ready() {
    [ -e "$ROOT/$DONE_STAMP" ] && [ "$(head -n 1 "$ROOT/$PKG_STAMP" 2>/dev/null)" = "$(list_hash)" ]
}

setup() {
    local mirror hash start=$SECONDS
    hash=$(list_hash)
    ready && return 0
    mirror=$(host_mirror)
    if ! command -v debootstrap >/dev/null || [ ! -e "/usr/share/debootstrap/scripts/$SUITE" ]; then
        log "installing debootstrap with apt"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
        [ -e "/usr/share/debootstrap/scripts/$SUITE" ] || die "this debootstrap does not know $SUITE"
    fi
    if [ ! -e "$ROOT/$DONE_STAMP" ]; then
        # Build beside the final place and move it in at the end, so an interrupted run leaves
        # nothing that looks usable. Nothing is ever mounted there outside this namespace.
        local new=$ROOT.new
        if grep -qF -e " $new/" -e " $ROOT/" /proc/self/mountinfo; then
            die "something is mounted under $ROOT or $new: unmount it first"
        fi
        rm -rf --one-file-system "$new" "$ROOT"
        log "debootstrap $SUITE $ARCH (minbase) into $ROOT from $mirror"
        # Its log names the mirror: shown on failure, never kept.
        if ! debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$new" "$mirror" >"$ROOT.log" 2>&1; then
            tail -n 20 "$ROOT.log" >&2
            rm -f "$ROOT.log"
            die "debootstrap failed"
        fi
        rm -f "$ROOT.log"
        # No service may start from a package's maintainer script inside the chroot.
        printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
        chmod 755 "$new/usr/sbin/policy-rc.d"
        grep -qs localhost "$new/etc/hosts" \
            || printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$new/etc/hosts"
        install_packages "$new" "$mirror" "$hash"
        touch "$new/$DONE_STAMP"
        mv "$new" "$ROOT"
    else
        install_packages "$ROOT" "$mirror" "$hash"
    fi
    log "chroot ready in $((SECONDS - start))s, $(du -sxh "$ROOT" | cut -f1) on disk"
}

# Runs share the lock; making or updating the chroot takes it alone, so nothing is re-installed
# under a running suite, yet several suites can run at once.
mkdir -p "$(dirname "$ROOT")"
exec 9>>"$ROOT.lock"
flock -s 9
if ! ready; then
    flock -x 9
    setup
    flock -s 9
fi

# The repository and shared/ keep their relative layout (tests find shared/ as <repo>/../shared).
mkdir -p "$ROOT/work/src" "$ROOT/work/shared"
mount_system "$ROOT"
bind_ro "$REPO" "$ROOT/work/src"
if [ -d "$SHARED" ]; then bind_ro "$SHARED" "$ROOT/work/shared"; fi

# A clean environment, but what helps to debug a failure (and CI) passes through.
PASS_ENV=()
for v in CI PYTEST_ADDOPTS PYTHONTRACEMALLOC PYTHONFAULTHANDLER PYTHONDEVMODE PYTHONASYNCIODEBUG; do
    if [ -n "${!v:-}" ]; then PASS_ENV+=("$v=${!v}"); fi
done
run() {
    chroot "$ROOT" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/tmp LANG=C.UTF-8 TERM="${TERM:-dumb}" \
        "${PASS_ENV[@]}" PYTHONPATH=/work/src PYTHONDONTWRITEBYTECODE=1 \
        /bin/sh -c 'cd /work/src && exec "$@"' sh "$@"
}

run python3 - <<'EOF'
import importlib, importlib.metadata as md, sys
print(f"trixie: python {sys.version.split()[0]}")
mods = [("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("websockets", "websockets"),
        ("starlette", "starlette"), ("uvicorn", "uvicorn"), ("httpx", "httpx"),
        ("msgspec", "msgspec"), ("zstandard", "zstandard"), ("sqlite_utils", "sqlite-utils"),
        ("jinja2", "jinja2"), ("passlib", "passlib"), ("argon2", "argon2-cffi"),
        ("python_multipart", "python-multipart"),
        ("onnx", "onnx"), ("pytest", "pytest"),
        ("pytest_asyncio", "pytest-asyncio"), ("pytest_timeout", "pytest-timeout")]
out = []
for mod, dist in mods:
    try:
        m = importlib.import_module(mod)  # proves it loads, not just that it is installed
    except Exception as exc:  # the tests will say more; the versions line must still come out
        out.append(f"{dist} NOT IMPORTABLE ({type(exc).__name__}: {exc})")
        continue
    try:
        v = md.version(dist)
    except md.PackageNotFoundError:
        v = str(getattr(m, "__version__", "?"))
    out.append(f"{dist} {v}")
print("trixie: " + ", ".join(out), flush=True)
EOF

if [ "$setup_only" = 1 ]; then exit 0; fi
rc=0
if [ "$run_cmd" = 1 ]; then
    run "$@" || rc=$?
else
    run python3 -m pytest -q -rs -p no:cacheprovider "$@" || rc=$?
fi
exit "$rc"

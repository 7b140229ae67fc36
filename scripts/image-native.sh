#!/usr/bin/env bash
# The per-message modules (app/native.py MODULES) compiled for the image's Python: a cross build.
# mypyc (Debian trixie's python3-mypy, on trixie's Python 3.13, amd64) writes the C, and
# riscv64-linux-gnu-gcc compiles it against trixie's riscv64 Python headers, through the very
# `appliance native build` code (app.native.build) with the riscv64 sysconfig data selected
# (_PYTHON_SYSCONFIGDATA_NAME, Debian's way of cross-building Python extensions). Not under
# qemu-user: mypy and gcc emulated would add 10-20 minutes to a cold image build.
#
# Usage: scripts/image-native.sh SRC OUT   (root; called by scripts/image-build.sh)
#   SRC  the copy of the working tree the app's wheel is built from (app/, pyproject.toml)
#   OUT  made anew; receives <SOABI>/ as `appliance native build` leaves a build directory: the
#        extensions (stripped) and stamp.json, the digest of the sources they were made from.
#        scripts/image-stage.py puts it where app.native looks (<dist-packages>/.native/<SOABI>)
#        after checking that stamp against the staged sources, and the guest checks it again at
#        every import, so an edited module is never shadowed by a stale build.
#
# Cached by the sources' digest (app.native.digest()) in $APPLIANCE_IMAGE_CACHE/native/<digest>;
# the newest few are kept. The toolchain is a debootstrapped Debian trixie amd64 chroot with
# riscv64 as a foreign architecture, in ${APPLIANCE_CROSS_ROOT:-/var/cache/appliance/trixie-cross-riscv64}
# (made once, about 3 minutes; remade when the package list below or scripts/trixie-packages.txt
# changes). It holds the image's python3-* packages too: mypy reads their types, as on the host.
# The Debian mirror comes from this machine's apt configuration and is forgotten after installing.
set -euo pipefail
# shellcheck source=image-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"
[ $# = 2 ] || die "usage: $0 SRC OUT"
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount)"
SRC=$(cd "$1" && pwd)
OUT=$2
SUITE=trixie
TARGET=riscv64
TRIPLET=riscv64-linux-gnu
ROOT=${APPLIANCE_CROSS_ROOT:-/var/cache/appliance/trixie-cross-riscv64}
ROOT=${ROOT%/}
LIST=$IMAGE_REPO/scripts/trixie-packages.txt
# What the build needs beside the image's own packages (the list above).
CROSS_PACKAGES=(python3-mypy python3-setuptools "gcc-$TRIPLET" "binutils-$TRIPLET"
                "libpython3-dev:$TARGET")
KEEP=4
CHROOT_PATH=/usr/sbin:/usr/bin:/sbin:/bin

# Mounts must never show on the host nor outlive us: a private mount namespace (as trixie-chroot.sh).
if [ -z "${IMAGE_NATIVE_IN_NS:-}" ]; then
    IMAGE_NATIVE_IN_NS=1 exec unshare --mount --propagation private -- bash "${BASH_SOURCE[0]}" "$@"
fi

digest=$(python3 - "$SRC/app/native.py" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("native_of_src", sys.argv[1])
mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
print(mod.digest())
PY
)
cache=$IMAGE_CACHE/native/$digest
if [ -e "$cache/done" ]; then
    touch "$cache/done"  # recently used: kept by the pruning below
    rm -rf "$OUT"; mkdir -p "$OUT"
    cp -a "$cache"/cpython-* "$OUT"/
    log "native: cached cross build of sources ${digest:0:12} ($(cat "$cache/toolchain"))"
    exit 0
fi

packages() { { sed -e 's/#.*//' "$LIST" | tr -s '[:blank:]' '\n'; printf '%s\n' "${CROSS_PACKAGES[@]}"; } | sed '/^$/d'; }
list_hash() { packages | sha256sum | cut -c1-16; }
ready() { [ "$(cat "$ROOT/.appliance-cross-packages" 2>/dev/null)" = "$(list_hash)" ]; }

MOUNTS=()
mnt() { mount "$@"; MOUNTS+=("${*: -1}"); }
unmount_all() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" || true
    done
    MOUNTS=()
}
work=""
cleanup() { unmount_all; [ -z "$work" ] || rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mount_system() {
    mnt -t proc proc "$1/proc"
    mnt --bind /dev "$1/dev"
    mnt --bind /dev/pts "$1/dev/pts"
    mnt -t tmpfs -o mode=1777,nosuid,nodev tmp "$1/tmp"
}
in_chroot() {
    chroot "$1" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "${@:2}"
}

# debootstrap (once), riscv64 added, the packages installed; the mirror forgotten afterwards.
setup() {
    local mirror r start=$SECONDS
    mirror=$(host_mirror)
    command -v debootstrap >/dev/null && [ -e "/usr/share/debootstrap/scripts/$SUITE" ] || {
        log "installing debootstrap with apt"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    r=$ROOT
    if [ ! -e "$ROOT/.appliance-debootstrap-done" ]; then
        r=$ROOT.new
        rm -rf --one-file-system "$r" "$ROOT"
        log "native: debootstrap $SUITE amd64 (minbase) into $ROOT"
        if ! debootstrap --variant=minbase --arch=amd64 "$SUITE" "$r" "$mirror" >"$ROOT.log" 2>&1; then
            tail -n 20 "$ROOT.log" >&2; rm -f "$ROOT.log"; die "debootstrap failed"
        fi
        rm -f "$ROOT.log"
        printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
        chmod 755 "$r/usr/sbin/policy-rc.d"
        touch "$r/.appliance-debootstrap-done"
    fi
    mapfile -t want < <(packages)
    log "native: installing ${#want[@]} packages (riscv64 cross toolchain, mypy, the image's python3-*)"
    in_chroot "$r" dpkg --add-architecture "$TARGET"
    printf 'deb [arch=amd64,%s] %s %s main\n' "$TARGET" "$mirror" "$SUITE" >"$r/etc/apt/sources.list"
    cp -L /etc/resolv.conf "$r/etc/resolv.conf"
    mount_system "$r"
    in_chroot "$r" apt-get update -qq
    in_chroot "$r" apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
    in_chroot "$r" apt-get clean
    unmount_all
    rm -rf "$r"/var/lib/apt/lists/*
    echo "# Written only while installing, from the host's apt configuration (scripts/image-native.sh)." \
        >"$r/etc/apt/sources.list"
    list_hash >"$r/.appliance-cross-packages"
    [ "$r" = "$ROOT" ] || mv "$r" "$ROOT"
    log "native: toolchain ready in $((SECONDS - start))s, $(du -sxh "$ROOT" | cut -f1) on disk"
}

mkdir -p "$(dirname "$ROOT")"
exec 9>>"$ROOT.lock"
flock -s 9
if ! ready; then
    flock -x 9
    ready || setup
    flock -s 9
fi

# The build, in the chroot, on a copy of the sources. mypy's cache stays in the chroot (a build
# after an edit then re-reads only what changed); one build at a time, as the cache is shared.
exec 8>>"$ROOT.build.lock"
flock -x 8
start=$SECONDS
work=$(mktemp -d "$ROOT/var/tmp/native.XXXXXX")
mkdir -p "$work/src" "$work/out"
cp -a "$SRC/app" "$SRC/pyproject.toml" "$work/src/"
mount_system "$ROOT"
# The riscv64 sysconfig data of the chroot's python3 (libpython3.X-stdlib:riscv64): its SOABI,
# EXT_SUFFIX, compiler flags and LDSHARED are the target's.
pyver=$(in_chroot "$ROOT" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
sysconfigdata=$(cd "$ROOT/usr/lib/python$pyver" && ls _sysconfigdata_*"$TRIPLET".py 2>/dev/null | head -n 1)
sysconfigdata=${sysconfigdata%.py}
[ -n "$sysconfigdata" ] || die "no $TRIPLET sysconfig data in $ROOT/usr/lib/python$pyver"
rel=${work#"$ROOT"}
if ! chroot "$ROOT" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/tmp LANG=C.UTF-8 \
    APPLIANCE_NATIVE=0 MYPY_CACHE_DIR=/var/cache/appliance-mypy PYTHONDONTWRITEBYTECODE=1 \
    _PYTHON_SYSCONFIGDATA_NAME="$sysconfigdata" CC="$TRIPLET-gcc" \
    /bin/sh -c 'cd "$1/src" && exec python3 - "$1/out" "$2"' sh "$rel" "$TRIPLET" \
    >"$work/build.log" 2>&1 <<'PY'
import sys, sysconfig
from pathlib import Path
from app import native
soabi = sysconfig.get_config_var("SOABI")
if sys.argv[2].split("-")[0] not in soabi:
    raise SystemExit(f"the sysconfig data says {soabi}, not {sys.argv[2]}: not a cross build")
print("native: built", native.build(Path(sys.argv[1]) / soabi))
PY
then
    cp "$work/build.log" "$IMAGE_CACHE/native-build.log" 2>/dev/null || true
    tail -n 40 "$work/build.log" >&2
    die "native: the cross build failed (the image would run the modules as Python;" \
        "APPLIANCE_IMAGE_NATIVE=0 builds it so on purpose)"
fi
mapfile -t sos < <(find "$work/out" -name '*.so')
[ ${#sos[@]} -gt 0 ] || die "native: the build made no extension"
in_chroot "$ROOT" "$TRIPLET-strip" --strip-unneeded "${sos[@]#"$ROOT"}"
for so in "${sos[@]}"; do
    in_chroot "$ROOT" "$TRIPLET-readelf" -h "${so#"$ROOT"}" | grep -q 'Machine:.*RISC-V' \
        || die "native: $so is not a RISC-V object"
done
toolchain=$(in_chroot "$ROOT" dpkg-query -W -f='${Package} ${Version}, ' \
    python3-mypy "gcc-$TRIPLET" "libpython3-dev:$TARGET" | sed 's/, $//')
took=$((SECONDS - start))
log "native: cross build of sources ${digest:0:12}: ${#sos[@]} extensions," \
    "$(du -sh "$work/out" | cut -f1) in ${took}s ($toolchain)"

mkdir -p "$IMAGE_CACHE/native"
rm -rf "$cache.new"
mv "$work/out" "$cache.new"
echo "$toolchain; built in ${took}s" >"$cache.new/toolchain"
touch "$cache.new/done"
rm -rf "$cache"
mv "$cache.new" "$cache"
# The newest $KEEP builds stay (a build is a few MB).
find "$IMAGE_CACHE/native" -mindepth 2 -maxdepth 2 -name done -printf '%T@ %h\n' | sort -rn \
    | tail -n +$((KEEP + 1)) | cut -d' ' -f2- | while read -r old; do rm -rf "$old"; done
rm -rf "$OUT"; mkdir -p "$OUT"
cp -a "$cache"/cpython-* "$OUT"/

#!/usr/bin/env bash
# Rebuild a Debian source package as binary .debs for another suite and architecture: how the
# board image gets packages its distribution lacks (Ubuntu noble has no python3-msgspec and no
# python3-onnxruntime; image/mkosi.profiles/noble-rv2/README.md feeds the result to mkosi through
# PackageDirectories=).
#
# Usage: scripts/deb-rebuild.sh SOURCE SUITE ARCH OUTDIR
#   SOURCE  the Debian source package, or a binary package of it (python-msgspec or
#           python3-msgspec; onnxruntime), or the path of a local .dsc with its files beside
#           it (where the mirror serves no sources, or to build a patched one)
#   SUITE   the suite built for: a Debian suite (bookworm, trixie, sid) or Ubuntu's noble
#   ARCH    amd64, arm64 or riscv64; a foreign one runs under qemu-user through binfmt_misc
#           (scripts/image-setup.sh registers riscv64 with the F flag), built natively, not cross
#   OUTDIR  receives the .debs (no -dbgsym), the .buildinfo and the .changes
# Environment:
#   DEB_SOURCE_SUITE   the Debian suite the source is taken from (default: SUITE for a Debian
#                      suite, trixie for noble)
#   UBUNTU_PORTS_MIRROR, UBUNTU_MIRROR   an Ubuntu archive for noble (ports for arm64/riscv64,
#                      the main archive for amd64), as for scripts/image-build.sh
#   DEB_BUILD_OPTIONS  passed on (default "parallel=<cores>"; add nocheck to skip the tests)
#   DEB_REBUILD_ROOT   where the clean chroots live (default /var/cache/appliance)
# Exit code: 0 built; 2 bad arguments; otherwise 1, or the code of the apt or dpkg command that
# failed.
#
# Needs root (debootstrap, chroot, mount). The chroot (debootstrap --variant=buildd) is made once
# per suite and architecture, as ${DEB_REBUILD_ROOT}/deb-rebuild-SUITE-ARCH, and stays clean: every
# build runs on an overlay of it (build dependencies, sources and the build tree live in a scratch
# upper directory, deleted afterwards), inside a private mount namespace, so nothing stays mounted
# on the host even if the script is killed. The Debian mirror is read from this machine's apt
# configuration at run time and written only into the scratch layer, so it is forgotten.
# A foreign architecture is bootstrapped in two stages (debootstrap --foreign, then its second
# stage run inside the chroot under qemu-user). noble needs Ubuntu's keyring on the host
# (apt-get install ubuntu-keyring) and uses debootstrap's gutsy script when the host's debootstrap
# does not know noble.
#
# Examples:
#   nice -n 19 scripts/deb-rebuild.sh python-msgspec trixie amd64 /tmp/debs # the proof, ~10 min
#   UBUNTU_PORTS_MIRROR=http://<ports mirror>/ubuntu-ports \
#       scripts/deb-rebuild.sh python-msgspec noble riscv64 /srv/rv2       # under qemu
#   UBUNTU_PORTS_MIRROR=... DEB_BUILD_OPTIONS="nocheck parallel=8" \
#       scripts/deb-rebuild.sh onnxruntime noble riscv64 /srv/rv2          # hours: see the README
set -euo pipefail

ARCHES="amd64 arm64 riscv64"
DEBIAN_SUITES="bookworm trixie forky sid unstable"
UBUNTU_SUITES="noble"
CHROOT_PATH=/usr/sbin:/usr/bin:/sbin:/bin
DONE_STAMP=.appliance-debootstrap-done

log() { echo "deb-rebuild: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage_error() { log "error: $*"; log "usage: $0 SOURCE SUITE ARCH OUTDIR (--help)"; exit 2; }
word_in() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }

case ${1:-} in
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; exit 0 ;;
esac
[ $# = 4 ] || usage_error "expected 4 arguments, got $#"
SOURCE=$1 SUITE=$2 ARCH=$3 OUTDIR=$4
DSC=""
if [[ $SOURCE == *.dsc ]]; then
    [ -f "$SOURCE" ] || usage_error "no such .dsc: '$SOURCE'"
    DSC=$(cd "$(dirname "$SOURCE")" && pwd)/$(basename "$SOURCE")
else
    [[ $SOURCE =~ ^[a-z0-9][a-z0-9.+-]+$ ]] || usage_error "not a source package name: '$SOURCE'"
fi
word_in "$ARCH" "$ARCHES" || usage_error "architecture '$ARCH' not supported (one of: $ARCHES)"
if word_in "$SUITE" "$DEBIAN_SUITES"; then
    VENDOR=debian
    SRC_SUITE=${DEB_SOURCE_SUITE:-$SUITE}
elif word_in "$SUITE" "$UBUNTU_SUITES"; then
    VENDOR=ubuntu
    SRC_SUITE=${DEB_SOURCE_SUITE:-trixie}
else
    usage_error "suite '$SUITE' not supported (one of: $DEBIAN_SUITES $UBUNTU_SUITES)"
fi
word_in "$SRC_SUITE" "$DEBIAN_SUITES" || usage_error "DEB_SOURCE_SUITE '$SRC_SUITE' is not a Debian suite"

# qemu-user's name for a Debian architecture.
qemu_arch() { case $1 in amd64) echo x86_64 ;; arm64) echo aarch64 ;; *) echo "$1" ;; esac; }
HOST_ARCH=$(dpkg --print-architecture)
FOREIGN=0
if [ "$ARCH" != "$HOST_ARCH" ]; then
    FOREIGN=1
    binfmt=/proc/sys/fs/binfmt_misc/qemu-$(qemu_arch "$ARCH")
    grep -qs '^enabled' "$binfmt" \
        || die "$ARCH is foreign here and $binfmt is not enabled: run scripts/image-setup.sh (riscv64) or install qemu-user-static"
    grep -qs '^flags: .*F' "$binfmt" || die "$binfmt lacks the F flag (scripts/image-setup.sh explains)"
fi
[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot and mount need it)"

# Mounts made below must never show on the host (nor outlive us): re-run in a private namespace.
if [ -z "${DEB_REBUILD_IN_NS:-}" ]; then
    DEB_REBUILD_IN_NS=1 exec unshare --mount --propagation private -- bash "${BASH_SOURCE[0]}" "$@"
fi

# shellcheck source=scripts/host-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/host-mirror.sh"
DEBIAN_MIRROR=$(host_mirror)
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
if [ "$VENDOR" = ubuntu ]; then
    if [ "$ARCH" = amd64 ]; then MIRROR=${UBUNTU_MIRROR:-}; mvar=UBUNTU_MIRROR
    else MIRROR=${UBUNTU_PORTS_MIRROR:-}; mvar=UBUNTU_PORTS_MIRROR; fi
    [ -n "$MIRROR" ] || die "$SUITE $ARCH needs $mvar: an Ubuntu archive with $SUITE $ARCH"
    MIRROR=${MIRROR%/}
    KEYRING=/usr/share/keyrings/ubuntu-archive-keyring.gpg
    COMPONENTS="main universe"
    [ -r "$KEYRING" ] || die "missing $KEYRING: apt-get install ubuntu-keyring"
else
    MIRROR=$DEBIAN_MIRROR
    KEYRING=$DEBIAN_KEYRING
    COMPONENTS=main
fi
CACHE=${DEB_REBUILD_ROOT:-/var/cache/appliance}
CACHE=${CACHE%/}
ROOT=$CACHE/deb-rebuild-$SUITE-$ARCH
mkdir -p "$OUTDIR" "$CACHE"
OUTDIR=$(cd "$OUTDIR" && pwd)

MOUNTS=()
mnt() { mount "$@"; MOUNTS+=("${*: -1}"); }
unmount_all() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" || true
    done
    MOUNTS=()
}
SCRATCH=""
cleanup() { unmount_all; if [ -n "$SCRATCH" ]; then rm -rf --one-file-system "$SCRATCH"; fi; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mount_system() {
    local r=$1
    mnt -t proc proc "$r/proc"
    mnt --bind /dev "$r/dev"
    mnt --bind /dev/pts "$r/dev/pts"
    mnt -t tmpfs -o mode=1777,nosuid,nodev shm "$r/dev/shm"
    mnt --bind /sys "$r/sys"
    mount -o remount,bind,ro "$r/sys"
    mnt -t tmpfs -o mode=1777,nosuid,nodev tmp "$r/tmp"
}
in_chroot() {
    chroot "$1" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "${@:2}"
}

# The clean chroot: debootstrap's buildd variant (build-essential, apt), no mirror left in it.
make_chroot() {
    local new=$ROOT.new script="" dlog=$ROOT.log
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    if [ ! -e "/usr/share/debootstrap/scripts/$SUITE" ]; then
        [ "$VENDOR" = ubuntu ] || die "this debootstrap does not know $SUITE"
        script=/usr/share/debootstrap/scripts/gutsy
    fi
    if grep -qF -e " $new/" -e " $ROOT/" /proc/self/mountinfo; then
        die "something is mounted under $ROOT or $new: unmount it first"
    fi
    rm -rf --one-file-system "$new" "$ROOT"
    local -a opts=(--variant=buildd --arch="$ARCH" --keyring="$KEYRING"
                   --components="${COMPONENTS// /,}")
    [ "$FOREIGN" = 1 ] && opts+=(--foreign)
    log "debootstrap $SUITE $ARCH (buildd${script:+, gutsy script}) into $ROOT"
    # Its log names the mirror: shown on failure, never kept.
    if ! debootstrap "${opts[@]}" "$SUITE" "$new" "$MIRROR" ${script:+"$script"} >"$dlog" 2>&1; then
        tail -n 20 "$dlog" >&2; rm -f "$dlog"; die "debootstrap failed"
    fi
    if [ "$FOREIGN" = 1 ]; then
        # The second stage runs the target's maintainer scripts: under qemu-user (binfmt, F flag).
        log "debootstrap second stage under qemu-$(qemu_arch "$ARCH")"
        if ! chroot "$new" /debootstrap/debootstrap --second-stage >"$dlog" 2>&1; then
            tail -n 20 "$dlog" >&2; rm -f "$dlog"; die "debootstrap --second-stage failed"
        fi
    fi
    rm -f "$dlog"
    printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"
    chmod 755 "$new/usr/sbin/policy-rc.d"
    rm -rf "$new"/var/lib/apt/lists/* "$new"/var/cache/apt/archives/*.deb
    echo "# Written per build, in a scratch layer, by scripts/deb-rebuild.sh." >"$new/etc/apt/sources.list"
    touch "$new/$DONE_STAMP"
    mv "$new" "$ROOT"
}

exec 9>>"$ROOT.lock"
flock 9
start=$SECONDS
[ -e "$ROOT/$DONE_STAMP" ] || make_chroot
log "chroot $ROOT ready after $((SECONDS - start))s"

# The build runs on an overlay: the clean chroot below, a scratch directory above.
SCRATCH=$(mktemp -d "$CACHE/deb-rebuild-scratch.XXXXXX")
mkdir -p "$SCRATCH/upper" "$SCRATCH/work" "$SCRATCH/root"
R=$SCRATCH/root
mnt -t overlay overlay -o "lowerdir=$ROOT,upperdir=$SCRATCH/upper,workdir=$SCRATCH/work" "$R"
mount_system "$R"
cp -L /etc/resolv.conf "$R/etc/resolv.conf"
mkdir -p "$R/etc/apt/keyrings"
cp "$DEBIAN_KEYRING" "$R/etc/apt/keyrings/debian-archive-keyring.gpg"
{
    if [ "$VENDOR" = ubuntu ]; then
        for s in "$SUITE" "$SUITE-updates" "$SUITE-security"; do
            echo "deb $MIRROR $s $COMPONENTS"
        done
    else
        echo "deb $MIRROR $SUITE $COMPONENTS"
    fi
    # The source always comes from Debian, checked against Debian's keyring.
    echo "deb-src [signed-by=/etc/apt/keyrings/debian-archive-keyring.gpg] $DEBIAN_MIRROR $SRC_SUITE main"
} >"$R/etc/apt/sources.list"
# Only the source and the suite's own binaries: no recommends, no translations.
printf 'APT::Install-Recommends "false";\nAcquire::Languages "none";\n' >"$R/etc/apt/apt.conf.d/90deb-rebuild"

in_chroot "$R" apt-get update -qq
mkdir -p "$R/build"
if [ -n "$DSC" ]; then
    log "source $(basename "$DSC") (local)"
    # The .dsc and the files its Files: field lists, unpacked as dpkg-source does for apt.
    cp "$DSC" "$R/build/"
    awk '/^Files:/ { f = 1; next } /^[^ ]/ { f = 0 } f && NF == 3 { print $3 }' "$DSC" \
        | while read -r f; do cp "$(dirname "$DSC")/$f" "$R/build/"; done
    chroot "$R" /bin/sh -c 'cd /build && exec dpkg-source -x "$1"' sh "$(basename "$DSC")" >/dev/null
else
    log "source $SOURCE from Debian $SRC_SUITE"
    chroot "$R" /bin/sh -c 'cd /build && exec apt-get source -qq "$1"' sh "$SOURCE" >/dev/null
fi
srcdir=$(find "$R/build" -mindepth 1 -maxdepth 1 -type d | head -n 1)
[ -n "$srcdir" ] || die "apt-get source unpacked nothing"
log "build-dep $(basename "$srcdir")"
in_chroot "$R" apt-get build-dep -y -qq "/build/$(basename "$srcdir")" >/dev/null
opts=${DEB_BUILD_OPTIONS:-parallel=$(nproc)}
log "dpkg-buildpackage -b -uc -us (DEB_BUILD_OPTIONS=\"$opts noautodbgsym\")"
build_start=$SECONDS
if ! chroot "$R" /usr/bin/env -i PATH="$CHROOT_PATH" HOME=/root LANG=C.UTF-8 \
        DEB_BUILD_OPTIONS="$opts noautodbgsym" \
        /bin/sh -c 'cd "$1" && exec dpkg-buildpackage -b -uc -us' sh "/build/$(basename "$srcdir")" \
        >"$SCRATCH/build.log" 2>&1; then
    tail -n 40 "$SCRATCH/build.log" >&2
    die "dpkg-buildpackage failed (the last 40 lines above)"
fi
shopt -s nullglob
debs=("$R"/build/*.deb)
[ ${#debs[@]} -gt 0 ] || die "the build made no .deb"
cp "${debs[@]}" "$R"/build/*.buildinfo "$R"/build/*.changes "$OUTDIR"/
log "built in $((SECONDS - build_start))s (total $((SECONDS - start))s), into $OUTDIR:"
for d in "${debs[@]}"; do echo "  $(basename "$d") ($(du -h "$d" | cut -f1))" >&2; done

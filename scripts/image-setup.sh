#!/usr/bin/env bash
# Host set-up for building and booting the riscv64 image (idempotent; root; Debian 12 or newer).
#
#   1. binfmt_misc + qemu-user-static, so riscv64 maintainer scripts run during the build. The
#      interpreter must be registered with the F (fix-binary) flag to work inside mkosi's sandbox.
#   2. mkosi 25 from Debian trixie's .deb, unpacked under $APPLIANCE_IMAGE_CACHE/mkosi (apt-
#      installing it on bookworm would drag systemd 257 onto the host), with a wrapper bin/mkosi.
#      The .deb comes through a private apt configuration (signature-checked lists of trixie in
#      the cache), so the host's own apt sources and preferences are left untouched.
# Everything else (systemd-repart, ukify, qemu-system-riscv64 10, OpenSBI, U-Boot, socat) comes
# from mkosi's tools tree, built on the first `scripts/image-build.sh`.
set -euo pipefail
# shellcheck source=image-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, binfmt_misc)"
MKOSI_SERIES=${MKOSI_SERIES:-25.}

# 1. binfmt for riscv64.
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
if ! command -v qemu-riscv64-static >/dev/null || ! command -v update-binfmts >/dev/null; then
    log "installing qemu-user-static and binfmt-support with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static binfmt-support >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-riscv64 ] || update-binfmts --enable qemu-riscv64
grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-riscv64 || die "binfmt qemu-riscv64 is disabled"
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-riscv64 \
    || die "binfmt qemu-riscv64 lacks the F flag (needed inside mkosi's sandbox)"

# 2. mkosi from trixie, unpacked.
if [ ! -x "$MKOSI" ] || ! "$MKOSI" --version 2>/dev/null | grep -q " $MKOSI_SERIES"; then
    mirror=$(host_mirror)
    apt_dir=$IMAGE_CACHE/mkosi/apt
    rm -rf "$IMAGE_CACHE/mkosi"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/dl"
    echo "deb $mirror trixie main" >"$apt_dir/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir"
              -o "Dir::Etc::Preferences=/dev/null" -o "Dir::Etc::PreferencesParts=/dev/null"
              -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
    log "fetching mkosi from Debian trixie ($mirror)"
    apt-get "${apt_opts[@]}" update -qq
    (cd "$apt_dir/dl" && apt-get "${apt_opts[@]}" download -qq mkosi)
    deb=$(ls "$apt_dir"/dl/mkosi_*_all.deb)
    dpkg-deb -x "$deb" "$IMAGE_CACHE/mkosi/root"
    mkdir -p "$IMAGE_CACHE/mkosi/bin"
    cat >"$MKOSI" <<WRAP
#!/bin/sh
# mkosi unpacked from $(basename "$deb") by scripts/image-setup.sh
export PYTHONPATH=$IMAGE_CACHE/mkosi/root/usr/lib/python3/dist-packages
exec /usr/bin/python3 -m mkosi "\$@"
WRAP
    chmod +x "$MKOSI"
    rm -rf "$apt_dir/lists" "$apt_dir/archives"
fi
"$MKOSI" --version | grep -q " $MKOSI_SERIES" || die "mkosi $("$MKOSI" --version) is not ${MKOSI_SERIES}x"
log "ready: $("$MKOSI" --version), binfmt $(sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-riscv64)"

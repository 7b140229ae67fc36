#!/usr/bin/env bash
# Write the appliance image to a block device (an SD card, an NVMe in a USB enclosure). `just flash`.
#
# Usage: scripts/image-flash.sh [--check-only] [--image FILE] DEVICE
#   DEVICE        a whole disk, e.g. /dev/sdb or /dev/nvme1n1 (never a partition)
#   --image FILE  the raw image (default: $APPLIANCE_IMAGE_OUT/appliance.raw of the profile in
#                 APPLIANCE_IMAGE_PROFILE, default trixie)
#   --check-only  run every check, print what would be written, write nothing
#
# Refuses: anything that is not a block device; partitions (only whole disks); read-only devices;
# devices that are mounted, used as swap or held by device-mapper/md (directly or through a
# partition); the disk(s) the running system is on (/, /usr, /boot, /boot/efi, /efi, /var);
# an image larger than the device. Then shows the image's sha256 (checked against the
# build's .sha256 file) and the device, and writes only after the operator types the device's
# path. Exit status: 0 written (or checks passed with --check-only), 2 refused, 1 other errors.
set -euo pipefail
APPLIANCE_IMAGE_PROFILE=${APPLIANCE_IMAGE_PROFILE:-trixie}
# shellcheck source=image-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"

refuse() { echo "flash: refused: $*" >&2; exit 2; }

check_only=0
image=""
device=""
while [ $# -gt 0 ]; do
    case $1 in
        --check-only) check_only=1 ;;
        --image) image=${2:?--image needs a file}; shift ;;
        --image=*) image=${1#--image=} ;;
        -h|--help) sed -n '2,/^set -eu/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) [ -z "$device" ] || die "one device only"; device=$1 ;;
    esac
    shift
done
[ -n "$device" ] || die "usage: image-flash.sh [--check-only] [--image FILE] DEVICE"
image=${image:-$IMAGE_OUT/$IMAGE_ID.raw}

# -- the device -----------------------------------------------------------------------------
[ -e "$device" ] || refuse "$device does not exist"
[ -b "$device" ] || refuse "$device is not a block device"
dev=$(readlink -f "$device")
name=$(basename "$dev")
sys=/sys/class/block/$name
[ -d "$sys" ] || refuse "$dev is not known to the kernel as a block device ($sys missing)"
[ ! -e "$sys/partition" ] || refuse "$dev is a partition; give the whole disk (e.g. /dev/$(basename "$(readlink -f "$sys/..")"))"
type=$(lsblk -dno TYPE "$dev" 2>/dev/null || true)
case $type in
    disk|loop) ;;
    *) refuse "$dev is a '${type:-unknown}' device, not a whole disk" ;;
esac
[ "$(cat "$sys/ro" 2>/dev/null || echo 0)" = 0 ] || refuse "$dev is read-only"
[ "$(cat "$sys/size" 2>/dev/null || echo 0)" -gt 0 ] || refuse "$dev has no medium (size 0)"

# The device and all its partitions: none mounted, none swap, none held by dm/md.
members=("$name")
for p in "$sys"/"$name"*; do
    [ -e "$p/partition" ] && members+=("$(basename "$p")")
done
mounted=$(lsblk -nro NAME,MOUNTPOINT "$dev" 2>/dev/null | awk 'NF > 1 { print "/dev/" $1 " on " $2 }' | paste -sd, -)
[ -z "$mounted" ] || refuse "$dev is mounted or in use as swap: $mounted"
for m in "${members[@]}"; do
    if awk -v d="/dev/$m" 'NR > 1 && $1 == d { found = 1 } END { exit !found }' /proc/swaps; then
        refuse "/dev/$m is in use as swap"
    fi
    if [ -n "$(ls -A "/sys/class/block/$m/holders" 2>/dev/null)" ]; then
        refuse "/dev/$m is held by $(ls "/sys/class/block/$m/holders" | paste -sd, -) (device-mapper, md, ...)"
    fi
done

# The running system's disks: walk from each system mount's source down to whole disks.
system_disks() {
    local target src
    for target in / /usr /boot /boot/efi /efi /var; do
        src=$(findmnt -rno SOURCE --target "$target" 2>/dev/null | head -n 1) || continue
        [ -b "$src" ] || continue
        lsblk -srno NAME,TYPE "$src" 2>/dev/null | awk '$2 == "disk" || $2 == "loop" { print $1 }'
    done | sort -u
}
while read -r d; do
    [ -n "$d" ] || continue
    [ "$d" != "$name" ] || refuse "$dev holds the running system (mounted /, /usr, /boot or /var)"
done < <(system_disks)

# -- the image ------------------------------------------------------------------------------
[ -f "$image" ] || die "no image $image (build it: just image)"
image_bytes=$(stat -c %s "$image")
dev_bytes=$(( $(cat "$sys/size") * 512 ))
[ "$image_bytes" -le "$dev_bytes" ] || refuse "the image ($image_bytes bytes) is larger than $dev ($dev_bytes bytes)"
case $image in *",ci"*|*"ci,"*) log "WARNING: this is a CI image (test agent, simulator config): not for a board" ;; esac
log "hashing $image"
sha=$(sha256sum "$image" | cut -d' ' -f1)
if [ -f "$image.sha256" ]; then
    [ "$(cut -d' ' -f1 "$image.sha256")" = "$sha" ] || die "$image does not match $image.sha256"
    shamatch="(matches the build's $image.sha256)"
else
    shamatch="(no .sha256 file beside it to compare with)"
fi
model=$(lsblk -dno MODEL,SERIAL "$dev" 2>/dev/null | xargs || true)
cat >&2 <<INFO
image:   $image
         $image_bytes bytes, sha256 $sha $shamatch
device:  $dev  ${model:-}  $dev_bytes bytes ($(lsblk -dno SIZE "$dev" | xargs))
         EVERYTHING ON IT WILL BE LOST.
INFO
if [ "$check_only" = 1 ]; then
    log "checks passed; --check-only: nothing written"
    exit 0
fi

printf 'type the device path (%s) to write it: ' "$dev" >&2
answer=""
read -r answer || true
[ "$answer" = "$dev" ] || refuse "confirmation '$answer' is not '$dev'"

log "writing $image to $dev"
dd if="$image" of="$dev" bs=4M conv=fsync oflag=direct status=progress
sync
blockdev --rereadpt "$dev" 2>/dev/null || true
written=$(head -c "$image_bytes" "$dev" | sha256sum | cut -d' ' -f1)
[ "$written" = "$sha" ] || die "read back sha256 $written differs from the image's $sha"
log "done: $dev holds $image (sha256 $sha, read back and compared)"

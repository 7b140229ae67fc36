#!/usr/bin/env bash
# Spike for issue 20 (A/B updates): does systemd-boot's boot counting work on this image's
# firmware in QEMU, and does a slot whose tries ran out fall back to the other slot by itself?
# Not part of CI; it prints what it saw and exits 0 when both questions are answered yes on EDK2.
#
# Usage: scripts/spike-bootcount.sh   (root; needs a built ci image: `just image`)
#
# On a sparse copy of the image's disk, boot counting is set up by hand as an update would:
#   1. U-Boot (the firmware CI boots with): the UKI renamed to NAME+3.efi; systemd-boot must
#      rename it to NAME+2-1.efi before it starts the kernel. U-Boot's EFI file layer refuses
#      renames, and systemd-boot says so on the console.
#   2. EDK2 (Debian trixie's qemu-efi-riscv64, fetched from this machine's Debian mirror): the
#      same, then a slot switch: slot a (no counter: known good) and slot b (newer, one try).
#      Boot 1 picks b and spends its try (b+0-1); power is cut before the system is up (a
#      failed update). Boot 2 must pick a by itself: systemd-boot sorts entries with no tries
#      left last. Had it picked b, systemd-bless-boot would have renamed it to b.efi once
#      boot-complete.target was reached; b still named b+0-1 after boot 2 is the proof.
set -euo pipefail
APPLIANCE_IMAGE_PROFILE=${APPLIANCE_IMAGE_PROFILE:-trixie,ci}
# shellcheck source=image-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"
# shellcheck source=host-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/host-mirror.sh"
[ "$(id -u)" = 0 ] || die "must run as root (mkosi's sandbox)"
raw=$IMAGE_OUT/$IMAGE_ID.raw
[ -e "$raw" ] || die "no image at $raw: run \`just image\` first"
mapfile -t opts < <(mkosi_opts)
sandbox() { "$MKOSI" "${opts[@]}" sandbox "$@"; }

run=$(mktemp -d /tmp/appliance-spike.XXXXXX)
qemu_pid=""
cleanup() { [ -z "$qemu_pid" ] || kill -- "-$qemu_pid" 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT

esp_offset=$(python3 - "$raw" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    f.seek(512)
    lba, n, size = struct.unpack("<QII", f.read(92)[72:88])
    f.seek(lba * 512)
    for _ in range(n):
        e = f.read(size)
        if e[56:128].decode("utf-16le").rstrip("\0") == "esp":
            print(struct.unpack_from("<Q", e, 32)[0] * 512)
            break
PY
)
[ -n "$esp_offset" ] || die "no ESP partition in $raw"
esp="$run/disk.raw@@$esp_offset"
ukis() { sandbox mdir -b -i "$esp" ::/EFI/Linux | sed 's|.*/||' | grep -i '\.efi$' | sort; }

fresh_disk() {
    cp --sparse=always "$raw" "$run/disk.raw"
    truncate -s 6G "$run/disk.raw"
}

# boot FIRMWARE-ARGS...: QEMU in the background, the serial console in $run/serial.log.
boot() {
    rm -f "$run/serial.log"
    setsid "$MKOSI" "${opts[@]}" sandbox qemu-system-riscv64 -cpu rv64 -m 2G -smp 2 \
        -accel tcg,thread=multi "$@" \
        -netdev user,id=n0,restrict=on -device virtio-net-pci,netdev=n0 \
        -display none -monitor none -serial file:"$run/serial.log" >"$run/qemu.log" 2>&1 &
    qemu_pid=$!
}
stop() { kill -- "-$qemu_pid" 2>/dev/null || true; wait "$qemu_pid" 2>/dev/null || true; qemu_pid=""; }
# wait_for PATTERN SECONDS: seconds until the console printed PATTERN, or fail.
wait_for() {
    local t0=$SECONDS
    until grep -aqE "$1" "$run/serial.log" 2>/dev/null; do
        [ $((SECONDS - t0)) -lt "$2" ] || { log "spike: no '$1' within $2 s"; return 1; }
        sleep 1
    done
    echo $((SECONDS - t0))
}

uki=$(sandbox mdir -b -i "$raw@@$esp_offset" ::/EFI/Linux | sed 's|.*/||' | grep -i '\.efi$' | head -n 1)
[ -n "$uki" ] || die "no UKI under EFI/Linux on the ESP"
name=${uki%.efi}
log "spike: UKI $uki"

# 1. U-Boot
fresh_disk
sandbox mren -i "$esp" "::/EFI/Linux/$uki" "::/EFI/Linux/$name+3.efi"
boot -machine virt -bios default -kernel /usr/lib/u-boot/qemu-riscv64_smode/uboot.elf \
    -drive file="$run/disk.raw",if=none,format=raw,id=hd0 -device virtio-blk-device,drive=hd0
wait_for "EFI stub: Exiting boot services" 300 >/dev/null
sleep 2
stop
uboot=$(grep -a "Failed to rename" "$run/serial.log" | sed 's/\x1b\[[0-9;]*m//g' | tr -d '\r' | head -n 1)
log "spike: U-Boot: after one boot the ESP holds $(ukis | tr '\n' ' ')"
log "spike: U-Boot: ${uboot:-no rename failure printed}"

# 2. EDK2
mirror=$(host_mirror)
mirror=${mirror%/}
[ -n "$mirror" ] || die "no Debian mirror in this machine's apt configuration"
deb=$(curl -sf "$mirror/dists/trixie/main/binary-all/Packages.xz" | xz -d \
    | awk 'BEGIN { RS = "" } /(^|\n)Package: qemu-efi-riscv64\n/' | sed -n 's/^Filename: //p')
[ -n "$deb" ] || die "no qemu-efi-riscv64 in trixie's Packages"
curl -sf -o "$run/edk2.deb" "$mirror/$deb"
dpkg-deb -x "$run/edk2.deb" "$run/edk2"
fw=$run/edk2/usr/share/qemu-efi-riscv64
log "spike: EDK2: ${deb##*/}"
edk2() {
    boot -machine virt,acpi=off \
        -drive if=pflash,format=raw,unit=0,file="$fw/RISCV_VIRT_CODE.fd",readonly=on \
        -drive if=pflash,format=raw,unit=1,file="$run/vars.fd" \
        -drive file="$run/disk.raw",format=raw,if=virtio
}
fresh_disk
cp "$fw/RISCV_VIRT_VARS.fd" "$run/vars.fd"
sandbox mcopy -i "$esp" "::/EFI/Linux/$uki" "$run/uki.efi"
sandbox mren -i "$esp" "::/EFI/Linux/$uki" "::/EFI/Linux/$name-a.efi"
sandbox mcopy -i "$esp" "$run/uki.efi" "::/EFI/Linux/$name-b+1.efi"
log "spike: EDK2: slots before: $(ukis | tr '\n' ' ')"
edk2
to_kernel=$(wait_for "EFI stub: Exiting boot services" 300)
sleep 5  # the kernel runs: cut the power before the system is up, as a failing update would
stop
after1=$(ukis | tr '\n' ' ')
log "spike: EDK2: boot 1 reached the kernel in ${to_kernel} s and was cut: $after1"
edk2
up=$(wait_for "login:" 600)
sleep 20  # bless-boot would have run by now (it runs at boot-complete.target, before login)
stop
after2=$(ukis | tr '\n' ' ')
blessed=$(grep -ac "Finished.*systemd-bless-boot" "$run/serial.log" || true)
log "spike: EDK2: boot 2 up (login prompt) in ${up} s; bless-boot ran ${blessed}x: $after2"

ok=1
case " $after1 " in *" $name-b+0-1.efi "*) ;; *) ok=0; log "spike: FAIL: boot 1 did not spend b's try" ;; esac
case " $after2 " in *" $name-b+0-1.efi "*) ;; *) ok=0; log "spike: FAIL: boot 2 booted b again" ;; esac
[ "$blessed" = 0 ] || { ok=0; log "spike: FAIL: boot 2 blessed a counted entry (it booted b)"; }
[ "$ok" = 1 ] && log "spike: PASS: EDK2 counts tries and falls back to slot a by itself"
[ "$ok" = 1 ]

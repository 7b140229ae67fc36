#!/usr/bin/env bash
# Boot the CI image under qemu-system-riscv64 (TCG) and run tests/image/image_checks.py against it
# (root). `just image-test`. Builds the image first when it is missing (or APPLIANCE_IMAGE_REBUILD=1).
#
# The guest's network is QEMU user networking with restrict=on: it reaches nothing but
#   - 10.0.2.100:9100, forwarded (guestfwd, socat) to the simulator this script starts on the host;
# and the host reaches it only through
#   - 127.0.0.1:<free port> -> guest :8080 (the panel; hostfwd: the update bundles are uploaded
#     there, as an owner would),
#   - a virtio-serial port (Unix socket) for the CI image's test agent (no network at all).
# The disk is a sparse copy of the built image, larger than it, so first-boot repart has room to
# grow the root, make the second system slot and the data partition; the built image itself is
# never written.
#
# Environment: as scripts/image-build.sh (APPLIANCE_IMAGE_PROFILE must include `ci`), plus
#   APPLIANCE_IMAGE_TEST_DISK (overlay size, default 10G), APPLIANCE_IMAGE_TEST_MEM (2G),
#   APPLIANCE_IMAGE_TEST_SMP (2), APPLIANCE_IMAGE_BOOT_TIMEOUT (900 s),
#   APPLIANCE_IMAGE_KEEP=1 keeps the VM running after the checks (until Ctrl-C),
#   APPLIANCE_IMAGE_TEST_ONLY=name,name runs only those checks (after `boot`; for debugging);
#   the in-guest benchmark (check bench-riscv64, tests/image/guest_bench.py) on the reference
#   recording in ${APPLIANCE_REFERENCE_DIR:-<repo>/../shared/reference}/market-data:
#   APPLIANCE_IMAGE_BENCH_MESSAGES (20000), APPLIANCE_IMAGE_BENCH_ROUNDS (1),
#   APPLIANCE_IMAGE_BENCH_DECIDE (bar; or bar,event).
# Logs (serial console, simulator, QEMU) end up in $APPLIANCE_IMAGE_OUT/test-logs/.
set -euo pipefail
APPLIANCE_IMAGE_PROFILE=${APPLIANCE_IMAGE_PROFILE:-trixie,ci}
# shellcheck source=image-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"
[ "$(id -u)" = 0 ] || die "must run as root (mkosi's sandbox)"
case ",$IMAGE_PROFILE," in *,ci,*) ;; *) die "image-test boots the ci profile (e.g. trixie,ci), not $IMAGE_PROFILE" ;; esac

raw=$IMAGE_OUT/$IMAGE_ID.raw
if [ ! -e "$raw" ] || [ "${APPLIANCE_IMAGE_REBUILD:-0}" = 1 ]; then
    "$IMAGE_REPO/scripts/image-build.sh"
fi
mapfile -t opts < <(mkosi_opts)
sandbox() { "$MKOSI" "${opts[@]}" sandbox "$@"; }

py=$IMAGE_REPO/.venv/bin/python
[ -x "$py" ] || die "no $py: run ./setup.sh first"
free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# mkosi's sandbox shows the host's /tmp: sockets, logs and the overlay disk live there.
run=$(mktemp -d /tmp/appliance-image-test.XXXXXX)
logs=$IMAGE_OUT/test-logs
sim_pid="" qemu_pid=""
cleanup() {
    set +e
    [ -z "$qemu_pid" ] || { kill -- "-$qemu_pid" 2>/dev/null; wait "$qemu_pid" 2>/dev/null; }
    [ -z "$sim_pid" ] || { kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null; }
    rm -rf "$logs"; mkdir -p "$logs"
    cp "$run"/*.log "$logs"/ 2>/dev/null
    rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sim_port=$(free_port)
panel_port=$(free_port)
(cd "$IMAGE_REPO" && exec "$py" -m app.cli sim --host 127.0.0.1 --port "$sim_port") >"$run/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do
    "$py" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' \
        "$sim_port" 2>/dev/null && break
    kill -0 "$sim_pid" 2>/dev/null || { cat "$run/sim.log" >&2; die "the simulator did not start"; }
    sleep 0.2
done

# The image's system partition (GPT): its size, so the check can tell that first boot grew it.
read -r _ root_bytes < <("$py" -m app.update.gpt "$raw")

# A sparse copy of the image, made larger (the tools tree has no qemu-img for a qcow2 overlay).
cp --sparse=always "$raw" "$run/disk.raw"
truncate -s "${APPLIANCE_IMAGE_TEST_DISK:-10G}" "$run/disk.raw"

# A/B update: this build's version N, its signing key, and N+1 and N+2 derived from it (only
# their versions differ, and N+2's engine never reports ready: tests/image/derive_bundle.py),
# uploaded to the guest's panel by the checks.
update_key=${APPLIANCE_UPDATE_KEY:-$IMAGE_CACHE/update-key/signing.pem}
built_bundle=$(readlink -f "$IMAGE_OUT/$IMAGE_ID.update" || true)
version=$(basename "$built_bundle" .update); version=${version#"${IMAGE_ID}_"}
next_version=$version.1
mkdir -p "$run/bundles"
derive_start=$SECONDS
"$py" "$IMAGE_REPO/tests/image/derive_bundle.py" --image "$raw" --uki "$IMAGE_OUT/$IMAGE_ID.efi" \
    --key "$update_key" --from-version "$version" --version "$next_version" \
    -o "$run/bundles/${IMAGE_ID}_$next_version.update" >&2
broken_version=$version.2
"$py" "$IMAGE_REPO/tests/image/derive_bundle.py" --image "$raw" --uki "$IMAGE_OUT/$IMAGE_ID.efi" \
    --key "$update_key" --from-version "$version" --version "$broken_version" --broken \
    -o "$run/bundles/${IMAGE_ID}_$broken_version.update" >&2
log "derived versions $next_version and $broken_version (broken) from $version in $((SECONDS - derive_start))s"

# boot_vm NAME: start QEMU on the disk (serial console in $run/NAME-serial.log); sets qemu_pid.
boot_vm() {
    rm -f "$run/agent.sock"
    setsid "$MKOSI" "${opts[@]}" sandbox qemu-system-riscv64 \
        -machine virt -cpu rv64 -m "${APPLIANCE_IMAGE_TEST_MEM:-2G}" -smp "${APPLIANCE_IMAGE_TEST_SMP:-2}" \
        -accel tcg,thread=multi \
        -bios default -kernel /usr/lib/u-boot/qemu-riscv64_smode/uboot.elf \
        -drive file="$run/disk.raw",if=none,format=raw,id=hd0,discard=unmap \
        -device virtio-blk-device,drive=hd0 \
        -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$panel_port-:8080,guestfwd=tcp:10.0.2.100:9100-cmd:socat - TCP:127.0.0.1:$sim_port" \
        -device virtio-net-device,netdev=n0 \
        -object rng-random,filename=/dev/urandom,id=rng0 -device virtio-rng-device,rng=rng0 \
        -device virtio-serial-device \
        -chardev socket,id=agent,path="$run/agent.sock",server=on,wait=off \
        -device virtserialport,chardev=agent,name=org.appliance.test \
        -display none -monitor none -serial file:"$run/$1-serial.log" \
        >"$run/$1-qemu.log" 2>&1 &
    qemu_pid=$!
    for _ in $(seq 60); do [ -S "$run/agent.sock" ] && break; sleep 1; done
    [ -S "$run/agent.sock" ] || { cat "$run/$1-qemu.log" >&2; die "QEMU did not start"; }
}

# power_off: shut the guest down through the agent and wait for QEMU to end.
power_off() {
    # The agent's answer may never come: the guest goes down under it.
    "$py" - "$run/agent.sock" <<'PY' || true
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(json.dumps({"id": 1, "cmd": "systemctl poweroff --no-block", "timeout": 30}).encode() + b"\n")
s.settimeout(30)
try:
    s.recv(4096)
except OSError:
    pass
PY
    for _ in $(seq 180); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 1; done
    if kill -0 "$qemu_pid" 2>/dev/null; then
        log "the guest did not power off within 180 s; killing QEMU"
        kill -- "-$qemu_pid" 2>/dev/null || true
    fi
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=""
}

# checks PHASE NAME: image_checks.py against the running VM.
checks() {
    "$py" "$IMAGE_REPO/tests/image/image_checks.py" --agent "$run/agent.sock" \
        --panel "http://127.0.0.1:$panel_port" --serial-log "$run/$2-serial.log" \
        --model "$IMAGE_REPO/models/default.onnx" --image-root-bytes "$root_bytes" \
        --boot-timeout "${APPLIANCE_IMAGE_BOOT_TIMEOUT:-900}" --diagnostics "$run/$2-guest.log" \
        --only "${APPLIANCE_IMAGE_TEST_ONLY:-}" \
        --reference "${APPLIANCE_REFERENCE_DIR:-$IMAGE_REPO/../shared/reference}" \
        --bench-messages "${APPLIANCE_IMAGE_BENCH_MESSAGES:-20000}" \
        --bench-rounds "${APPLIANCE_IMAGE_BENCH_ROUNDS:-1}" \
        --bench-decide "${APPLIANCE_IMAGE_BENCH_DECIDE:-bar}" \
        --update-key "${APPLIANCE_UPDATE_KEY:-$IMAGE_CACHE/update-key/signing.pem}" \
        --update-bundle "$built_bundle" \
        --next-bundle "${IMAGE_ID}_$next_version.update" --next-version "$next_version" \
        --broken-bundle "${IMAGE_ID}_$broken_version.update" --broken-version "$broken_version" \
        --bundle-dir "$run/bundles" \
        --phase "$1" --facts "$run/facts.json"
}

start=$SECONDS
log "booting $raw (sim on 127.0.0.1:$sim_port, panel on 127.0.0.1:$panel_port, logs in $logs)"
boot_vm first
rc=0
checks first first || rc=$?

# The update: the last first-boot check uploaded version N+1 on the panel's System page, which
# checked it and had root's helper install it into the other system slot. Power off and
# boot again: systemd-boot starts the newest entry, N+1, whose root= names its slot; the second
# boot must come up as the same appliance (password, models, trading data) on the new version.
if [ "$rc" = 0 ] && [ -s "$run/facts.json" ] && grep -q before_update "$run/facts.json"; then
    swap=$SECONDS
    log "powering off to boot version $next_version"
    power_off
    boot_vm updated
    checks updated updated || rc=$?
    log "update: $((SECONDS - swap))s from power-off to the last check on $next_version"
fi

# The rollback: the last check on N+1 installed N+2, whose engine never reports ready. Power off
# and boot: systemd-boot starts N+2 (newest, on trial); its health gate fails after its timeout,
# marks the entry bad and reboots (QEMU resets in place); systemd-boot starts N+1 again.
if [ "$rc" = 0 ] && grep -q broken_figures "$run/facts.json" 2>/dev/null; then
    swap=$SECONDS
    log "powering off to boot version $broken_version (broken)"
    power_off
    boot_vm rolled-back
    checks rolled-back rolled-back || rc=$?
    log "rollback: $((SECONDS - swap))s from power-off to the last check, back on $next_version"
fi
log "image-test took $((SECONDS - start))s after the build; logs in $logs"
if [ "${APPLIANCE_IMAGE_KEEP:-0}" = 1 ]; then
    log "VM kept: panel http://127.0.0.1:$panel_port, agent $run/agent.sock; Ctrl-C ends it"
    wait "$qemu_pid" || true
fi
exit "$rc"

#!/usr/bin/env bash
# Build the appliance's disk image with mkosi (root). `just image`.
#
# Usage: scripts/image-build.sh [extra mkosi options...]
# Environment (see scripts/image-lib.sh): APPLIANCE_IMAGE_PROFILE (default trixie,ci),
#   APPLIANCE_IMAGE_CACHE (default /var/cache/appliance-image), APPLIANCE_IMAGE_OUT;
#   APPLIANCE_IMAGE_DEBIAN_UPDATES=1 adds trixie-updates and trixie-security to the apt sources
#   (off by default: this network's mirror serves stale riscv64 indexes for them);
#   APPLIANCE_IMAGE_NATIVE=0 ships the per-message modules as Python (no cross build);
#   APPLIANCE_CROSS_ROOT: the cross toolchain's chroot (see scripts/image-native.sh);
#   noble-rv2 only: RV2_VENDOR_DIR, UBUNTU_PORTS_MIRROR (see image/mkosi.profiles/noble-rv2).
#   APPLIANCE_UPDATE_KEY: the private key (PEM) that signs the update bundle (default: a throwaway
#   one made in the cache); APPLIANCE_IMAGE_VERSION (default: pyproject's version + commit count).
# Output: $APPLIANCE_IMAGE_OUT/appliance.raw (+ .efi/.vmlinuz/.initrd, .raw.sha256) and the
#   signed update bundle appliance_<version>.update (symlink appliance.update).
#
# Steps: host set-up (scripts/image-setup.sh, idempotent); the app's wheel built from a copy of
# this working tree and staged as an extra tree (scripts/image-stage.py) with the per-message
# modules cross-compiled for riscv64 (scripts/image-native.sh); apt sources generated
# from the host's apt configuration; mkosi with the tools tree, incremental and package caches
# under $APPLIANCE_IMAGE_CACHE. A warm rebuild reuses the cached package installation.
set -euo pipefail
APPLIANCE_IMAGE_PROFILE=${APPLIANCE_IMAGE_PROFILE:-trixie,ci}
# shellcheck source=image-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/image-lib.sh"
[ "$(id -u)" = 0 ] || die "must run as root (mkosi builds file systems and chroots)"
start=$SECONDS

# The board profile cannot be built without inputs this repository does not carry: refuse now,
# naming them, instead of after a 10-minute tools-tree build.
case ",$IMAGE_PROFILE," in
    *,noble-rv2,*)
        missing=()
        [ -n "${RV2_VENDOR_DIR:-}" ] && compgen -G "$RV2_VENDOR_DIR/linux-image-*.deb" >/dev/null \
            || missing+=("RV2_VENDOR_DIR with the vendor kernel .debs (linux-image-*.deb)")
        [ -n "${RV2_VENDOR_DIR:-}" ] && [ -e "$RV2_VENDOR_DIR/x1_orangepi-rv2.dtb" ] \
            || missing+=("\$RV2_VENDOR_DIR/x1_orangepi-rv2.dtb (the board's device tree)")
        [ -n "${UBUNTU_PORTS_MIRROR:-}" ] \
            || missing+=("UBUNTU_PORTS_MIRROR: a reachable Ubuntu ports archive for noble riscv64")
        if [ ${#missing[@]} -gt 0 ]; then
            log "profile noble-rv2 (Orange Pi RV2, Ubuntu 24.04) needs inputs that are missing:"
            printf '  - %s\n' "${missing[@]}" >&2
            die "see image/mkosi.profiles/noble-rv2/README.md"
        fi
        ;;
esac

"$IMAGE_REPO/scripts/image-setup.sh"

# 1. The app: a wheel from a copy of the working tree (tracked and new, not ignored, files), so
#    nothing is built inside the repository while others work in it.
build=$IMAGE_CACHE/build
rm -rf "$build/src" "$build/wheel"
mkdir -p "$build/src" "$build/wheel"
git -C "$IMAGE_REPO" ls-files -co --exclude-standard -z \
    | (cd "$IMAGE_REPO" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
    | (cd "$IMAGE_REPO" && tar --null -T - -cf -) | tar -xf - -C "$build/src"
py=$IMAGE_REPO/.venv/bin/python
if [ -x "$py" ] && "$py" -c 'import setuptools' 2>/dev/null; then
    (cd "$build/src" && "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$build/wheel" .)
else
    (cd "$build/src" && python3 -m pip wheel -q --no-deps -w "$build/wheel" .)
fi
wheel=$(ls "$build"/wheel/appliance-*.whl)

# 2. The per-message modules (app/native.py) compiled for the image's riscv64 Python 3.13: a cross
#    build, cached by the sources' digest (scripts/image-native.sh); staged only if its stamp
#    matches the staged sources. APPLIANCE_IMAGE_NATIVE=0 ships them as Python only.
native=()
case ",$IMAGE_PROFILE," in
    *,noble-rv2,*)
        log "native: no cross build for noble's Python 3.12 (the toolchain is trixie's): the" \
            "per-message modules run as Python there" ;;
    *)
        if [ "${APPLIANCE_IMAGE_NATIVE:-1}" = 1 ]; then
            "$IMAGE_REPO/scripts/image-native.sh" "$build/src" "$build/native"
            native=("$build/native")
        else
            log "native: APPLIANCE_IMAGE_NATIVE=0: the per-message modules run as Python"
        fi ;;
esac
python3 "$IMAGE_REPO/scripts/image-stage.py" "$wheel" "$build/src" "$build/stage" "${native[@]}"
log "staged $(basename "$wheel")${native:+ with the compiled modules}"

# 2b. The update key and the version (app/update/bundle.py). The image trusts the public half of
#     the key that signs its update bundles; the private half stays on the build machine: the
#     owner's (APPLIANCE_UPDATE_KEY), or a throwaway one kept in the cache so successive builds
#     here can update each other. The version orders bundles: pyproject's, then the commit count
#     ("0.1.0.362": no "+" or "-", which systemd-sysupdate's file patterns use as separators).
upy=$py
[ -x "$upy" ] || upy=python3
appliance() { (cd "$IMAGE_REPO" && "$upy" -m app.cli --log-level WARNING "$@"); }
update_key=${APPLIANCE_UPDATE_KEY:-$IMAGE_CACHE/update-key/signing.pem}
if [ ! -e "$update_key" ]; then
    [ -z "${APPLIANCE_UPDATE_KEY:-}" ] || die "APPLIANCE_UPDATE_KEY=$update_key does not exist"
    install -d -m 0700 "$(dirname "$update_key")"
    appliance update keygen "$update_key" >&2
    log "update key: a throwaway one for this machine's builds ($update_key); sign with your" \
        "own by setting APPLIANCE_UPDATE_KEY to its private PEM (appliance update keygen FILE)"
fi
version=${APPLIANCE_IMAGE_VERSION:-$("$upy" -c 'import tomllib, sys; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$IMAGE_REPO/pyproject.toml").$(git -C "$IMAGE_REPO" rev-list --count HEAD)}
[[ $version =~ ^[0-9][0-9A-Za-z.~_]*$ ]] || die "version $version: digits, letters, . ~ _ only"
install -d "$build/stage/usr/lib/appliance"
appliance update public "$update_key" >"$build/stage/usr/lib/appliance/update-key.pem"
echo "$version" >"$build/stage/usr/lib/appliance/version"

# 3. apt sources for the Debian image and the (Debian) tools tree, from the host's mirror.
mirror=$(host_mirror)
sandbox=$build/sandbox-debian
mkdir -p "$sandbox/etc/apt/sources.list.d"
suites="trixie"
security=""
if [ "${APPLIANCE_IMAGE_DEBIAN_UPDATES:-0}" = 1 ]; then
    suites="trixie trixie-updates"
    security="
Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: trixie-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
fi
cat >"$sandbox/etc/apt/sources.list.d/mkosi.sources" <<SRC
# Generated by scripts/image-build.sh from this machine's apt configuration. It replaces mkosi's
# built-in list, which adds debian-debug and deb-src entries this image does not use.
Types: deb
URIs: $mirror
Suites: $suites
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
$security
SRC

mapfile -t opts < <(mkosi_opts)
opts+=(--extra-tree="$build/stage" --tools-tree-sandbox-tree="$sandbox" --image-version="$version")
case ",$IMAGE_PROFILE," in
    *,noble-rv2,*)
        opts+=(--mirror="$UBUNTU_PORTS_MIRROR" --package-directory="$RV2_VENDOR_DIR" --extra-tree="$RV2_VENDOR_DIR/x1_orangepi-rv2.dtb:/boot/dtb/spacemit/x1_orangepi-rv2.dtb") ;;
    *)  # A/B system slots: the UKI boots the slot labelled with its own version, and is named
        # as systemd-sysupdate and systemd-boot order versions (image/overlay/usr/lib/sysupdate.d).
        opts+=(--sandbox-tree="$sandbox" --kernel-command-line="root=PARTLABEL=${IMAGE_ID}_$version"
            --unified-kernel-image-format="${IMAGE_ID}_$version") ;;
esac
mkdir -p "$IMAGE_OUT" "$IMAGE_CACHE/cache" "$IMAGE_CACHE/pkgcache" "$IMAGE_CACHE/work"

log "building profile $IMAGE_PROFILE into $IMAGE_OUT (mirror $mirror)"
"$MKOSI" "${opts[@]}" "$@" -f build
raw=$IMAGE_OUT/$IMAGE_ID.raw
[ -e "$raw" ] || die "mkosi made no $raw"
(cd "$IMAGE_OUT" && sha256sum "$IMAGE_ID.raw" >"$IMAGE_ID.raw.sha256")
log "built $raw in $((SECONDS - start))s: $(du -h --apparent-size "$raw" | cut -f1) apparent," \
    "$(du -h "$raw" | cut -f1) allocated; sha256 $(cut -d' ' -f1 "$raw.sha256")"

# 4. The update bundle of this build: its system partition and UKI, signed, checked at once.
bundle_start=$SECONDS
rm -f "$IMAGE_OUT/$IMAGE_ID"_*.update
bundle=$IMAGE_OUT/${IMAGE_ID}_$version.update
appliance update bundle --image "$raw" --uki "$IMAGE_OUT/$IMAGE_ID.efi" --version "$version" \
    --key "$update_key" -o "$bundle" >&2
appliance update verify "$bundle" --key "$build/stage/usr/lib/appliance/update-key.pem" >&2
ln -sfn "$(basename "$bundle")" "$IMAGE_OUT/$IMAGE_ID.update"
log "update bundle $bundle in $((SECONDS - bundle_start))s"

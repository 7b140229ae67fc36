# shellcheck shell=bash
# Common settings of the scripts/image-*.sh scripts (sourced, not run).
#
# Environment (all optional):
#   APPLIANCE_IMAGE_CACHE    where everything built or downloaded lives, outside the repository
#                            (default /var/cache/appliance-image): mkosi itself, the tools tree,
#                            package and incremental caches, the generated apt sources, outputs.
#   APPLIANCE_IMAGE_PROFILE  trixie (default; what CI builds) or noble-rv2 (the Orange Pi RV2
#                            board; needs Ubuntu's archive and the vendor's kernel, see image/).
#   APPLIANCE_IMAGE_OUT      the output directory (default $APPLIANCE_IMAGE_CACHE/out/<profile>).

IMAGE_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE_CONF=$IMAGE_REPO/image
IMAGE_CACHE=${APPLIANCE_IMAGE_CACHE:-/var/cache/appliance-image}
IMAGE_CACHE=${IMAGE_CACHE%/}
IMAGE_PROFILE=${APPLIANCE_IMAGE_PROFILE:-trixie}
IMAGE_OUT=${APPLIANCE_IMAGE_OUT:-$IMAGE_CACHE/out/$IMAGE_PROFILE}
IMAGE_ID=appliance
MKOSI=$IMAGE_CACHE/mkosi/bin/mkosi

log() { echo "image: $*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/host-mirror.sh
. "$(dirname "${BASH_SOURCE[0]}")/host-mirror.sh"

# The mkosi options every verb needs to find this profile's outputs, caches and tools tree.
mkosi_opts() {
    printf '%s\n' -C "$IMAGE_CONF" --profile="$IMAGE_PROFILE" --output-directory="$IMAGE_OUT" \
        --cache-directory="$IMAGE_CACHE/cache" --package-cache-directory="$IMAGE_CACHE/pkgcache" \
        --workspace-directory="$IMAGE_CACHE/work" --incremental=yes
}

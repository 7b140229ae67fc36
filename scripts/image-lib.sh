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

# The Debian mirror of this machine's apt configuration: the first http(s) URI of a `deb` source
# for a main suite (not -security, not old-style "suite/updates"). Read at run time so that no
# mirror's name is ever written into the repository.
host_mirror() {
    local m=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        m=$(awk 'BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^[ \t]*#/ || $i !~ /:/) continue
                    k = tolower($i); sub(/[ \t]*:.*/, "", k)
                    v = $i; sub(/^[^:]*:[ \t]*/, "", v)
                    if (k == "types") types = v
                    else if (k == "uris") uris = v
                    else if (k == "suites") suites = v
                    else if (k == "enabled") enabled = tolower(v)
                }
                if (enabled == "no" || (" " types " ") !~ /[ \t]deb[ \t]/) next
                ok = 0; n = split(suites, s, /[ \t]+/)
                for (j = 1; j <= n; j++) if (s[j] != "" && s[j] !~ /-security$/ && s[j] !~ /\//) ok = 1
                if (!ok) next
                n = split(uris, u, /[ \t]+/)
                for (j = 1; j <= n; j++) if (u[j] ~ /^https?:\/\//) { print u[j]; exit }
            }' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$m" ] && [ -r /etc/apt/sources.list ]; then
        m=$(awk '$1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
                if ($i ~ /^https?:\/\// && $(i + 1) !~ /-security$/ && $(i + 1) !~ /\//) { print $i; exit }
            }' /etc/apt/sources.list)
    fi
    [ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list.d/debian.sources nor /etc/apt/sources.list"
    echo "${m%/}"
}

# The mkosi options every verb needs to find this profile's outputs, caches and tools tree.
mkosi_opts() {
    printf '%s\n' -C "$IMAGE_CONF" --profile="$IMAGE_PROFILE" --output-directory="$IMAGE_OUT" \
        --cache-directory="$IMAGE_CACHE/cache" --package-cache-directory="$IMAGE_CACHE/pkgcache" \
        --workspace-directory="$IMAGE_CACHE/work" --incremental=yes
}

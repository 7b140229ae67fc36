# shellcheck shell=bash
# Sourced by scripts/image-lib.sh and scripts/trixie-chroot.sh (which define `die`).
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

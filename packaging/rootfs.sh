# shellcheck shell=bash
# The Debian 12 rootfs the package tests boot (packaging/e2e/run.sh in a container,
# packaging/vm/run.sh on a kernel of its own), debootstrapped once and cached.
# Sourced; needs say() and die(), and sets nothing else.

# The Debian mirror: TORU_E2E_MIRROR, else the host's apt sources, else deb.debian.org.
debian_mirror() {
    [ -n "${TORU_E2E_MIRROR:-}" ] && { echo "$TORU_E2E_MIRROR"; return; }
    local uri
    uri=$(grep -hs -E '^(deb |URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources | grep -v -e security -e '\[' |
        grep -o -E 'https?://[^ ]+' | head -n 1)
    echo "${uri:-http://deb.debian.org/debian}"
}

# ensure_rootfs CACHE SUITE LOG: $CACHE/rootfs-$SUITE exists, with systemd, python3,
# procps, iproute2 and curl; debootstrapped (its output in LOG) when it does not.
ensure_rootfs() {
    local cache=$1 suite=$2 log=$3
    [ -x "$cache/rootfs-$suite/usr/bin/systemctl" ] && return
    say "debootstrap $suite from $(debian_mirror) into $cache (cached for the next runs)"
    mkdir -p "$cache"
    rm -rf "$cache/rootfs-$suite.tmp"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,procps,iproute2,curl \
        "$suite" "$cache/rootfs-$suite.tmp" "$(debian_mirror)" >"$log" 2>&1 ||
        { tail -n 20 "$log" >&2; die "debootstrap"; }
    mv "$cache/rootfs-$suite.tmp" "$cache/rootfs-$suite"
}

#!/usr/bin/env bash
# Resource limits on a real kernel: boots Debian 12 under user-mode Linux (Debian's
# own 6.1 kernel, built to run as a process: no KVM needed), with a pure cgroup v2
# tree whose memory, pids and cpu controllers reach a Delegate=yes unit, installs
# toru's package in it and runs packaging/vm/checks.sh there: a memory hog, a fork
# bomb and a busy loop (packaging/vm/fixture.py) under their limits, while torud and
# another plugin go on serving; a limit changed by a reload; swap on.
#
# The containers and machines the other tests run in have no cgroup controllers:
# this is the only place the limits are seen enforced.
#
# Run as root from anywhere: packaging/vm/run.sh
# Environment:
#   TORU_VM_DEB      the package to test [the one packaging/e2e/run.sh built for this
#                    commit, else built here with dpkg-buildpackage]
#   TORU_E2E_CACHE   where the Debian 12 rootfs is cached (shared with the e2e test)
#                    [/var/tmp/toru-e2e]
#   TORU_VM_TIMEOUT  seconds the guest may take in all [600]
#   TORU_VM_KEEP=1   keep the work folder (disk image, console log)
# Measured facts behind the commands: SYSTEMD-TESTING.md of the project's shared
# notes (user-mode Linux's flags, the unit's poweroff, what the guest needs).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${TORU_E2E_CACHE:-/var/tmp/toru-e2e}
SUITE=bookworm
TIMEOUT=${TORU_VM_TIMEOUT:-600}
# The guest is killed when neither its console nor its results move for this long.
SILENCE=180
START=$SECONDS

say() { printf '%4ds  %s\n' $((SECONDS - START)) "$*"; }
die() {
    say "FAIL  $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root: it installs packages and builds a disk image"

need=()
for tool in linux.uml:user-mode-linux mkfs.ext4:e2fsprogs debootstrap:debootstrap \
    dpkg-buildpackage:dpkg-dev; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if ((${#need[@]})); then
    say "installing ${need[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# On a real disk: user-mode Linux maps the guest's memory from a file in TMPDIR.
WORK=$(mktemp -d /var/tmp/toru-vm-run.XXXXXX)
GUEST_PID=

cleanup() {
    local status=$?
    if [ -n "$GUEST_PID" ] && kill -0 "$GUEST_PID" 2>/dev/null; then
        # The kernel's process and its helpers (one per guest process thread) share
        # a process group.
        kill -9 -- "-$GUEST_PID" 2>/dev/null || kill -9 "$GUEST_PID" 2>/dev/null || true
        wait "$GUEST_PID" 2>/dev/null || true
    fi
    if [ "$status" != 0 ] && [ -s "$WORK/console.log" ]; then
        echo "--- the guest's console, last 40 lines ($WORK/console.log):" >&2
        tail -n 40 "$WORK/console.log" >&2
    fi
    if [ "${TORU_VM_KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then
        rm -rf "$WORK/root" "$WORK/disk.img"
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    say "$([ "$status" = 0 ] && echo passed || echo failed) in $((SECONDS - START)) s"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the package ------------------------------------------------------------

VERSION=$(cd "$REPO" && dpkg-parsechangelog -S Version)
ARCH=$(dpkg --print-architecture)
DEB=toru_${VERSION}_${ARCH}.deb
COMMIT=$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo none)
clean=$([ -z "$(git -C "$REPO" status --porcelain 2>/dev/null)" ] && echo yes || echo no)
if [ -n "${TORU_VM_DEB:-}" ]; then
    cp "$TORU_VM_DEB" "$WORK/toru.deb"
    say "testing $TORU_VM_DEB"
elif [ "$clean" = yes ] && [ -f "$CACHE/last/$DEB" ] && [ "$(cat "$CACHE/last/commit" 2>/dev/null)" = "$COMMIT" ]; then
    cp "$CACHE/last/$DEB" "$WORK/toru.deb"
    say "testing the $DEB packaging/e2e/run.sh built for $COMMIT"
else
    say "building $DEB (dpkg-buildpackage -us -uc -b)"
    (cd "$REPO" && dpkg-buildpackage -us -uc -b >"$WORK/build.log" 2>&1) ||
        { tail -n 40 "$WORK/build.log" >&2; die "dpkg-buildpackage"; }
    mv "$REPO/../$DEB" "$WORK/toru.deb"
    rm -f "$REPO/../toru-dbgsym_${VERSION}_${ARCH}.deb" "$REPO/../toru_${VERSION}_${ARCH}.changes" \
        "$REPO/../toru_${VERSION}_${ARCH}.buildinfo"
fi

# --- the disk -----------------------------------------------------------------

# The same rootfs as packaging/e2e/run.sh's, which caches it there too.
# shellcheck source=packaging/rootfs.sh
. "$REPO/packaging/rootfs.sh"
ensure_rootfs "$CACHE" "$SUITE" "$WORK/debootstrap.log"
ROOT=$WORK/root
cp -a --reflink=auto "$CACHE/rootfs-$SUITE" "$ROOT"
cp "$WORK/toru.deb" "$ROOT/root/toru.deb"
install -m 0755 "$REPO/packaging/vm/fixture.py" "$REPO/examples/python/hello_v1.py" "$ROOT/root/"
install -m 0755 "$REPO/packaging/vm/checks.sh" "$ROOT/root/checks.sh"
cat >"$ROOT/etc/systemd/system/toru-vm-checks.service" <<'UNIT'
[Unit]
Description=toru's resource limit checks
After=basic.target
# In [Unit]: the machine goes down when the checks end, either way.
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
ExecStart=/bin/bash /root/checks.sh
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$ROOT/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/toru-vm-checks.service "$ROOT/etc/systemd/system/multi-user.target.wants/"
# No udev here: nothing to wait for on the serial lines, and an empty fstab.
for unit in serial-getty@ttyS0.service getty@tty1.service systemd-udevd.service \
    systemd-udev-trigger.service; do
    ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
: >"$ROOT/etc/fstab"
echo toru-vm >"$ROOT/etc/hostname"
truncate -s 2G "$WORK/disk.img"
mkfs.ext4 -q -F -d "$ROOT" "$WORK/disk.img" || die "mkfs.ext4 -d"
rm -rf "$ROOT"
say "disk image ready ($(du -m "$WORK/disk.img" | cut -f1) MiB used)"

# --- the guest ----------------------------------------------------------------

say "booting $SUITE under user-mode Linux $(linux.uml --version 2>/dev/null | head -n 1 || true)"
: >"$WORK/results.log"
# ssl0: the console on stdin/stdout; ssl1 (the guest's /dev/ttyS1): the results, on fd 3.
setsid env TMPDIR="$WORK" linux.uml ubd0="$WORK/disk.img" root=/dev/ubda rw mem=1G \
    con=null ssl=null ssl0=fd:0,fd:1 ssl1=null,fd:3 console=ttyS0 \
    systemd.unified_cgroup_hierarchy=1 panic=-1 \
    </dev/null >"$WORK/console.log" 2>&1 3>"$WORK/results.log" &
GUEST_PID=$!

printed=0
last_change=$SECONDS
last_size=0
deadline=$((SECONDS + TIMEOUT))
while kill -0 "$GUEST_PID" 2>/dev/null; do
    lines=$(wc -l <"$WORK/results.log")
    if ((lines > printed)); then
        sed -n "$((printed + 1)),${lines}p" "$WORK/results.log"
        printed=$lines
    fi
    size=$(($(stat -c %s "$WORK/console.log") + $(stat -c %s "$WORK/results.log")))
    if ((size != last_size)); then
        last_size=$size
        last_change=$SECONDS
    fi
    ((SECONDS - last_change < SILENCE)) || die "the guest was silent for ${SILENCE} s"
    ((SECONDS < deadline)) || die "the guest took more than ${TIMEOUT} s"
    sleep 1
done
wait "$GUEST_PID" 2>/dev/null || true
GUEST_PID=
sed -n "$((printed + 1)),\$p" "$WORK/results.log"
grep -q 'all checks passed' "$WORK/results.log" || die "the checks in the guest did not pass"

#!/usr/bin/env bash
# Resource limits on a real kernel: boots Debian 12 (Debian's own 6.1 kernel) under
# qemu's full emulation (TCG: no KVM needed), with a pure cgroup v2 tree whose memory,
# pids and cpu controllers reach a Delegate=yes unit, installs toru's package in it
# and runs packaging/vm/checks.sh there: a memory hog, a fork bomb and a busy loop
# (packaging/vm/fixture.py) under their limits, while torud and another plugin go on
# serving; a limit changed by a reload; swap on.
#
# The containers and machines the other tests run in have no cgroup controllers:
# this is the only place the limits are seen enforced.
#
# (It ran under user-mode Linux before; Debian 12's UML 6.1 cannot start even
# /bin/true as init on hosts whose kernel is 6.18 with AVX-512/AMX CPUs: every guest
# process dies of SIGSEGV. qemu does not depend on the host's kernel that way.)
#
# Run as root from anywhere: packaging/vm/run.sh
# Environment:
#   TORU_VM_DEB      the package to test [the one packaging/e2e/run.sh built for this
#                    commit, else built here with dpkg-buildpackage]
#   TORU_E2E_CACHE   where the Debian 12 rootfs, kernel and qemu are cached (the
#                    rootfs is shared with the e2e test) [/var/tmp/toru-e2e]
#   TORU_VM_TIMEOUT  seconds the guest may take in all [900]
#   TORU_VM_KEEP=1   keep the work folder (disk image, console log)
# Measured facts behind the commands: SYSTEMD-TESTING.md of the project's shared
# notes (qemu's flags, the kernel's modules, the unit's poweroff, what the guest needs).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${TORU_E2E_CACHE:-/var/tmp/toru-e2e}
SUITE=bookworm
TIMEOUT=${TORU_VM_TIMEOUT:-900}
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
for tool in mkfs.ext4:e2fsprogs debootstrap:debootstrap dpkg-buildpackage:dpkg-dev; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if ((${#need[@]})); then
    say "installing ${need[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# On a real disk, beside the cache: the disk image is 2 GiB sparse.
WORK=$(mktemp -d /var/tmp/toru-vm-run.XXXXXX)
GUEST_PID=

cleanup() {
    local status=$?
    if [ -n "$GUEST_PID" ] && kill -0 "$GUEST_PID" 2>/dev/null; then
        # qemu leads a process group of its own (setsid).
        kill -9 -- "-$GUEST_PID" 2>/dev/null || kill -9 "$GUEST_PID" 2>/dev/null || true
        wait "$GUEST_PID" 2>/dev/null || true
    fi
    if [ "$status" != 0 ] && [ -s "$WORK/console.log" ]; then
        echo "--- the guest's console, last 40 lines ($WORK/console.log):" >&2
        tail -n 40 "$WORK/console.log" >&2
        [ -s "$WORK/qemu.log" ] && { echo "--- qemu's own output:" >&2; cat "$WORK/qemu.log" >&2; }
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

# --- the kernel and qemu, cached ------------------------------------------------

# Debian 12's kernel and qemu, downloaded (not installed: installing Debian 12's
# qemu-system-x86 would remove a newer qemu-utils the machine may have) and unpacked
# into $CACHE/vm; an initramfs that loads the modules the root disk needs (virtio,
# ext4: modules in Debian's kernel) and switches to it.
VM=$CACHE/vm
ensure_vm() {
    [ -x "$VM/qemu/usr/bin/qemu-system-x86_64" ] && [ -f "$VM/vmlinuz" ] &&
        [ -f "$VM/initrd.img" ] && return
    say "downloading Debian 12's kernel and qemu into $VM (cached for the next runs)"
    rm -rf "$VM.tmp"
    mkdir -p "$VM.tmp/debs" "$VM.tmp/qemu" "$VM.tmp/kernel" "$VM.tmp/busybox" "$VM.tmp/initrd"
    apt-get update -q >/dev/null
    local kernel packages
    kernel=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$kernel" ] || die "no linux-image-amd64 in the apt sources"
    # What installing qemu-system-x86 would add to this machine: qemu and the libraries
    # it lacks.
    packages=$(apt-get install -s --no-install-recommends qemu-system-x86 | awk '/^Inst / { print $2 }')
    [ -n "$packages" ] || die "apt-get cannot resolve qemu-system-x86"
    # shellcheck disable=SC2086 # one word per package
    (cd "$VM.tmp/debs" && apt-get download $packages "$kernel" busybox-static >"$VM.tmp/download.log" 2>&1) ||
        { tail -n 20 "$VM.tmp/download.log" >&2; die "apt-get download"; }
    local deb
    for deb in "$VM.tmp"/debs/*.deb; do
        case $deb in
        */linux-image-*) dpkg-deb -x "$deb" "$VM.tmp/kernel" ;;
        */busybox-static_*) dpkg-deb -x "$deb" "$VM.tmp/busybox" ;;
        *) dpkg-deb -x "$deb" "$VM.tmp/qemu" ;;
        esac
    done
    cp "$VM.tmp"/kernel/boot/vmlinuz-* "$VM.tmp/vmlinuz"
    echo "$kernel" >"$VM.tmp/kernel.name"

    # The initramfs: busybox, the modules in load order (each after what its
    # `depends=` names; no depmod here), and an /init that mounts /dev/vda.
    local initrd=$VM.tmp/initrd modules=$VM.tmp/kernel/lib/modules order=()
    mkdir -p "$initrd/bin" "$initrd/modules"
    cp "$VM.tmp/busybox/bin/busybox" "$initrd/bin/busybox"
    add_module() {
        local name=$1 file dep
        for dep in "${order[@]}"; do [ "$dep" = "$name" ] && return; done
        file=$(find "$modules" -name "$name.ko" -o -name "${name//_/-}.ko" | head -n 1)
        [ -n "$file" ] || die "no module $name in $kernel"
        for dep in $(tr '\0' '\n' <"$file" | sed -n 's/^depends=//p' | tr ',' ' '); do
            add_module "$dep"
        done
        order+=("$name")
        cp "$file" "$initrd/modules/$name.ko"
    }
    local module
    for module in virtio_pci virtio_blk crc32c_generic ext4; do add_module "$module"; done
    printf '%s\n' "${order[@]}" >"$initrd/modules/order"
    cat >"$initrd/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /root
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in $(cat /modules/order); do insmod "/modules/$m.ko"; done
for _ in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -o rw /dev/vda /root || { echo "initramfs: cannot mount /dev/vda"; poweroff -f; }
umount /proc
exec switch_root /root /sbin/init
INIT
    chmod 0755 "$initrd/init"
    (cd "$initrd" && find . | "$VM.tmp/busybox/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) \
        >"$VM.tmp/initrd.img" || die "initramfs"
    rm -rf "$VM.tmp/debs" "$VM.tmp/kernel" "$VM.tmp/initrd" "$VM.tmp/busybox"
    rm -rf "$VM"
    mv "$VM.tmp" "$VM"
}
ensure_vm
QEMU=$VM/qemu

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

say "booting $SUITE under qemu $(LD_LIBRARY_PATH="$QEMU/usr/lib/x86_64-linux-gnu:$QEMU/lib/x86_64-linux-gnu" \
    "$QEMU/usr/bin/qemu-system-x86_64" --version | head -n 1 | awk '{ print $4 }') (TCG), $(cat "$VM/kernel.name")"
: >"$WORK/results.log"
: >"$WORK/console.log"
# The first serial port: the console; the second (the guest's /dev/ttyS1): the results.
setsid env LD_LIBRARY_PATH="$QEMU/usr/lib/x86_64-linux-gnu:$QEMU/lib/x86_64-linux-gnu" \
    "$QEMU/usr/bin/qemu-system-x86_64" -L "$QEMU/usr/share/seabios" -L "$QEMU/usr/share/qemu" \
    -accel tcg,thread=multi -cpu max -m 1G -smp 2 -nodefaults -display none -no-reboot \
    -kernel "$VM/vmlinuz" -initrd "$VM/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1" \
    -drive "file=$WORK/disk.img,format=raw,if=virtio,cache=unsafe" \
    -serial "file:$WORK/console.log" -serial "file:$WORK/results.log" \
    </dev/null >"$WORK/qemu.log" 2>&1 &
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

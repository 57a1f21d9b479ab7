#!/usr/bin/env bash
# The inside of tests/journald.rs: runs as PID 1 of
#   unshare --mount --propagation private --pid --fork --mount-proc --kill-child
# puts tmpfs over the journal's folders, starts the real systemd-journald
# there (mode `journal`) or nothing (mode `no-journal`), then runs
#   TORUD ARGS...
# with stderr connected as systemd connects a service's (`StandardError=journal`),
# or left as it is, and JOURNAL_STREAM naming it either way.
#
# Lives until its stdin closes (the test is over, however it ended) or
# LIFETIME seconds pass, then stops torud. When it exits the kernel kills
# whatever is left in its PID namespace, and the mount namespace, the tmpfs
# and the journal's sockets go with the last process.
set -euo pipefail
mode=$1
shift

# Never mount over the host's journal: refuse unless unshare gave us our own
# mount namespace (the test passes its own in HOST_MNTNS).
if [ "$(readlink /proc/self/ns/mnt)" = "${HOST_MNTNS:?}" ] || [ "$$" != 1 ]; then
    echo "ns.sh: not in a private mount and PID namespace; refusing to mount" >&2
    exit 1
fi

# A tmpfs over DIR, or over its closest existing parent (then DIR is made
# inside it), so nothing is created on the host.
mounted=()
private_dir() {
    local m
    for m in "${mounted[@]}"; do
        case "$1/" in "$m"/*)
            mkdir -p "$1"
            return
            ;;
        esac
    done
    if [ -d "$1" ]; then
        mount -t tmpfs -o mode=0755 tmpfs "$1"
        mounted+=("$1")
    else
        private_dir "$(dirname "$1")"
        mkdir -p "$1"
    fi
}
for dir in /run/systemd/journal /run/log /var/log/journal; do
    private_dir "$dir"
done

# JOURNAL_STREAM as systemd sets it: DEV:INODE of fd 2, both decimal.
# (systemd-cat 252 connects the stream but does not set the variable.)
with_stream='JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$@"'
case "$mode" in
journal)
    /lib/systemd/systemd-journald &
    for _ in $(seq 200); do
        [ -S /run/systemd/journal/stdout ] && [ -S /run/systemd/journal/socket ] && break
        sleep 0.05
    done
    if ! [ -S /run/systemd/journal/stdout ]; then
        echo "ns.sh: systemd-journald did not open its sockets" >&2
        exit 1
    fi
    systemd-cat --identifier=torud sh -c "$with_stream" sh "$@" &
    ;;
no-journal)
    sh -c "$with_stream" sh "$@" &
    ;;
*)
    echo "ns.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac
torud=$!

read -r -t "${LIFETIME:-120}" _ || true
kill -TERM "$torud" 2>/dev/null || true
for _ in $(seq 100); do
    kill -0 "$torud" 2>/dev/null || exit 0
    sleep 0.1
done
echo "ns.sh: torud did not stop within 10 s of SIGTERM" >&2
exit 1

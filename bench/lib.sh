# shellcheck shell=bash
# Sourced by the bench scripts, after `set -euo pipefail`: a scratch directory,
# $WORK, and the processes a script starts (`PIDS+=($!)`), all stopped and the
# directory removed when the script exits, however it exits.
WORK=$(mktemp -d)
PIDS=()
# stop PID...: SIGTERM, then SIGKILL after 10 s; waits for each.
stop() {
    local p i
    for p in "$@"; do kill "$p" 2>/dev/null || true; done
    for p in "$@"; do
        for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        if [[ $i -eq 100 ]]; then kill -9 "$p" 2>/dev/null || true; fi
        wait "$p" 2>/dev/null || true
    done
}
# forget PID...: drops finished processes from PIDS.
forget() {
    local p keep=()
    for p in "${PIDS[@]}"; do [[ " $* " == *" $p "* ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
bench_cleanup() {
    if [[ ${#PIDS[@]} -gt 0 ]]; then stop "${PIDS[@]}"; fi
    rm -rf "$WORK"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

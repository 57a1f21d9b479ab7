#!/usr/bin/env bash
# Group commit at work: 8 kvbench copies setting keys at once through torud,
# three rounds, each printed as sets/s (all sets ÷ the slowest copy's time) and
# writes per commit (toru_kv_writes_total ÷ toru_kv_commits_total from
# /metrics); then one copy's sequential sets/s.
#
#   bench/kvcommits.sh RELEASE_DIR [SETS]
#
# RELEASE_DIR holds torud and kvbench (cargo build --release -p toru-service
# -p toru-bench); SETS per copy and round (default 100). For an A/B, run it on
# the two builds in turn; `kvdirect DIR 8 SETS 100` gives redb's own figure in
# the same minutes (the disk's flush time drifts). Needs curl and python3.
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: bench/kvcommits.sh RELEASE_DIR [SETS]" >&2
    exit 2
fi
BIN=$(realpath "$1")
SETS=${2:-100}
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$WORK/plugins"
for i in $(seq 1 8); do
    cat > "$WORK/plugins/kvbench-$i" <<SH
#!/bin/sh
if [ "\$1" = "--metadata" ]; then
  echo '{"id":"kvbench-$i","name":"kvbench $i","version":"1","author":null,"icon":"x","route":"/kvbench-$i","protocol":2}'
  exit 0
fi
exec "$BIN/kvbench"
SH
    chmod +x "$WORK/plugins/kvbench-$i"
done
cat > "$WORK/toru.toml" <<TOML
listen = ["unix:$WORK/run/toru.sock"]
state_dir = "$WORK/state"
runtime_dir = "$WORK/run"
plugin_dirs = ["$WORK/plugins"]
request_timeout = "300s"
TOML
RUST_LOG=warn "$BIN/torud" --config "$WORK/toru.toml" 2>"$WORK/torud.log" &
PIDS+=($!)
SOCK=$WORK/run/toru.sock
call() { curl -sf --unix-socket "$SOCK" "http://t$1"; }
for i in $(seq 1 8); do
    until call "/api/plugins/route/kvbench-$i/?op=set&n=1" >/dev/null 2>&1; do sleep 0.05; done
done
counts() { call /metrics | awk '$1 == "toru_kv_writes_total" {w = $2} $1 == "toru_kv_commits_total" {c = $2} END {print w, c}'; }
for round in 1 2 3; do
    read -r w0 c0 < <(counts)
    pids=()
    for i in $(seq 1 8); do
        call "/api/plugins/route/kvbench-$i/?op=set&n=$SETS" > "$WORK/kv8-$i.json" & pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    read -r w1 c1 < <(counts)
    python3 -c '
import json, sys
work, round, writes, commits = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
runs = [json.load(open(f"{work}/kv8-{i}.json")) for i in range(1, 9)]
rate = sum(r["n"] for r in runs) / (max(r["elapsed_ms"] for r in runs) / 1000)
print(f"round {round}: 8 plugins {rate:.0f} sets/s, {writes / max(commits, 1):.1f} writes per commit")' \
        "$WORK" "$round" "$((w1 - w0))" "$((c1 - c0))"
done
call "/api/plugins/route/kvbench-1/?op=set&n=$((SETS * 3))" \
    | python3 -c 'import json,sys; print("1 plugin: %.0f sets/s" % json.load(sys.stdin)["ops_per_s"])'

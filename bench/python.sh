#!/usr/bin/env bash
# The Python SDK's figures (issue 17), side by side in one run on this machine:
#   1. round trips per second over one Unix socket, host to plugin process, 100 B
#      bodies, 1 and 64 in flight: the Rust SDK (hello) and the Python SDK
#      (hello_v2.py), through `target/release/sdkroundtrip`;
#   2. gateway req/s through torud, `GET /` at 16 connections, to hello (Rust,
#      protocol 2), hello-py2 (Python SDK, protocol 2) and hello-py (Python,
#      protocol 1), the three running side by side, rounds interleaved.
# Usage: bench/python.sh [ROUNDS] [SECONDS]  (default 3 rounds of 5 s). Builds in
# release mode; needs wrk and curl (Debian packages). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; SECS=${2:-5}
say() { echo "bench: $*" >&2; }
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "bench/python.sh needs $tool" >&2; exit 1; }
done

say "building (release)"
cargo build --release -q -p toru-service -p hello -p toru-bench
BIN=$PWD/target/release
# shellcheck source=bench/lib.sh
source bench/lib.sh

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

say "round trips over one socket: $ROUNDS rounds of ${SECS} s per depth"
for _ in $(seq "$ROUNDS"); do
    "$BIN/sdkroundtrip" "$SECS" "$BIN/hello" examples/python/hello_v2.py 2>/dev/null
done > "$WORK/roundtrips.jsonl"

say "gateway: torud with hello, hello-py2 and hello-py"
mkdir -p "$WORK/plugins"
ln -s "$BIN/hello" "$WORK/plugins/hello"
ln -s "$PWD/examples/python/hello_v2.py" "$WORK/plugins/hello-py2"
ln -s "$PWD/examples/python/hello_v1.py" "$WORK/plugins/hello-py"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$WORK/toru.toml" <<TOML
listen = ["127.0.0.1:$PORT", "unix:$WORK/run/toru.sock"]
state_dir = "$WORK/state"
runtime_dir = "$WORK/run"
plugin_dirs = ["$WORK/plugins"]
TOML
RUST_LOG=warn "$BIN/torud" --config "$WORK/toru.toml" 2>"$WORK/torud.log" &
PIDS+=($!)
for _ in $(seq 300); do
    running=$("$BIN/toructl" --socket "$WORK/run/toru.sock" --json plugins list 2>/dev/null \
        | python3 -c 'import json, sys; print(sum(p["state"] == "running" for p in json.load(sys.stdin)))' 2>/dev/null || echo 0)
    [[ "$running" == 3 ]] && break
    sleep 0.1
done
[[ "$running" == 3 ]] || { say "the plugins did not all start; torud's log:"; cat "$WORK/torud.log" >&2; exit 1; }
TOKEN=$(cat "$WORK/state/admin.token")
for route in hello hello-py2 hello-py; do
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/plugins/route/$route/" \
        || { say "GET /$route/ failed"; exit 1; }
done
for round in $(seq "$ROUNDS"); do
    for route in hello hello-py2 hello-py; do
        rate=$(wrk -t2 -c16 -d"${SECS}s" -H "Authorization: Bearer $TOKEN" \
            "http://127.0.0.1:$PORT/api/plugins/route/$route/" 2>/dev/null | awk '/Requests\/sec/ {print int($2)}')
        echo "$route $round $rate" >> "$WORK/gateway"
        say "round $round, $route: $rate req/s"
    done
done

echo "### Round trips over one socket (100 B bodies), median of $ROUNDS rounds of $SECS s"
echo
echo "| plugin | in flight | round trips/s | mean latency |"
echo "|---|---|---|---|"
for plugin in hello hello_v2.py; do
    for depth in 1 64; do
        rate=$(python3 -c 'import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["plugin"].endswith("/" + sys.argv[2]) and r["in_flight"] == int(sys.argv[3]):
        print(r["round_trips_per_s"])' "$WORK/roundtrips.jsonl" "$plugin" "$depth" | median)
        echo "| $plugin | $depth | $rate | $(python3 -c "print(round($depth * 1e6 / $rate, 1))") µs |"
    done
done
echo
echo "### Gateway, GET / at 16 connections (req/s), $ROUNDS rounds of $SECS s"
echo
echo "| plugin | rounds | median |"
echo "|---|---|---|"
for route in hello hello-py2 hello-py; do
    rounds=$(awk -v r="$route" '$1 == r {printf "%s%s", sep, $3; sep = ", "}' "$WORK/gateway")
    echo "| $route | $rounds | $(awk -v r="$route" '$1 == r {print $3}' "$WORK/gateway" | median) |"
done
py2=$(awk '$1 == "hello-py2" {print $3}' "$WORK/gateway" | median)
py1=$(awk '$1 == "hello-py" {print $3}' "$WORK/gateway" | median)
echo
echo "hello-py2 / hello-py: $(python3 -c "print(round($py2 / $py1, 2))")×"

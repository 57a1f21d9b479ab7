#!/usr/bin/env bash
# Toru's benchmarks, side by side in one run on this machine:
#   gateway throughput and latency (wrk) of torud + a protocol-2 plugin, torud +
#   a protocol-1 plugin, and the physical limit (a bare hyper server);
#   torud's RSS with 0 and 10 plugins; recovery after kill -9 of a plugin.
# Usage: bench/run.sh [--quick]. Writes a Markdown table to stdout and to
# bench/results/<date>.md. Everything runs on loopback and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=10s; RUNS=10
if [[ "${1:-}" == "--quick" ]]; then DURATION=4s; RUNS=5; fi

command -v wrk >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
cargo build --release --workspace -q
BIN=target/release

WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A torud with the given plugin folder; prints "PORT PID".
start_torud() { # name plugindir extra-config
    local name=$1 plugins=$2 port; port=$(free_port)
    mkdir -p "$WORK/$name"
    cat > "$WORK/$name/toru.toml" <<TOML
listen = ["127.0.0.1:$port", "unix:$WORK/$name/run/toru.sock"]
state_dir = "$WORK/$name/state"
runtime_dir = "$WORK/$name/run"
plugin_dirs = ["$plugins"]
$3
TOML
    RUST_LOG=warn "$BIN/torud" --config "$WORK/$name/toru.toml" 2>"$WORK/$name/torud.log" &
    local pid=$!; PIDS+=("$pid")
    local started; started=$(date +%s%N)
    until curl -sf --unix-socket "$WORK/$name/run/toru.sock" http://t/api/plugins 2>/dev/null \
        | python3 -c 'import json,sys; ps=json.load(sys.stdin); sys.exit(any(p["state"]=="starting" for p in ps))'; do
        sleep 0.02
    done
    echo "$port $pid $(( ($(date +%s%N) - started) / 1000000 ))"
}

# wrk: prints "req/s p50 p99" (latencies in ms).
load() { # url connections
    local threads=$(( $2 < 2 ? 1 : 2 ))
    wrk -t"$threads" -c"$2" -d"$DURATION" --latency -H "Authorization: Bearer ${TOKEN:-none}" "$1" 2>/dev/null | python3 -c '
import re, sys
text = sys.stdin.read()
def ms(v):
    n, unit = float(re.match(r"[\d.]+", v).group()), re.sub(r"[\d.]+", "", v)
    return n * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
socket_errors = re.search(r"Socket errors: (.*)", text)
bad = int(errors.group(1)) if errors else 0
if socket_errors: bad += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {bad}")'
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# --- the limit: a bare hyper server ---
LIMIT_PORT=$(free_port)
"$BIN/limit" "127.0.0.1:$LIMIT_PORT" & PIDS+=($!)
sleep 0.3

# --- torud with hello (protocol 2) and hello-py (protocol 1) ---
mkdir -p "$WORK/plugins2"
ln -s "$PWD/$BIN/hello" "$WORK/plugins2/hello"
ln -s "$PWD/examples/python/hello_v1.py" "$WORK/plugins2/hello-py"
read -r PORT _ _ < <(start_torud main "$WORK/plugins2" '[restart]
stable_after = "1s"
max_failures = 1000')
TOKEN=$(cat "$WORK/main/state/admin.token")

declare -A RESULT
for c in 1 64; do
    RESULT[limit,$c]=$(load "http://127.0.0.1:$LIMIT_PORT/" "$c")
    RESULT[v2,$c]=$(load "http://127.0.0.1:$PORT/api/plugins/route/hello/" "$c")
    RESULT[v1,$c]=$(load "http://127.0.0.1:$PORT/api/plugins/route/hello-py/" "$c")
done
RECOVERY=$("$BIN/recovery" "$WORK/main/run/toru.sock" hello hello "$RUNS" | tail -1 | awk '{print $2}')

# --- RSS with 0 and 10 plugins, and time to ready ---
mkdir -p "$WORK/none" "$WORK/ten"
read -r _ PID0 READY0 < <(start_torud zero "$WORK/none" "")
for i in $(seq 1 10); do
    cat > "$WORK/ten/hello-$i" <<SH
#!/bin/sh
if [ "\$1" = "--metadata" ]; then
  echo '{"id":"hello-$i","name":"Hello $i","version":"1","author":null,"icon":"x","route":"/hello-$i","protocol":2}'
  exit 0
fi
exec "$PWD/$BIN/hello"
SH
    chmod +x "$WORK/ten/hello-$i"
done
read -r _ PID10 READY10 < <(start_torud ten "$WORK/ten" "")
sleep 1
RSS0=$(rss_kib "$PID0"); RSS10=$(rss_kib "$PID10")

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
field() { echo "${RESULT[$1,$2]}" | awk -v n="$3" '{print $n}'; }

{
echo "## Run of $(date -u +%Y-%m-%dT%H:%MZ) ($DURATION per load, $(nproc) cores, $(uname -r))"
echo
echo "| target | connections | req/s | p50 ms | p99 ms | req/s ÷ limit | errors |"
echo "|---|---|---|---|---|---|---|"
for c in 1 64; do
    for t in limit v2 v1; do
        name=${t/limit/limit (bare hyper)}; name=${name/v2/torud + hello (protocol 2)}; name=${name/v1/torud + hello-py (protocol 1)}
        echo "| $name | $c | $(field $t $c 1) | $(field $t $c 2) | $(field $t $c 3) | $(ratio "$(field $t $c 1)" "$(field limit $c 1)") | $(field $t $c 4) |"
    done
done
echo
echo "| figure | value |"
echo "|---|---|"
echo "| torud RSS, 0 plugins | $((RSS0 / 1024)) MiB ($RSS0 KiB) |"
echo "| torud RSS, 10 plugins | $((RSS10 / 1024)) MiB ($RSS10 KiB) |"
echo "| start to ready, 0 / 10 plugins | ${READY0} ms / ${READY10} ms |"
echo "| kill -9 of a plugin to its next 200, median of $RUNS | ${RECOVERY} ms |"
} | tee "bench/results/$(date -u +%Y-%m-%d).md"

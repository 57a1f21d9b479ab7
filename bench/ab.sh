#!/usr/bin/env bash
# A/B of two builds: torud + hello of OLD and of NEW (release folders), each
# started in turn on loopback with its own state, in 3 interleaved rounds of
# wrk: the gateway at 256 and 16 connections (GET /), and durable KV sets
# through hello (PUT /kv/KEY) at 16. Prints req/s and torud's own CPU time
# per request (steadier than req/s on a shared machine) per round; compare
# medians.
#
#   bench/ab.sh /tmp/old/target/release target/release
#
# Needs wrk and curl (apt-get install --no-install-recommends wrk curl).
set -euo pipefail
if [ $# -ne 2 ]; then
    echo "usage: bench/ab.sh OLD_RELEASE_DIR NEW_RELEASE_DIR (each holding torud and hello)" >&2
    exit 2
fi
declare -A BIN=([old]=$(realpath "$1") [new]=$(realpath "$2"))
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cat >"$WORK/put.lua" <<'LUA'
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/api/plugins/route/hello/kv/k" .. counter, nil, "value " .. counter)
end
LUA

start() { # start NAME PORT
    local dir=$WORK/$1
    rm -rf "$dir"
    mkdir -p "$dir/plugins"
    ln -s "${BIN[$1]}/hello" "$dir/plugins/hello"
    cat >"$dir/toru.toml" <<TOML
listen = ["127.0.0.1:$2", "unix:$dir/run/toru.sock"]
state_dir = "$dir/state"
runtime_dir = "$dir/run"
plugin_dirs = ["$dir/plugins"]
TOML
    "${BIN[$1]}/torud" --config "$dir/toru.toml" 2>"$dir/log" &
    echo $! >"$dir/pid"
    PIDS+=($!)
    for _ in $(seq 100); do
        [ -f "$dir/state/admin.token" ] &&
            curl -sf -H "Authorization: Bearer $(cat "$dir/state/admin.token")" \
                "http://127.0.0.1:$2/api/plugins/route/hello/" >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "$1 did not serve: $(cat "$dir/log")" >&2
    exit 1
}

stop_build() { # stop_build NAME
    local pid
    pid=$(cat "$WORK/$1/pid")
    stop "$pid"
    forget "$pid"
    rm -f "$WORK/$1/pid"
}

cpu_ticks() { # cpu_ticks PID: user + system time, in clock ticks
    awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

load() { # load NAME PORT CONNECTIONS [LUA]: "REQ/S CPU-µs-of-torud-per-request"
    local token extra=() pid before after out requests
    token=$(cat "$WORK/$1/state/admin.token")
    pid=$(cat "$WORK/$1/pid")
    [ $# -ge 4 ] && extra=(-s "$4")
    before=$(cpu_ticks "$pid")
    out=$(wrk -t2 -c"$3" -d5s -H "Authorization: Bearer $token" "${extra[@]}" \
        "http://127.0.0.1:$2/api/plugins/route/hello/")
    after=$(cpu_ticks "$pid")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    awk -v r="$requests" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
        '/Requests\/sec/ { printf "%s (%.1f µs)", $2, t / hz * 1e6 / r }' <<<"$out"
}

for round in 1 2 3; do
    for name in old new; do
        port=$((7300 + round * 10 + ${#BIN[$name]} % 7))
        start "$name" "$port"
        g256=$(load "$name" "$port" 256)
        g16=$(load "$name" "$port" 16)
        kv=$(load "$name" "$port" 16 "$WORK/put.lua")
        echo "round $round $name: gateway/256 $g256  gateway/16 $g16  kv-set/16 $kv  req/s (torud CPU per request)"
        stop_build "$name"
    done
done

#!/usr/bin/env bash
# User-space instructions per forwarded request, counted by callgrind: a figure
# that steal time and other tenants do not move, for A/B comparisons of two
# builds on a shared machine (req/s and CPU time there move by 20 % and more).
#
#   bench/instructions.sh torud|plugin RELEASE_DIR [REQUESTS] [CONNECTIONS]
#
# RELEASE_DIR holds torud and hello (a release build). `torud` runs torud under
# callgrind and hello natively; `plugin` the other way round. After a warm-up of
# REQUESTS (default 3000) GETs through the gateway at CONNECTIONS (default 16),
# the counters are zeroed, REQUESTS more are made, and the counts are dumped.
# Prints the instructions per request and the 25 functions that execute most of
# them (self cost); the callgrind file is kept as ./callgrind.out.instructions.
#
# Needs valgrind, wrk and curl (apt-get install --no-install-recommends
# valgrind wrk curl). Instruction counts include the runtime's own work per
# request (scheduler, timers, allocator), not the kernel's.
set -euo pipefail
if [[ $# -lt 2 || ( "$1" != torud && "$1" != plugin ) ]]; then
    echo "usage: bench/instructions.sh torud|plugin RELEASE_DIR [REQUESTS] [CONNECTIONS]" >&2
    exit 2
fi
TARGET=$1
BIN=$(realpath "$2")
REQUESTS=${3:-3000}
CONNECTIONS=${4:-16}
PORT=18199
for tool in valgrind callgrind_control wrk curl; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$WORK/plugins" "$WORK/cg"
CALLGRIND=(valgrind --tool=callgrind "--callgrind-out-file=$WORK/cg/out.%p"
    --compress-strings=no --compress-pos=no)
if [[ "$TARGET" == plugin ]]; then
    # torud starts the plugin: a wrapper that runs it under callgrind (its
    # `--metadata` answer natively, within torud's metadata timeout).
    cat >"$WORK/plugins/hello" <<SH
#!/bin/sh
if [ "\$1" = "--metadata" ]; then exec "$BIN/hello" "\$@"; fi
exec ${CALLGRIND[*]} "$BIN/hello" "\$@" 2>/dev/null
SH
    chmod +x "$WORK/plugins/hello"
    TORUD=("$BIN/torud")
else
    ln -s "$BIN/hello" "$WORK/plugins/hello"
    TORUD=("${CALLGRIND[@]}" "$BIN/torud")
fi
cat >"$WORK/toru.toml" <<TOML
listen = ["127.0.0.1:$PORT", "unix:$WORK/run/toru.sock"]
state_dir = "$WORK/state"
runtime_dir = "$WORK/run"
plugin_dirs = ["$WORK/plugins"]
TOML
# wrk runs for its whole duration; each of its threads stops loading after REQUESTS.
cat >"$WORK/stop.lua" <<LUA
local count = 0
response = function(status, headers, body)
  count = count + 1
  if count >= $REQUESTS then wrk.thread:stop() end
end
LUA

"${TORUD[@]}" --config "$WORK/toru.toml" 2>"$WORK/log" &
TORUD_PID=$!; PIDS+=("$TORUD_PID")
URL=http://127.0.0.1:$PORT/api/plugins/route/hello/
for _ in $(seq 300); do
    [[ -f "$WORK/state/admin.token" ]] &&
        curl -sf -H "Authorization: Bearer $(cat "$WORK/state/admin.token")" "$URL" >/dev/null && break
    sleep 0.2
done
TOKEN=$(cat "$WORK/state/admin.token")
if [[ "$TARGET" == plugin ]]; then
    COUNTED=$(pgrep -f "callgrind.*$BIN/hello" | head -1)
else
    COUNTED=$TORUD_PID
fi
load() { wrk -t1 -c"$CONNECTIONS" -d"$1" -s "$WORK/stop.lua" -H "Authorization: Bearer $TOKEN" "$URL"; }
load 8s >/dev/null
callgrind_control -z "$COUNTED" >/dev/null 2>&1
OUT=$(load 15s)
callgrind_control -d "$COUNTED" >/dev/null 2>&1
MADE=$(awk '/requests in/ {print $1}' <<<"$OUT")
sleep 1
DUMP=$(printf '%s\n' "$WORK/cg/out.$COUNTED".* | sort | tail -1)
cp "$DUMP" callgrind.out.instructions
# Self cost per function: cost lines not following a `calls=` line.
awk -v made="$MADE" -v target="$TARGET" '
    /^fn=/ { fn = substr($0, 4); next }
    /^calls=/ { call = 1; next }
    /^[0-9+*-]/ { if (call) { call = 0 } else { self[fn] += $2; total += $2 } }
    END {
        printf "%s: %d requests, %d instructions per request\n", target, made, total / made
        for (f in self) printf "%8d  %s\n", self[f] / made, substr(f, 1, 140) | "sort -rn | head -25"
    }' "$DUMP"

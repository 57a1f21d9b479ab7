#!/usr/bin/env bash
# Toru's benchmarks, side by side in one run on this machine (issue 7):
#   1. gateway throughput and latency (wrk) at 1, 16 and 256 connections with
#      ~100 B answers (GET) and 64 KiB echoes (POST), for the physical limit
#      (a bare hyper server), nginx proxying to that server over a Unix
#      socket, torud + a protocol-2 plugin and torud + a protocol-1 plugin;
#   2. recovery: kill -9 of a plugin to its next 200, median of 20;
#   3. plugin KV: durable sets and gets per second through the SDK from one
#      plugin and from 8 at once, against redb used directly in-process;
#   4. scale: 1, 10 and 100 plugins: start to READY=1 and torud's RSS;
#   5. cold start: the first request to a socket-activated torud, against the
#      same for the bare hyper server.
# Usage: bench/run.sh [--quick]. Builds in release mode, installs wrk, nginx
# and systemd-socket-activate when missing (Debian packages), starts
# everything itself on loopback, stops everything, and writes a Markdown
# table to stdout and to bench/results/<date>.md. Progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3; DURATION=10s; KV_SETS=1000; KV_SETS8=300; KV_GETS=20000; COLD_RUNS=10; RECOVERY_RUNS=20
if [[ "${1:-}" == "--quick" ]]; then
    DURATION=3s; KV_SETS=300; KV_SETS8=100; KV_GETS=5000; COLD_RUNS=5
elif [[ $# -gt 0 ]]; then
    echo "usage: bench/run.sh [--quick]" >&2; exit 2
fi
STARTED=$SECONDS
say() { echo "bench [$(( SECONDS - STARTED ))s]: $*" >&2; }

# --- tools: Debian packages, installed when missing ---
install_packages() {
    local guard=""
    # Installing nginx must not start the system's nginx service: a
    # policy-rc.d that refuses every start, only while apt runs.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=1
    fi
    local status=0
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"; } >&2 || status=$?
    if [[ -n "$guard" ]]; then rm -f /usr/sbin/policy-rc.d; fi
    return "$status"
}
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[[ -x /usr/sbin/nginx ]] || command -v nginx >/dev/null || missing+=(nginx)
command -v systemd-socket-activate >/dev/null || missing+=(systemd)
command -v curl >/dev/null || missing+=(curl)
command -v perf >/dev/null || missing+=(linux-perf)
if [[ ${#missing[@]} -gt 0 ]]; then say "installing ${missing[*]}"; install_packages "${missing[@]}"; fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

say "building (release)"
cargo build --release --workspace -q
BIN=$PWD/target/release

# How busy the machine is apart from this run: CPU counted by the kernel
# (/proc/stat) minus what this script's processes used (bash's `times`,
# which counts every waited-for descendant), from here to the table.
cpu_stat() { awk '/^cpu / {print $2+$3+$4+$7+$8, $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
# `times` must run in this shell itself (not in $(...)): it counts the
# shell's own children.
our_cpu() { times > "$WORK/times.$1"; }
our_cpu_s() { # user + system seconds of this shell's finished children, at our_cpu NAME
    python3 -c 'import re,sys; print(sum(int(m) * 60 + float(s) for m, s in re.findall(r"(\d+)m([\d.]+)s", open(sys.argv[1]).read().splitlines()[1])))' "$WORK/times.$1"
}

# shellcheck source=bench/lib.sh
source bench/lib.sh
# nginx's workers run as nobody when the script runs as root: they must reach
# the backend's socket in here (traverse only, no listing).
chmod 711 "$WORK"
read -r BUSY0 STEAL0 TOTAL0 < <(cpu_stat)
our_cpu start

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_us() { echo "${EPOCHREALTIME/./}"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
calc() { python3 -c "print($1)"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# A plugin folder of COUNT wrappers around BINARY, ids PREFIX-1 .. PREFIX-COUNT
# (the wrapper prints the metadata, then execs the binary).
plugin_copies() { # dir prefix count binary
    mkdir -p "$1"
    local i
    for i in $(seq 1 "$3"); do
        cat > "$1/$2-$i" <<SH
#!/bin/sh
if [ "\$1" = "--metadata" ]; then
  echo '{"id":"$2-$i","name":"$2 $i","version":"1","author":null,"icon":"x","route":"/$2-$i","protocol":2}'
  exit 0
fi
exec "$4"
SH
        chmod +x "$1/$2-$i"
    done
}

# Starts torud NAME on plugin folder DIR with EXTRA config lines under a
# NOTIFY_SOCKET of our own and waits for READY=1. Sets T_PID, T_PORT, T_SOCK
# (its Unix socket: no token needed there) and T_READY_MS (start to READY=1).
start_torud() { # name dir extra
    local dir=$WORK/$1
    mkdir -p "$dir"
    T_PORT=$(free_port); T_SOCK=$dir/run/toru.sock
    cat > "$dir/toru.toml" <<TOML
listen = ["127.0.0.1:$T_PORT", "unix:$T_SOCK"]
state_dir = "$dir/state"
runtime_dir = "$dir/run"
plugin_dirs = ["$2"]
$3
TOML
    # The service manager's side of sd_notify: a datagram socket; prints the
    # wall clock (µs) at READY=1.
    python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(120)
while b"READY=1" not in s.recv(65536).split(b"\n"):
    pass
print(time.time_ns() // 1000)' "$dir/notify.sock" > "$dir/ready" &
    local listener=$!
    until [[ -S "$dir/notify.sock" ]]; do sleep 0.005; done
    local started; started=$(now_us)
    NOTIFY_SOCKET=$dir/notify.sock RUST_LOG=warn "$BIN/torud" --config "$dir/toru.toml" 2>"$dir/torud.log" &
    T_PID=$!; PIDS+=("$T_PID")
    if ! wait "$listener"; then
        say "torud $1 did not become ready; its log:"; cat "$dir/torud.log" >&2; exit 1
    fi
    T_READY_MS=$(calc "round(($(cat "$dir/ready") - $started) / 1000, 1)")
}

# wrk: prints "req/s p50 p99 errors requests" (latencies in ms).
load() { # url connections [lua script]
    local threads=$(( $2 < 2 ? 1 : 2 )) script=()
    if [[ -n "${3:-}" ]]; then script=(-s "$3"); fi
    wrk -t"$threads" -c"$2" -d"$DURATION" --latency "${script[@]}" \
        -H "Authorization: Bearer ${TOKEN:-none}" "$1" 2>/dev/null | python3 -c '
import re, sys
text = sys.stdin.read()
def ms(v):
    n, unit = float(re.match(r"[\d.]+", v).group()), re.sub(r"[\d.]+", "", v)
    return n * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
socket_errors = re.search(r"Socket errors: (.*)", text)
bad = int(errors.group(1)) if errors else 0
if socket_errors: bad += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
requests = int(re.search(r"(\d+) requests in", text).group(1))
print(f"{rps:.0f} {p50:.3f} {p99:.3f} {bad} {requests}")'
}

# CPU time (user + system, clock ticks) used so far by these processes.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { # pid...
    local p total=0 utime stime
    for p in "$@"; do
        # After "pid (comm) ", utime and stime are the 12th and 13th fields.
        read -r utime stime < <(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12, $13}')
        total=$(( total + utime + stime ))
    done
    echo "$total"
}

# ===================== 1. gateway =====================
say "gateway: starting the limit, nginx and torud"
LIMIT_PORT=$(free_port)
"$BIN/limit" "127.0.0.1:$LIMIT_PORT" & LIMIT_PID=$!; PIDS+=("$LIMIT_PID")
"$BIN/limit" "unix:$WORK/backend.sock" & BACKEND_PID=$!; PIDS+=("$BACKEND_PID")
until [[ -S "$WORK/backend.sock" ]]; do sleep 0.01; done
chmod 666 "$WORK/backend.sock"  # for nginx's workers

# nginx, run by us in the foreground with its own paths, never the service.
NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx"
chmod 755 "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    # Keep connections as long as torud does: no reconnects mid-load.
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream backend {
        server unix:$WORK/backend.sock;
        # Idle upstream connections kept per worker: enough for 256 clients.
        keepalive 512;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        # Bodies and answers of 64 KiB stay in memory.
        client_max_body_size 1m;
        client_body_buffer_size 128k;
        proxy_buffer_size 16k;
        proxy_buffers 8 16k;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
"$NGINX" -e "$WORK/nginx/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!; PIDS+=("$NGINX_PID")

mkdir -p "$WORK/plugins2"
ln -s "$BIN/hello" "$WORK/plugins2/hello"
ln -s "$PWD/examples/python/hello_v1.py" "$WORK/plugins2/hello-py"
start_torud main "$WORK/plugins2" '[restart]
stable_after = "1s"
max_failures = 1000'
MAIN_PID=$T_PID; MAIN_SOCK=$T_SOCK
TOKEN=$(cat "$WORK/main/state/admin.token")
RSS_MAIN_BEFORE=$(rss_kib "$MAIN_PID")
for port in "$LIMIT_PORT" "$NGINX_PORT"; do
    until curl -sf -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.02; done
done

declare -A URL
URL[limit]=http://127.0.0.1:$LIMIT_PORT
URL[nginx]=http://127.0.0.1:$NGINX_PORT
URL[v2]=http://127.0.0.1:$T_PORT/api/plugins/route/hello
URL[v1]=http://127.0.0.1:$T_PORT/api/plugins/route/hello-py
declare -A BODY=([100]="~100 B" [64k]="64 KiB")
declare -A NAME=([limit]="limit (bare hyper)" [nginx]="nginx → hyper (Unix socket)"
    [v2]="torud + hello (protocol 2)" [v1]="torud + hello-py (protocol 1)")
TARGETS=(limit nginx v2 v1)
# The processes that serve each target, for the CPU each request costs.
plugin_pid() { curl -sf --unix-socket "$MAIN_SOCK" "http://t/api/plugins/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])'; }
declare -A SERVERS
SERVERS[limit]=$LIMIT_PID
SERVERS[nginx]="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')$BACKEND_PID"
SERVERS[v2]="$MAIN_PID $(plugin_pid hello)"
SERVERS[v1]="$MAIN_PID $(plugin_pid hello-py)"

cat > "$WORK/post64k.lua" <<'LUA'
wrk.method = "POST"
wrk.body = string.rep("x", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA
head -c 65536 /dev/zero | tr '\0' x > "$WORK/64k"

# The same answer sizes everywhere: ~100 B for GET /, 65536 B echoed.
declare -A SIZE
for t in "${TARGETS[@]}"; do
    SIZE[$t]=$(curl -sf -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $TOKEN" "${URL[$t]}/")
    echoed=$(curl -sf -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/octet-stream' --data-binary "@$WORK/64k" "${URL[$t]}/echo")
    if [[ "$echoed" != 65536 ]]; then say "${NAME[$t]} echoed $echoed bytes, not 65536"; exit 1; fi
done

# Rounds of every load in turn, so that drift in the machine's load reaches
# all targets alike; each figure comes from the round with the median req/s.
: > "$WORK/gateway.txt"
for round in $(seq 1 "$ROUNDS"); do
    for body in 100 64k; do
        for c in 1 16 256; do
            for t in "${TARGETS[@]}"; do
                say "gateway: round $round of $ROUNDS, ${BODY[$body]}, $c connections, ${NAME[$t]}"
                # shellcheck disable=SC2086 # a list of pids
                ticks=$(cpu_ticks ${SERVERS[$t]})
                if [[ $body == 100 ]]; then
                    result=$(load "${URL[$t]}/" "$c")
                else
                    result=$(load "${URL[$t]}/echo" "$c" "$WORK/post64k.lua")
                fi
                # shellcheck disable=SC2086
                ticks=$(( $(cpu_ticks ${SERVERS[$t]}) - ticks ))
                echo "$t,$body,$c $result $ticks" >> "$WORK/gateway.txt"
            done
        done
    done
done
declare -A RESULT
for body in 100 64k; do
    for c in 1 16 256; do
        for t in "${TARGETS[@]}"; do
            k=$t,$body,$c
            RESULT[$k]=$(awk -v k="$k" '$1 == k' "$WORK/gateway.txt" | sort -k2,2n \
                | sed -n "$(( (ROUNDS + 1) / 2 ))p" | cut -d' ' -f2-)
            errors=$(awk -v k="$k" '$1 == k {n += $5} END {print n + 0}' "$WORK/gateway.txt")
            read -r rps p50 p99 _ requests ticks <<< "${RESULT[$k]}"
            RESULT[$k]="$rps $p50 $p99 $errors $(calc "round($ticks * 1e6 / $CLK_TCK / $requests, 1)")"
        done
    done
done
# What it holds once the load is over: 10 s later.
sleep 10
RSS_MAIN_AFTER=$(rss_kib "$MAIN_PID")

# ===================== 1b. what a request costs =====================
# One more load per target at 16 and 256 connections (~100 B) with `perf stat`
# on each server process: context switches, system calls and wakeups it made
# (sched_wakeup counts in the waker's context), per request.
declare -A PNAME
PNAME[$LIMIT_PID]=limit; PNAME[$BACKEND_PID]=backend; PNAME[$NGINX_PID]="nginx master"
for pid in $(pgrep -P "$NGINX_PID"); do PNAME[$pid]="nginx worker"; done
PNAME[$MAIN_PID]=torud; PNAME[$(plugin_pid hello)]=hello; PNAME[$(plugin_pid hello-py)]=hello-py
declare -A COST
for c in 16 256; do
    for t in "${TARGETS[@]}"; do
        say "costs: ${NAME[$t]}, $c connections"
        perfs=()
        for pid in ${SERVERS[$t]}; do
            perf stat -x, -e context-switches,raw_syscalls:sys_enter,sched:sched_wakeup \
                -p "$pid" -o "$WORK/perf.$t.$c.$pid" 2>/dev/null & perfs+=($!)
        done
        sleep 0.3
        # shellcheck disable=SC2086 # a list of pids
        ticks=$(cpu_ticks ${SERVERS[$t]})
        result=$(load "${URL[$t]}/" "$c")
        # shellcheck disable=SC2086
        ticks=$(( $(cpu_ticks ${SERVERS[$t]}) - ticks ))
        kill -INT "${perfs[@]}" 2>/dev/null || true
        for p in "${perfs[@]}"; do wait "$p" 2>/dev/null || true; done
        read -r rps _ _ _ requests <<< "$result"
        # Each process's three counts, then the sum, per request.
        named=()
        for pid in ${SERVERS[$t]}; do named+=("$pid=${PNAME[$pid]:-$pid}"); done
        COST[$t,$c]=$(python3 - "$requests" "$WORK" "$t" "$c" "$ticks" "$CLK_TCK" "${named[@]}" <<'PY'
import sys
requests, work, t, c, ticks, tck = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
names = dict(arg.split("=", 1) for arg in sys.argv[7:])
total, parts = [0, 0, 0], []
for pid, name in names.items():
    counts = {}
    for line in open(f"{work}/perf.{t}.{c}.{pid}"):
        fields = line.strip().split(",")
        if len(fields) > 2 and fields[0].isdigit():
            counts[fields[2]] = int(fields[0])
    row = [counts.get(e, 0) / max(requests, 1) for e in ("context-switches", "raw_syscalls:sys_enter", "sched:sched_wakeup")]
    total = [a + b for a, b in zip(total, row)]
    parts.append(f"{name} {row[0]:.2f}/{row[1]:.2f}/{row[2]:.2f}")
cpu = ticks * 1e6 / tck / max(requests, 1)
print(f"{total[0]:.2f} {total[1]:.2f} {total[2]:.2f} {cpu:.1f} " + "; ".join(parts))
PY
)
        COST[$t,$c]="$rps ${COST[$t,$c]}"
    done
done

say "recovery: $RECOVERY_RUNS × kill -9"
RECOVERY=$("$BIN/recovery" "$MAIN_SOCK" hello hello "$RECOVERY_RUNS" | tail -1 | awk '{print $2}')
stop "${PIDS[@]}"; PIDS=()

# ===================== 3. plugin KV =====================
say "kv: 1 and 8 plugins through torud, then redb directly"
plugin_copies "$WORK/kvplugins" kvbench 8 "$BIN/kvbench"
start_torud kv "$WORK/kvplugins" 'request_timeout = "300s"'
kv_call() { # plugin query: prints ops/s
    curl -sf --unix-socket "$T_SOCK" "http://t/api/plugins/route/$1/?$2" \
        | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ops_per_s"]))'
}
kv_eight() { # query: ops/s of 8 plugins at once (all calls ÷ the slowest's time)
    local i pids=()
    for i in $(seq 1 8); do
        curl -sf -o "$WORK/kv8-$i.json" --unix-socket "$T_SOCK" "http://t/api/plugins/route/kvbench-$i/?$1" & pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    python3 -c '
import json, sys
runs = [json.load(open(f"{sys.argv[1]}/kv8-{i}.json")) for i in range(1, 9)]
print(round(sum(r["n"] for r in runs) / (max(r["elapsed_ms"] for r in runs) / 1000)))' "$WORK"
}
kv_direct() { # threads sets: prints "set/s get/s"
    "$BIN/kvdirect" "$WORK/direct$1" "$1" "$2" "$KV_GETS" \
        | python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r["set_ops_per_s"]), round(r["get_ops_per_s"]))'
}
# The disk's fsync time drifts (the machine is shared): torud and redb
# directly take turns, 3 rounds, and each figure is the median of its 3.
: > "$WORK/kv.txt"
for round in 1 2 3; do
    say "kv: round $round of 3"
    set1=$(kv_call kvbench-1 "op=set&n=$KV_SETS")
    get1=$(kv_call kvbench-1 "op=get&n=$KV_GETS&keys=$KV_SETS")
    direct1=$(kv_direct 1 "$KV_SETS")
    set8=$(kv_eight "op=set&n=$KV_SETS8")
    get8=$(kv_eight "op=get&n=$KV_GETS&keys=$KV_SETS8")
    direct8=$(kv_direct 8 "$KV_SETS8")
    read -r dset1 dget1 <<< "$direct1"
    read -r dset8 dget8 <<< "$direct8"
    printf '%s %s\n' t_set1 "$set1" t_get1 "$get1" d_set1 "$dset1" d_get1 "$dget1" \
        t_set8 "$set8" t_get8 "$get8" d_set8 "$dset8" d_get8 "$dget8" >> "$WORK/kv.txt"
done
stop "$T_PID"; forget "$T_PID"
kv() { awk -v k="$1" '$1 == k {print $2}' "$WORK/kv.txt" | median; }

# ===================== 4. scale =====================
declare -A READY_MS RSS
for n in 0 1 10 100; do
    say "scale: $n plugins"
    plugin_copies "$WORK/scale$n" hello "$n" "$BIN/hello"
    start_torud "scale$n" "$WORK/scale$n" ""
    sleep 1
    READY_MS[$n]=$T_READY_MS; RSS[$n]=$(rss_kib "$T_PID")
    stop "$T_PID"; forget "$T_PID"
done

# ===================== 5. cold start =====================
say "cold start: $COLD_RUNS × torud + hello and × limit, socket-activated"
mkdir -p "$WORK/cold/plugins"
ln -s "$BIN/hello" "$WORK/cold/plugins/hello"
# A first start makes the state (database, token), as an installed torud has.
start_torud cold "$WORK/cold/plugins" ""
COLD_TOKEN=$(cat "$WORK/cold/state/admin.token")
stop "$T_PID"; forget "$T_PID"
for i in $(seq 1 "$COLD_RUNS"); do
    port=$(free_port)
    RUST_LOG=warn "$BIN/coldstart" "$port" /api/plugins/route/hello/ "$COLD_TOKEN" \
        systemd-socket-activate -l "127.0.0.1:$port" --fdname=http \
        "$BIN/torud" --config "$WORK/cold/toru.toml" >> "$WORK/cold-torud" 2>>"$WORK/cold.log"
    port=$(free_port)
    "$BIN/coldstart" "$port" / - \
        systemd-socket-activate -l "127.0.0.1:$port" --fdname=http \
        "$BIN/limit" activated >> "$WORK/cold-limit" 2>>"$WORK/cold.log"
done
COLD_T_ANSWER=$(awk '{print $1}' "$WORK/cold-torud" | median)
COLD_T_200=$(awk '{print $2}' "$WORK/cold-torud" | median)
COLD_L_200=$(awk '{print $2}' "$WORK/cold-limit" | median)

# ===================== the table =====================
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
field() { echo "${RESULT[$1]}" | awk -v n="$2" '{print $n}'; }
mib() { python3 -c "print(f'{$1 / 1024:.1f}')"; }
slope() { python3 -c "print(f'{($2 - $1) / ($4 - $3):.$5f}')"; } # y1 y2 x1 x2 decimals
read -r BUSY1 STEAL1 TOTAL1 < <(cpu_stat)
our_cpu end
OTHERS=$(calc "max(0, round(100 * (($BUSY1 - $BUSY0) / $CLK_TCK - ($(our_cpu_s end) - $(our_cpu_s start))) / (($TOTAL1 - $TOTAL0) / $CLK_TCK)))")
STEAL=$(calc "round(100 * ($STEAL1 - $STEAL0) / ($TOTAL1 - $TOTAL0), 1)")
{
echo "## Run of $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), Linux $(uname -r). Other processes than this run's used ~$OTHERS % of the cores' time during it; steal time $STEAL %."
echo "wrk: $DURATION per load, $ROUNDS rounds (the round with the median req/s is shown; errors are counted over all rounds), 1 thread at 1 connection, else 2; ~100 B = \`GET /\` (answers of ${SIZE[limit]}, ${SIZE[nginx]}, ${SIZE[v2]} and ${SIZE[v1]} B), 64 KiB = \`POST /echo\` of 65536 B echoed back."
echo
echo "| body | conns | target | req/s | p50 ms | p99 ms | p99 added ms | ÷ limit | ÷ nginx | server CPU µs/req | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for body in 100 64k; do
    for c in 1 16 256; do
        for t in "${TARGETS[@]}"; do
            k=$t,$body,$c
            echo "| ${BODY[$body]} | $c | ${NAME[$t]} | $(field "$k" 1) | $(field "$k" 2) | $(field "$k" 3) | $(calc "round($(field "$k" 3) - $(field "limit,$body,$c" 3), 3)") | $(ratio "$(field "$k" 1)" "$(field "limit,$body,$c" 1)") | $(ratio "$(field "$k" 1)" "$(field "nginx,$body,$c" 1)") | $(field "$k" 5) | $(field "$k" 4) |"
        done
    done
done
echo
echo "What one request costs the server side (\`perf stat\` on each server process during one more load, ~100 B): context switches, system calls and wakeups made, per request, and CPU µs per request; then each process's context switches / system calls / wakeups."
echo
echo "| conns | target | req/s | context switches | syscalls | wakeups | CPU µs | per process (cs/sys/wake) |"
echo "|---|---|---|---|---|---|---|---|"
for c in 16 256; do
    for t in "${TARGETS[@]}"; do
        read -r rps cs sys wake cpu parts <<< "${COST[$t,$c]}"
        echo "| $c | ${NAME[$t]} | $rps | $cs | $sys | $wake | $cpu | $parts |"
    done
done
echo
echo "| plugin KV (100 B values), median of 3 rounds | through torud (ops/s) | redb directly (ops/s) | ratio |"
echo "|---|---|---|---|"
kv_row() { # label figure
    echo "| $1 | $(kv "t_$2") | $(kv "d_$2") | $(ratio "$(kv "t_$2")" "$(kv "d_$2")") |"
}
kv_row "durable sets, 1 plugin ($KV_SETS sequential)" set1
kv_row "durable sets, 8 plugins at once ($KV_SETS8 each)" set8
kv_row "gets, 1 plugin ($KV_GETS sequential)" get1
kv_row "gets, 8 plugins at once ($KV_GETS each)" get8
echo
echo "| plugins | start to READY=1 ms | torud RSS MiB |"
echo "|---|---|---|"
for n in 0 1 10 100; do echo "| $n | ${READY_MS[$n]} | $(mib "${RSS[$n]}") |"; done
echo "| per plugin, 1 → 10 | $(slope "${READY_MS[1]}" "${READY_MS[10]}" 1 10 1) ms | $(slope "${RSS[1]}" "${RSS[10]}" 1 10 0) KiB |"
echo "| per plugin, 10 → 100 | $(slope "${READY_MS[10]}" "${READY_MS[100]}" 10 100 1) ms | $(slope "${RSS[10]}" "${RSS[100]}" 10 100 0) KiB |"
echo
echo "| figure | value |"
echo "|---|---|"
echo "| torud RSS with hello and hello-py, before / 10 s after the gateway loads | $(mib "$RSS_MAIN_BEFORE") MiB / $(mib "$RSS_MAIN_AFTER") MiB |"
echo "| cold start, limit: first connection to 200, median of $COLD_RUNS | $COLD_L_200 ms |"
echo "| cold start, torud + hello: first connection to first answer / to first 200, median of $COLD_RUNS | $COLD_T_ANSWER ms / $COLD_T_200 ms ($(ratio "$COLD_T_200" "$COLD_L_200") × limit) |"
echo "| \`kill -9\` of a plugin to its next 200, median of $RECOVERY_RUNS | $RECOVERY ms |"
echo
goal() { # description value holds(python expression)
    echo "| $1 | $2 | $(python3 -c "print('holds' if $3 else 'not met')")${4:-} |"
}
added() { calc "round($(field "v2,$1,$2" 3) - $(field "limit,$1,$2" 3), 3)"; }
echo "| goal (issue 18) | this run | |"
echo "|---|---|---|"
for c in 256 16; do
    r=$(ratio "$(field "v2,100,$c" 1)" "$(field "nginx,100,$c" 1)")
    goal "torud + hello ÷ nginx, $c connections, ~100 B: ≥ 1.2" "$r" "$r >= 1.2"
done
r=$(ratio "$(field "v2,64k,256" 1)" "$(field "nginx,64k,256" 1)")
goal "torud + hello ÷ nginx, 256 connections, 64 KiB: ≥ 1.0" "$r" "$r >= 1.0"
r=$(ratio "$(field "v2,100,256" 1)" "$(field "limit,100,256" 1)")
goal "torud + hello ÷ limit, 256 connections, ~100 B: ≥ 0.6" "$r" "$r >= 0.6"
r=$(ratio "$(field "v2,100,256" 5)" "$(field "nginx,100,256" 5)")
goal "server CPU µs per request, torud + hello ÷ nginx + backend (256, ~100 B): ≤ 0.8" "$r" "$r <= 0.8"
for c in 1 16 256; do
    a=$(added 100 "$c")
    goal "p99 added by torud + hello (its p99 − the limit's), ~100 B, $c connections: < 0.5 ms" "$a ms" "$a < 0.5" \
        "$(python3 -c "print(' (negative: noise, the limit was hit harder)' if $a < 0 else '')")"
done
r=$(ratio "$(kv t_set8)" "$(kv d_set8)")
goal "KV durable sets, 8 plugins at once ÷ redb directly from 8 threads: ≥ 3" "$r" "$r >= 3"
goal "KV gets from 1 plugin (sequential): ≥ 40 k/s" "$(kv t_get1)/s" "$(kv t_get1) >= 40000"
goal "torud RSS 10 s after the gateway loads: < 24 MiB" "$(mib "$RSS_MAIN_AFTER") MiB" "$RSS_MAIN_AFTER < 24 * 1024"
goal "torud RSS idle with 10 plugins: < 10 MiB" "$(mib "${RSS[10]}") MiB" "${RSS[10]} < 10 * 1024"
goal "100 plugins ready (READY=1): within 2 s" "${READY_MS[100]} ms" "${READY_MS[100]} < 2000"
echo
echo "Whole run: $(( SECONDS - STARTED )) s."
} | tee "bench/results/$(date -u +%Y-%m-%d).md"

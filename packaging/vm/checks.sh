#!/bin/bash
# Runs inside the VM (packaging/vm/run.sh), as a oneshot unit at boot: installs
# toru's package, runs the misbehaving plugins (fixture.py) under their limits,
# and checks through systemctl, journalctl, toructl and the HTTP API that the
# kernel holds each one while torud and the other plugins go on. One line per
# check on the second serial port (the host prints them); the unit powers the
# machine off when this ends, either way.
# SC2015: `A && B || fail` is meant as "all of these, or fail". SC2016: the
# conditions given to until_in are evaluated there, later, on purpose.
# shellcheck disable=SC2015,SC2016
set -uo pipefail

exec 3>/dev/ttyS1
START=$(date +%s)
say() { printf '%4ds  %s\n' $(($(date +%s) - START)) "$*" >&3; }
ok() { say "ok    $*"; }
fail() {
    say "FAIL  $*"
    journalctl -b --no-pager -n 60 -o short-monotonic 2>&1 | sed 's/^/      journal: /' >&3
    exit 1
}

# The plugin object's field FIELD (a dotted path) of plugin ID, as text.
field() {
    toructl --json plugins show "$1" 2>/dev/null |
        python3 -c 'import json,sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)' "$2"
}
# Until the shell text CONDITION holds (evaluated here, with these functions), at
# most SECONDS.
until_in() {
    local deadline=$(($(date +%s) + $1))
    until eval "$2" >/dev/null 2>&1; do
        (($(date +%s) < deadline)) || return 1
        sleep 0.2
    done
}
group() { echo "/sys/fs/cgroup/system.slice/toru.service/plugins/$1"; }
# hello-py answers, and how long it took (s).
answers() { curl -fsS -o /dev/null -w '%{time_total}' --unix-socket /run/toru/toru.sock http://toru/api/plugins/route/hello-py/; }
# A plugin group's CPU time (µs).
cpu_usec() { awk '$1 == "usage_usec" { print $2 }' "$(group "$1")/cpu.stat"; }
# Its share of one CPU over SECONDS, in percent.
cpu_share() {
    local before after t0 t1
    before=$(cpu_usec "$1")
    t0=$(date +%s%N)
    sleep "$2"
    after=$(cpu_usec "$1")
    t1=$(date +%s%N)
    awk -v u=$((after - before)) -v t=$(((t1 - t0) / 1000)) 'BEGIN { printf "%.1f", 100 * u / t }'
}

say "kernel $(uname -r), $(nproc) CPU(s), $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB"
export DEBIAN_FRONTEND=noninteractive
dpkg -i /root/toru.deb >/root/dpkg.log 2>&1 || fail "dpkg -i toru.deb: $(tail -n 3 /root/dpkg.log)"
ok "dpkg -i $(dpkg-query -W -f '${Package} ${Version}' toru)"

# Swap on: memory_max must stop a plugin at its limit, not let it swap.
dd if=/dev/zero of=/swapfile bs=1M count=128 status=none && chmod 600 /swapfile &&
    mkswap /swapfile >/dev/null && swapon /swapfile || fail "swapon"
ok "swap on: $(awk 'NR > 1 { print int($3 / 1024) " MiB" }' /proc/swaps)"

plugins=/usr/local/lib/toru/plugins
mkdir -p "$plugins"
for name in hog bomb spin; do install -m 0755 /root/fixture.py "$plugins/$name"; done
install -m 0755 /root/hello_v1.py "$plugins/hello-py.py"
# Under full emulation on a busy host, a Python plugin may take longer than the
# defaults to print its metadata (5 s) and to make its socket (10 s).
sed -i -e 's/^#start_timeout = .*/start_timeout = "60s"/' \
    -e 's/^#metadata_timeout = .*/metadata_timeout = "30s"/' /etc/toru/toru.toml
grep -q '^start_timeout = "60s"' /etc/toru/toru.toml || fail "no start_timeout line to set in /etc/toru/toru.toml"
cat >>/etc/toru/toru.toml <<'EOF'

[plugins.hog]
memory_max = "32M"

[plugins.bomb]
pids_max = 16

[plugins.spin]
cpu_max = "20%"
EOF
torud --check-config >/dev/null || fail "torud --check-config"

systemctl start toru.socket || fail "systemctl start toru.socket"
started=$(date +%s%N)
curl -fsS -o /dev/null --unix-socket /run/toru/toru.sock http://toru/api/health || fail "the first connection"
until_in 180 '[ "$(systemctl show -P ActiveState toru.service)" = active ]' || fail "toru.service did not start"
until_in 180 '[ "$(field hello-py state)" = running ]' ||
    fail "hello-py did not start"
ok "toru.service started by its socket in $((($(date +%s%N) - started) / 1000000)) ms"

# --- the controllers -------------------------------------------------------

subtree=$(cat /sys/fs/cgroup/system.slice/toru.service/cgroup.subtree_control)
for c in memory pids cpu; do
    grep -qw "$c" <<<"$subtree" || fail "toru.service's cgroup.subtree_control is '$subtree', no $c"
done
grep -qw memory "$(group hello-py)/cgroup.controllers" 2>/dev/null || fail "plugins/hello-py lacks the memory controller"
journal=$(journalctl -u toru.service --no-pager)
grep -qi "not enforced\|missing controller\|no controller" <<<"$journal" &&
    fail "torud warns of missing controllers: $(grep -i 'enforced\|controller' <<<"$journal" | head -n 2)"
ok "controllers delegated to toru.service: $subtree; none reported missing"

# --- memory: hog allocates 200 MiB under memory_max = 32M ------------------

until_in 90 '[ "$(field hog last_exit.cause)" = out_of_memory ]' ||
    fail "hog was not OOM-killed: $(toructl plugins show hog 2>&1 | tr '\n' ' ')"
reason=$(field hog last_exit.reason)
grep -q "killed by the kernel: out of memory" <<<"$reason" || fail "hog's last exit says '$reason'"
answers >/dev/null || fail "hello-py does not answer after hog's OOM kill"
[ "$(systemctl show -P ActiveState toru.service)" = active ] || fail "toru.service is not active after hog's OOM kill"
until_in 30 'toructl events hog | grep -q "killed by the kernel: out of memory"' || fail "no event says hog was killed for memory"
until_in 30 'journalctl -u toru.service PLUGIN=hog --no-pager | grep -q "killed by the kernel: out of memory"' ||
    fail "the journal does not say hog was killed for memory"
oom_kills=$(curl -fsS --unix-socket /run/toru/toru.sock http://toru/metrics | awk '/^toru_plugin_oom_kills\{plugin="hog"\}/ { print $2 }')
[ "${oom_kills:-0}" -ge 1 ] || fail "toru_plugin_oom_kills{plugin=\"hog\"} is '${oom_kills:-}'"
kernel=$(dmesg 2>/dev/null | grep -m 1 -o 'oom_memcg=[^ ,]*' || true)
ok "hog (memory_max 32M, allocating 200 MiB) OOM-killed alone: '$reason'; toru_plugin_oom_kills $oom_kills; ${kernel:-kernel log not readable}; torud and hello-py serve"

# How far it got and how fast: its first 'allocated' line to its last exit.
figures=$(python3 - "$(toructl --json plugins logs hog -n 1000)" "$(toructl --json plugins show hog)" <<'PY'
import datetime, json, sys
logs, plugin = json.loads(sys.argv[1])["logs"], json.loads(sys.argv[2])
at = lambda t: datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
end = at(plugin["last_exit"]["at"])
runs, run = [], []
for line in logs:
    if line["message"] == "listening":
        run = []
        runs.append(run)
    elif line["message"] == "allocated" and at(line["timestamp"]) <= end:
        run.append(line)
run = next(r for r in reversed(runs) if r)
print(run[-1]["fields"]["mib"], int((end - at(run[0]["timestamp"])).total_seconds() * 1000))
PY
) || fail "hog's figures"
read -r last_mib oom_ms <<<"$figures"
# Read while it runs: between runs it has no group, and it can be killed and its
# group removed between a test for the file and a read of it, so read in one step
# and try again until a read succeeds. The kernel's OOM report says so too.
swap_max=
until_in 120 'swap_max=$(cat "$(group hog)/memory.swap.max")' || fail "hog was not started again"
[ "$swap_max" = 0 ] || fail "hog's memory.swap.max is $swap_max, not 0"
dmesg 2>/dev/null | grep -q 'swap: usage 0kB, limit 0kB' || say "      (the kernel's OOM report is not readable here)"
until_in 60 '[ "$(field hog restarts)" -ge 1 ]' ||
    fail "hog was not restarted after its OOM kill"
ok "hog reached ${last_mib} MiB and was killed ${oom_ms} ms after its first allocation, with 128 MiB of swap free (memory.swap.max ${swap_max}); restarted with backoff ($(field hog restarts) restarts)"
toructl plugins disable hog >/dev/null || fail "toructl plugins disable hog"

# --- pids: bomb forks under pids_max = 16 -----------------------------------

until_in 60 'toructl plugins logs bomb | grep -q "fork refused"' || fail "bomb's forks were never refused: $(toructl plugins logs bomb -n 5 2>&1 | tr '\n' ' ')"
forks=$(toructl --json plugins logs bomb | python3 -c '
import json, sys
print([l["fields"]["forks"] for l in json.load(sys.stdin)["logs"] if l["message"] == "fork refused"][0])')
pids_current=$(cat "$(group bomb)/pids.current")
pids_events=$(awk '$1 == "max" { print $2 }' "$(group bomb)/pids.events")
[ "$pids_current" -le 16 ] || fail "bomb's group holds $pids_current tasks"
[ "$(field bomb state)" = running ] || fail "bomb is $(field bomb state)"
took=$(answers) || fail "hello-py does not answer during the fork bomb"
ok "bomb (pids_max 16) refused after $forks forks: pids.current $pids_current, pids.events max $pids_events; hello-py answered in ${took}s"
toructl plugins disable bomb >/dev/null || fail "toructl plugins disable bomb"
until_in 10 '! pgrep -f /usr/local/lib/toru/plugins/bomb' || fail "bomb's processes outlived disable: $(pgrep -af plugins/bomb | head -n 3)"
[ ! -e "$(group bomb)" ] || fail "bomb's cgroup is still there"
ok "toructl plugins disable bomb: all $pids_current of its tasks gone, its cgroup removed"

# --- cpu: spin busy-loops under cpu_max = 20% --------------------------------

sleep 2
share=$(cpu_share spin 5)
took=$(answers) || fail "hello-py does not answer while spin spins"
# CFS bandwidth is enforced per 100 ms period: over 5 s (50 periods) the share is
# within a period's quota of the limit, plus scheduling noise; 3 points is generous.
awk -v s="$share" 'BEGIN { exit !(s >= 17 && s <= 23) }' || fail "spin (cpu_max 20%) used $share% of a CPU over 5 s"
ok "spin (cpu_max 20%) held at $share% of a CPU over 5 s (cpu.stat); hello-py answered in ${took}s meanwhile"

mem=$(field spin memory_bytes)
cpu=$(field spin cpu_usec)
[ "${mem:-0}" -gt 1000000 ] && [ "${cpu:-0}" -gt 1000000 ] || fail "spin's figures: memory_bytes '$mem', cpu_usec '$cpu'"
metrics=$(curl -fsS --unix-socket /run/toru/toru.sock http://toru/metrics)
grep -q '^toru_plugin_memory_bytes{plugin="spin"} [1-9]' <<<"$metrics" &&
    grep -q '^toru_plugin_cpu_seconds{plugin="spin"} [1-9]' <<<"$metrics" || fail "spin's figures are missing in /metrics"
cgls=$(systemd-cgls --no-pager -u toru.service)
grep -q 'plugins' <<<"$cgls" && grep -q 'spin' <<<"$cgls" && grep -q 'supervisor' <<<"$cgls" || fail "systemd-cgls -u toru.service: $cgls"
ok "spin's figures: memory_bytes $mem, cpu_usec $cpu, in /metrics too; systemd-cgls shows supervisor/ and plugins/spin"

# --- a limit changed by a reload, live ---------------------------------------

pid=$(field spin pid)
sed -i 's/^cpu_max = "20%"/cpu_max = "50%"/' /etc/toru/toru.toml
systemctl reload toru.service || fail "systemctl reload toru"
until_in 20 '[ "$(cat "$(group spin)/cpu.max")" = "50000 100000" ]' || fail "spin's cpu.max is '$(cat "$(group spin)/cpu.max")' after the reload"
[ "$(field spin pid)" = "$pid" ] || fail "the reload restarted spin"
until_in 10 'journalctl -u toru.service --no-pager | grep -q "limits changed: spin: cpu_max 20% -> 50%"' ||
    fail "the reload's log line does not name the change: $(journalctl -u toru.service --no-pager | grep 'reload applied' | tail -n 1)"
sleep 1
share=$(cpu_share spin 5)
awk -v s="$share" 'BEGIN { exit !(s >= 46 && s <= 54) }' || fail "spin (cpu_max 50% after the reload) used $share%"
ok "systemctl reload with cpu_max 20% -> 50%: cpu.max rewritten live (pid $pid kept), the journal says 'limits changed: spin: cpu_max 20% -> 50%', spin now at $share%"

# --- a limit no kernel makes sense of ----------------------------------------

cp /etc/toru/toru.toml /root/toru.toml.good
sed -i 's/^memory_max = "32M"/memory_max = "1"/' /etc/toru/toru.toml
refused=$(toructl reload 2>&1) && fail "a reload with memory_max = \"1\" was accepted"
grep -q 'plugins.hog.memory_max' <<<"$refused" || fail "the refusal does not name the key: $refused"
[ "$(systemctl show -P ActiveState toru.service)" = active ] || fail "toru.service is not active after the refused reload"
cp /root/toru.toml.good /etc/toru/toru.toml
ok "memory_max = \"1\": the reload refused, naming plugins.hog.memory_max; torud runs on with the old limits"

say "all checks passed"

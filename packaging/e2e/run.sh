#!/usr/bin/env bash
# End-to-end test of the Debian package under a real, booted systemd.
#
# Builds toru_<version>_<arch>.deb with dpkg-buildpackage, checks it with
# lintian, boots a debootstrapped Debian 12 with systemd-nspawn (the rootfs
# is cached between runs), installs the package and checks, through
# systemctl and journalctl inside the container, what a sysadmin relies on:
# socket activation, reload, the journal, cgroups, restarts, the watchdog,
# stop, upgrade, remove and purge, and a broken configuration.
#
# Run as root from anywhere: packaging/e2e/run.sh
# Environment:
#   TORU_E2E_CACHE   where the rootfs is cached  [/var/tmp/toru-e2e]
#   TORU_E2E_MIRROR  Debian mirror for debootstrap [the host's apt sources]
#   TORU_E2E_KEEP=1  keep the work folder (container rootfs, journal)
# (Output is captured before grep -q: with pipefail, grep -q leaving early
# fails the pipeline.)
# Measured facts behind the commands: SYSTEMD-TESTING.md of the project's
# shared notes (nspawn flags, cgroup leftovers, nsenter).
# SC2016: '${Version}' and the like are dpkg-query formats and container
# shell text, meant literally. SC2015: `A && B || die` is meant as "all of
# these, or fail".
# shellcheck disable=SC2016,SC2015
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${TORU_E2E_CACHE:-/var/tmp/toru-e2e}
SUITE=bookworm
START=$SECONDS
MACHINE=toru-e2e-$$

say() { printf '%4ds  %s\n' $((SECONDS - START)) "$*"; }
ok() { say "ok    $*"; }
die() {
    say "FAIL  $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "run as root: it installs packages and boots a container"

# --- host tools -----------------------------------------------------------

need=()
for tool in systemd-nspawn:systemd-container debootstrap:debootstrap lintian:lintian \
    dpkg-buildpackage:dpkg-dev dh:debhelper fakeroot:fakeroot nsenter:util-linux; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if ((${#need[@]})); then
    say "installing ${need[*]}"
    apt-get update -q >/dev/null
    # No recommends: libnss-mymachines would edit the host's nsswitch.conf.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null || die "cargo is not on PATH (the package builds with the rustup toolchain)"

WORK=$(mktemp -d /var/tmp/toru-e2e-run.XXXXXX)
ROOT=$WORK/rootfs
NSPAWN_PID=
LEADER=

# --- cleanup --------------------------------------------------------------

# nspawn leaves its payload/ and supervisor/ groups under the cgroup it was
# started in (in the unified and the named systemd hierarchy) and a
# propagation folder: remove them so that runs do not pile up.
OWN_CGROUPS=()
while IFS=: read -r _ controllers path; do
    case $controllers in
    '') OWN_CGROUPS+=("/sys/fs/cgroup/unified$path" "/sys/fs/cgroup$path") ;;
    name=systemd) OWN_CGROUPS+=("/sys/fs/cgroup/systemd$path") ;;
    esac
done </proc/self/cgroup

dump_journal() { nsenter -t "$LEADER" -a journalctl -b --no-pager -o short-monotonic >"$WORK/journal.txt" 2>&1 || true; }

cleanup() {
    local status=$?
    if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
        [ "$status" != 0 ] && [ -n "$LEADER" ] && dump_journal
        [ -n "$LEADER" ] && nsenter -t "$LEADER" -a systemctl poweroff >/dev/null 2>&1 || true
        for _ in $(seq 60); do
            kill -0 "$NSPAWN_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$NSPAWN_PID" 2>/dev/null; then
            # Killing nspawn alone would leave the container running.
            kill -9 "$NSPAWN_PID" 2>/dev/null || true
            for group in "${OWN_CGROUPS[@]}"; do
                [ -e "$group/payload/cgroup.kill" ] && echo 1 >"$group/payload/cgroup.kill"
            done
            sleep 1
        fi
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    for group in "${OWN_CGROUPS[@]}"; do
        for leftover in "$group/payload" "$group/supervisor"; do
            [ -d "$leftover" ] && find "$leftover" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
    done
    rmdir "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null || true
    if [ "$status" != 0 ]; then
        if [ -s "$WORK/journal.txt" ]; then
            echo "--- the container's journal, last 80 lines ($WORK/journal.txt):" >&2
            tail -n 80 "$WORK/journal.txt" >&2
        fi
        [ -s "$WORK/console.log" ] && { echo "--- console:" >&2; tail -n 20 "$WORK/console.log" >&2; }
    fi
    if [ "${TORU_E2E_KEEP:-0}" = 1 ] || [ "$status" != 0 ]; then
        # The rootfs is big and of no use once the journal is saved.
        rm -rf "$ROOT"
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    say "$([ "$status" = 0 ] && echo passed || echo failed) in $((SECONDS - START)) s"
}
trap cleanup EXIT

# --- the package ----------------------------------------------------------

VERSION=$(cd "$REPO" && dpkg-parsechangelog -S Version)
ARCH=$(dpkg --print-architecture)
DEB=toru_${VERSION}_${ARCH}.deb
UPGRADE_VERSION=${VERSION}+e2e1
UPGRADE_DEB=toru_${UPGRADE_VERSION}_${ARCH}.deb

say "building $DEB (dpkg-buildpackage -us -uc -b)"
(cd "$REPO" && dpkg-buildpackage -us -uc -b >"$WORK/build.log" 2>&1) ||
    { tail -n 40 "$WORK/build.log" >&2; die "dpkg-buildpackage"; }
# dpkg-buildpackage writes next to the source tree.
mkdir -p "$WORK/out"
for file in "$DEB" "toru-dbgsym_${VERSION}_${ARCH}.deb" "toru_${VERSION}_${ARCH}.changes" \
    "toru_${VERSION}_${ARCH}.buildinfo"; do
    [ -e "$REPO/../$file" ] && mv "$REPO/../$file" "$WORK/out/"
done
[ -f "$WORK/out/$DEB" ] || die "dpkg-buildpackage made no $DEB"
ok "dpkg-buildpackage made $DEB"
# For packaging/vm/run.sh, which tests the same package when the tree is this commit.
if [ -z "$(git -C "$REPO" status --porcelain 2>/dev/null)" ]; then
    mkdir -p "$CACHE/last"
    cp "$WORK/out/$DEB" "$CACHE/last/$DEB"
    git -C "$REPO" rev-parse HEAD >"$CACHE/last/commit"
fi

lintian --fail-on error,warning "$WORK/out/toru_${VERSION}_${ARCH}.changes" >"$WORK/lintian.txt" 2>&1 ||
    { cat "$WORK/lintian.txt" >&2; die "lintian"; }
ok "lintian: no error, no warning"

# The example plugins, built as the package's binaries were.
(cd "$REPO" && CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --locked -q -p hello -p licensed) ||
    die "building examples/hello and examples/licensed"
TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# "A newer version of the package": the same contents under a higher version,
# so that dpkg runs the upgrade paths of the maintainer scripts.
dpkg-deb -R "$WORK/out/$DEB" "$WORK/upgrade"
sed -i "s/^Version: .*/Version: $UPGRADE_VERSION/" "$WORK/upgrade/DEBIAN/control"
dpkg-deb --root-owner-group -b "$WORK/upgrade" "$WORK/out/$UPGRADE_DEB" >/dev/null

# --- the container --------------------------------------------------------

# shellcheck source=packaging/rootfs.sh
. "$REPO/packaging/rootfs.sh"
ensure_rootfs "$CACHE" "$SUITE" "$WORK/debootstrap.log"
cp -a --reflink=auto "$CACHE/rootfs-$SUITE" "$ROOT"
# The container's /tmp is a tmpfs: what it needs goes to /root.
cp "$WORK/out/$DEB" "$WORK/out/$UPGRADE_DEB" "$ROOT/root/"
mkdir -p "$ROOT/root/plugins"
cp "$TARGET_DIR/release/hello" "$REPO/examples/python/hello_v1.py" "$ROOT/root/plugins/"
cp "$REPO/examples/python/hello_v2.py" "$ROOT/root/hello_v2.py"
cp "$TARGET_DIR/release/licensed" "$ROOT/root/"
# The vendor's test key (examples/licensed/test-keys: made for the tests, never a real secret).
install -m 0600 "$REPO/examples/licensed/test-keys/vendor.key" "$ROOT/root/vendor.key"
# What a browser does with the console, as curl: run inside once torud serves.
cat >"$ROOT/root/console.sh" <<'CONSOLE'
set -eu
url=http://127.0.0.1:7070
jar=/root/console.cookies
[ "$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "$url/")" = "302 $url/ui/" ] || { echo "/ is no redirect to /ui/"; exit 1; }
curl -fsS -D /root/ui.head -o /root/ui.html "$url/ui/"
grep -qi "^content-security-policy: default-src 'self'; script-src 'self';" /root/ui.head || { echo "no strict CSP"; exit 1; }
grep -q 'src="/ui/js/main.js"' /root/ui.html || { echo "not the console page"; exit 1; }
token=$(cat /var/lib/toru/admin.token)
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{"token":"wrong"}' "$url/api/session")" = 401 ] || { echo "a wrong token was not 401"; exit 1; }
curl -fsS -c "$jar" -o /dev/null -H 'Content-Type: application/json' -d "{\"token\":\"$token\"}" "$url/api/session"
grep -q toru_session "$jar" || { echo "no session cookie"; exit 1; }
[ "$(curl -s -b "$jar" -o /dev/null -w '%{http_code}' "$url/api/plugins")" = 200 ] || { echo "the cookie does not authenticate"; exit 1; }
[ "$(curl -s -b "$jar" -o /dev/null -w '%{http_code}' -X POST -H 'Origin: http://evil.example' "$url/api/plugins/hello/restart")" = 403 ] || { echo "a cross-site POST was not 403"; exit 1; }
curl -fsS -b "$jar" -o /root/bundle.js "$url/api/plugins/hello/bundle.js"
grep -q 'window.ToruPlugins\["hello"\]' /root/bundle.js || { echo "hello's bundle is not served"; exit 1; }
echo ok
CONSOLE

say "booting $SUITE with systemd-nspawn"
# The unified hierarchy, as in production; --register=no --keep-unit: no
# machined on the host. A private network: no clash with the host's ports.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -q -D "$ROOT" -M "$MACHINE" --boot \
    --register=no --keep-unit --private-network --console=pipe </dev/null >"$WORK/console.log" 2>&1 &
NSPAWN_PID=$!
for _ in $(seq 300); do
    # nspawn's short-lived helper children come first: wait for systemd.
    LEADER=$(ps -o pid=,comm= --ppid "$NSPAWN_PID" | awk '$2 == "systemd" { print $1; exit }') || true
    [ -n "$LEADER" ] && break
    sleep 0.1
done
[ -n "$LEADER" ] || die "the container's init did not appear"

# ct CMD...: run in the container, as its root.
ct() { nsenter -t "$LEADER" -a "$@"; }
# sh 'SCRIPT': a shell script in the container.
sh_in() { ct /bin/sh -c "$1"; }
# apt_in STEP ARGS...: apt-get ARGS in the container, its output kept in
# STEP.log and shown when it fails.
apt_in() {
    local step=$1
    shift
    ct env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" >"$WORK/$step.log" 2>&1 ||
        { cat "$WORK/$step.log" >&2; die "apt-get $* ($step)"; }
}
# until_in SECONDS 'SCRIPT': retries the script until it succeeds.
until_in() {
    local deadline=$((SECONDS + $1))
    until sh_in "$2" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# systemctl answers once the container's systemd has set up its bus.
state=
for _ in $(seq 300); do
    state=$(timeout 60 nsenter -t "$LEADER" -a systemctl is-system-running --wait 2>/dev/null) || true
    [ -n "$state" ] && break
    sleep 0.2
done
case $state in
running | degraded) ok "container booted ($state)" ;;
*) die "the container did not boot: ${state:-no answer}" ;;
esac
if [ "$state" = degraded ]; then
    say "      failed units before install: $(ct systemctl --failed --plain --no-legend | awk '{print $1}' | xargs)"
fi


# --- checks ---------------------------------------------------------------

prop() { ct systemctl show -P "$2" "$1"; }
# api PATH: the HTTP API over TCP, with the admin token, as a client would.
api() { sh_in "curl -fsS -m 20 -H \"Authorization: Bearer \$(cat /var/lib/toru/admin.token)\" 'http://127.0.0.1:7070$1'"; }
plugin_field() { # plugin_field ID FIELD
    ct toructl --json plugins show "$1" |
        ct python3 -c "import json,sys; print(json.load(sys.stdin).get('$2'))"
}
running() { [ "$(plugin_field "$1" state)" = running ]; }
wait_running() { # wait_running ID SECONDS
    local deadline=$((SECONDS + $2))
    until running "$1" 2>/dev/null; do
        ((SECONDS < deadline)) || die "plugin $1 not running after $2 s: $(ct toructl plugins show "$1" 2>&1 | tr '\n' ' ')"
        sleep 0.2
    done
}

say "installing $DEB"
apt_in install install --no-install-recommends "/root/$DEB"
ok "apt-get install ./$DEB"

[ "$(ct systemctl is-enabled toru.socket)" = enabled ] || die "toru.socket not enabled"
[ "$(ct systemctl is-active toru.socket)" = active ] || die "toru.socket not active"
[ "$(ct systemctl is-active toru-admin.socket)" = active ] || die "toru-admin.socket not active"
[ "$(ct systemctl is-active toru.service)" = inactive ] || die "toru.service started before any connection"
ok "toru.socket enabled and active, toru.service inactive until a connection"

sh_in 'test -f /usr/lib/systemd/system/toru.service && test -x /usr/sbin/torud && test -x /usr/bin/toructl' ||
    die "files missing"
ct getent passwd toru >/dev/null || die "no user toru"
[ "$(ct stat -c '%a %U' /var/lib/toru)" = "700 toru" ] || die "/var/lib/toru is $(ct stat -c '%a %U' /var/lib/toru)"
[ "$(ct stat -c '%a %U' /run/toru/toru.sock)" = "600 root" ] || die "admin socket is $(ct stat -c '%a %U' /run/toru/toru.sock)"
grep -q '/etc/toru/toru.toml' <<<"$(ct dpkg-query -W -f '${Conffiles}\n' toru)" || die "toru.toml is not a conffile"
ct torud --check-config >/dev/null || die "the shipped toru.toml does not pass --check-config"
sh_in 'test -f /usr/share/man/man8/torud.8.gz && test -f /usr/share/man/man1/toructl.1.gz &&
    test -f /usr/share/man/man5/toru.toml.5.gz && test -f /usr/share/man/man1/toru-license.1.gz &&
    test -x /usr/bin/toru-license' || die "man pages or toru-license missing"
ok "user toru, /var/lib/toru 0700, admin socket root 0600, toru.toml a conffile that checks"

answer=$(ct curl -fsS -m 30 http://127.0.0.1:7070/api/health) || die "first connection got no answer"
[ "$answer" = '{"status":"ok"}' ] || die "health answered $answer"
[ "$(ct systemctl is-active toru.service)" = active ] || die "toru.service not active after the first connection"
status=$(prop toru.service StatusText)
[[ $status == serving* ]] || die "StatusText is '$status'"
ok "first connection started toru.service and got $answer; StatusText=$status"

[ "$(ct curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7070/api/plugins)" = 401 ] ||
    die "/api/plugins over TCP without a token is not 401"
ct toructl status >/dev/null || die "toructl status over the admin socket"
ok "TCP needs the token (401 without); toructl works over the admin socket"

# Plugins dropped into /usr/local/lib/toru/plugins, then a reload.
sh_in 'mkdir -p /usr/local/lib/toru/plugins &&
    install -m 0755 /root/plugins/hello /root/plugins/hello_v1.py /usr/local/lib/toru/plugins/'
pid_before=$(prop toru.service MainPID)
ct systemctl reload toru.service || die "systemctl reload toru"
[ "$(prop toru.service MainPID)" = "$pid_before" ] || die "reload restarted torud"
wait_running hello 30
wait_running hello-py 30
[ "$(api /api/plugins/route/hello/)" != "" ] || die "hello's route gave nothing"
api /api/plugins/route/hello-py/ >/dev/null || die "hello-py's route"
until_in 10 '[ "$(systemctl show -P StatusText toru.service)" = "serving 2/2 plugins" ]' ||
    die "StatusText after reload is '$(prop toru.service StatusText)'"
status=$(prop toru.service StatusText)
ok "systemctl reload: hello (protocol 2) and hello-py (protocol 1) served; StatusText=$status"
reloaded=$(ct toructl reload) || die "toructl reload"
grep -q '^reloaded: no plugin changed' <<<"$reloaded" && grep -q '^serving 2/2 plugins' <<<"$reloaded" ||
    die "toructl reload said: $reloaded"
[ "$(prop toru.service MainPID)" = "$pid_before" ] || die "toructl reload restarted torud"
ok "toructl reload over the admin socket: nothing changed, serving 2/2, same torud"

[ "$(ct sh /root/console.sh)" = ok ] || die "the console through toru.socket: $(ct sh /root/console.sh 2>&1)"
ok "console through toru.socket: / redirects, /ui/ with its CSP, login (401 for a wrong token), cookie, cross-site POST 403, hello's bundle"

[ "$(ct ps -o user= -p "$(plugin_field hello pid)")" = toru ] || die "hello does not run as toru"
api '/api/plugins/route/hello/log?level=warn&msg=e2e-journal-marker' >/dev/null || die "hello /log"
until_in 10 'journalctl -u toru TORU_PLUGIN=hello -o cat | grep -q e2e-journal-marker' ||
    die "journalctl -u toru TORU_PLUGIN=hello lacks the plugin's line"
[ "$(ct journalctl -u toru TORU_PLUGIN=hello -o json -n 1 --grep e2e-journal-marker |
    ct python3 -c 'import json,sys; print(json.load(sys.stdin)["PRIORITY"])')" = 4 ] ||
    die "the plugin's warning is not at priority 4"
instance=$(ct toructl instance-id)
until_in 10 "journalctl -u toru TORU_PLUGIN=hello TORU_FIELD_INSTANCE_ID=$instance -o cat | grep -q 'hello initialized'" ||
    die "the plugin's own field is not a journal field (TORU_FIELD_INSTANCE_ID)"
ok "journalctl -u toru TORU_PLUGIN=hello shows the plugin's line (priority 4 for warn), its fields as TORU_FIELD_*"

cgls=$(ct systemd-cgls --no-pager -u toru.service)
grep -q 'supervisor' <<<"$cgls" && grep -q 'plugins' <<<"$cgls" && grep -q 'hello' <<<"$cgls" ||
    { echo "$cgls" >&2; die "systemd-cgls -u toru.service"; }
hello_pid=$(plugin_field hello pid)
# The unified hierarchy's line (the host kernel may show v1 lines too).
cgroup_of() { ct grep '^0::' /proc/"$1"/cgroup; }
[ "$(cgroup_of "$hello_pid")" = "0::/system.slice/toru.service/plugins/hello" ] ||
    die "hello is in $(cgroup_of "$hello_pid")"
[ "$(cgroup_of "$(prop toru.service MainPID)")" = "0::/system.slice/toru.service/supervisor" ] ||
    die "torud is not in supervisor/"
ok "systemd-cgls -u toru.service: supervisor/ holds torud, plugins/hello holds hello"

# What hello sees, through its own mount namespace (/proc/PID/root).
[ "$(ct stat -c %u "/proc/$hello_pid")" = "$(ct id -u toru)" ] || die "hello does not run as toru"
[ -z "$(ct ls -A "/proc/$hello_pid/root/var/lib/toru")" ] || die "hello sees /var/lib/toru"
[ "$(ct ls -A "/proc/$hello_pid/root/run/toru")" = plugins ] || die "hello sees more of /run/toru"
[ "$(ct ls -A "/proc/$hello_pid/root/run/toru/plugins")" = hello ] || die "hello sees other plugins' folders"
ct test -S /run/toru/plugins/hello-py/hello-py.sock || die "torud does not see hello-py's socket"
ok "hello, isolated: /var/lib/toru empty, /run/toru holds only plugins/hello; torud sees every socket"

ct kill -9 "$hello_pid"
deadline=$((SECONDS + 30))
until [ "$(plugin_field hello pid 2>/dev/null)" != "$hello_pid" ] && running hello 2>/dev/null; do
    ((SECONDS < deadline)) || die "hello was not restarted after kill -9"
    sleep 0.2
done
api /api/plugins/route/hello/ >/dev/null || die "hello's route after its restart"
ok "kill -9 of hello: restarted (pid $hello_pid -> $(plugin_field hello pid)) and served"

# The watchdog, at 4 s instead of 30 s so that the test is quick.
sh_in 'mkdir -p /etc/systemd/system/toru.service.d &&
    printf "[Service]\nWatchdogSec=4s\n" >/etc/systemd/system/toru.service.d/e2e-watchdog.conf'
ct systemctl daemon-reload
ct systemctl restart toru.service
wait_running hello 30
restarts=$(prop toru.service NRestarts)
main=$(prop toru.service MainPID)
ct kill -STOP "$main"
deadline=$((SECONDS + 40))
until [ "$(prop toru.service NRestarts)" -gt "$restarts" ]; do
    ((SECONDS < deadline)) || die "no restart by the watchdog 40 s after SIGSTOP"
    sleep 0.5
done
wait_running hello 40
wait_running hello-py 40
[ "$(prop toru.service MainPID)" != "$main" ] || die "same torud after the watchdog"
grep -q 'Watchdog timeout' <<<"$(ct journalctl -u toru.service --no-pager)" || die "no 'Watchdog timeout' in the journal"
api /api/plugins/route/hello/ >/dev/null || die "hello's route after the watchdog restart"
ok "kill -STOP of torud: watchdog timeout, NRestarts $restarts -> $(prop toru.service NRestarts), plugins back"
ct rm -rf /etc/systemd/system/toru.service.d
ct systemctl daemon-reload

# A plugin on the Python SDK, which the package installs for Debian's python3.
ct python3 -c 'import toru_plugin' || die "import toru_plugin fails for Debian's python3"
sh_in 'install -m 0755 /root/hello_v2.py /usr/local/lib/toru/plugins/hello-py2'
ct toructl reload >/dev/null || die "toructl reload with hello-py2"
wait_running hello-py2 30
[ "$(api /api/plugins/route/hello-py2/ | ct python3 -c 'import json,sys; print(json.load(sys.stdin)["plugin"])')" = hello-py2 ] ||
    die "hello-py2's route"
checked=$(ct toructl plugins check /usr/local/lib/toru/plugins/hello-py2) || die "toructl plugins check hello-py2: $checked"
ok "hello-py2 on the packaged Python SDK served; toructl plugins check: $(tail -n 1 <<<"$checked")"

# A plugin that requires a licence: refused without one; the vendor's tool
# (packaged) signs one for this instance; toructl installs it; it serves.
license_status() { ct toructl --json license show "$1" | ct python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'; }
sh_in 'install -m 0755 /root/licensed /usr/local/lib/toru/plugins/'
ct systemctl reload toru.service || die "systemctl reload toru (licensed)"
until_in 30 '[ "$(toructl --json plugins show licensed | python3 -c "import json,sys; print(json.load(sys.stdin)[\"state\"])")" = failed ]' ||
    die "licensed is not refused without a licence: $(ct toructl plugins show licensed 2>&1 | tr '\n' ' ')"
[ "$(license_status licensed)" = missing ] || die "licensed's licence is $(license_status licensed), not missing"
[ "$(ct curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(ct cat /var/lib/toru/admin.token)" \
    http://127.0.0.1:7070/api/plugins/route/licensed/)" = 503 ] || die "licensed served without a licence"
expires=$(date -u -d '+90 days' +%F)
ct toru-license sign --key /root/vendor.key --plugin licensed --instance "$(ct toructl instance-id)" \
    --expires "$expires" --licensee "E2E Ltd" --out /root/licensed.lic 2>/dev/null || die "toru-license sign"
ct toructl license install licensed /root/licensed.lic >/dev/null || die "toructl license install"
wait_running licensed 30
[ "$(license_status licensed)" = valid ] || die "licensed's licence is $(license_status licensed) after install"
grep -q '"licensee":"E2E Ltd"' <<<"$(api /api/plugins/route/licensed/)" || die "licensed does not serve its licence"
grep -q "toru_plugin_license_expiry_seconds{plugin=\"licensed\"}" <<<"$(api /metrics)" || die "no licence expiry in /metrics"
ok "licensed: refused without a licence (503), toru-license sign + toructl license install inside, served (valid until $expires)"

# State that must survive.
instance=$(ct toructl instance-id)
ct toructl kv set hello e2e-key '"kept"' >/dev/null
check_state() { # check_state WHEN
    local now value
    now=$(ct toructl instance-id) || die "$1: toructl instance-id"
    [ "$now" = "$instance" ] || die "$1: instance id $instance became $now"
    value=$(ct toructl kv get hello e2e-key) || die "$1: the KV key is gone"
    [ "$value" = '"kept"' ] || die "$1: KV value is $value"
}

ct systemctl stop toru.service toru.socket
[ -z "$(ct pgrep -u toru || true)" ] || die "processes of toru left after stop: $(ct pgrep -a -u toru)"
[ "$(ct systemctl is-active toru-admin.socket)" = inactive ] || die "toru-admin.socket still active"
sh_in 'test ! -e /run/toru/toru.sock' || die "the admin socket file outlived its unit"
ct systemctl start toru.socket
sh_in 'test -S /run/toru/toru.sock' || die "the admin socket did not reappear"
[ "$(ct stat -c '%a %U' /run/toru/toru.sock)" = "600 root" ] || die "the new admin socket is $(ct stat -c '%a %U' /run/toru/toru.sock)"
check_state "after stop and start"
ok "systemctl stop toru.service toru.socket: no plugin left; admin socket back with toru.socket"

ct systemctl restart toru.service
check_state "after systemctl restart"
ok "instance id $instance and KV survive systemctl restart"

# Restarting the sockets while torud runs (it once failed with EADDRINUSE:
# see toru-admin.socket), three times, each followed by a request.
for round in 1 2 3; do
    ct curl -fsS -m 20 http://127.0.0.1:7070/api/health >/dev/null || die "round $round: no answer before the restart"
    ct systemctl restart toru.socket || die "round $round: systemctl restart toru.socket failed"
    [ "$(ct systemctl is-active toru.socket)" = active ] || die "round $round: toru.socket is $(ct systemctl is-active toru.socket)"
    [ "$(ct systemctl is-active toru-admin.socket)" = active ] || die "round $round: toru-admin.socket is not active"
done
ct curl -fsS -m 20 http://127.0.0.1:7070/api/health >/dev/null || die "no answer after restarting the sockets"
[ "$(ct stat -c '%a %U' /run/toru/toru.sock)" = "600 root" ] || die "admin socket is $(ct stat -c '%a %U' /run/toru/toru.sock) after the restarts"
check_state "after restarting the sockets"
ok "systemctl restart toru.socket while torud runs, 3 times: both sockets active, torud answers, admin socket root 0600"

main=$(prop toru.service MainPID)
[ "$main" != 0 ] || die "toru.service not running before the upgrade"
apt_in upgrade install "/root/$UPGRADE_DEB"
[ "$(ct dpkg-query -W -f '${Version}' toru)" = "$UPGRADE_VERSION" ] || die "upgrade did not happen"
[ "$(ct systemctl is-active toru.socket)" = active ] || die "toru.socket not active after the upgrade"
[ "$(prop toru.service MainPID)" != "$main" ] || die "the upgrade did not restart the running torud"
check_state "after the upgrade to $UPGRADE_VERSION"
wait_running hello 30
wait_running licensed 30
ok "upgrade to $UPGRADE_VERSION: torud restarted, socket kept listening, instance id, KV and licence kept"

apt_in remove remove toru
[ -z "$(ct pgrep -u toru || true)" ] || die "processes of toru left after remove"
sh_in 'test ! -e /usr/sbin/torud && test -d /var/lib/toru && test -f /etc/toru/toru.toml' ||
    die "remove: torud still there, or state or config gone"
ct getent passwd toru >/dev/null || die "remove took the user"
apt_in reinstall install "/root/$DEB"
check_state "after remove and reinstall"
ok "apt-get remove stops everything and keeps state, config and user; reinstall finds them"

# A broken configuration: refused, explained, not restarted in a loop.
sh_in 'cp /etc/toru/toru.toml /root/toru.toml.good &&
    printf "request_timeout = \"soon\"\nbogus_key = 1\n" >/etc/toru/toru.toml'
restarts=$(prop toru.service NRestarts)
if ct systemctl restart toru.service 2>/dev/null; then die "toru.service started with a broken config"; fi
sleep 3
[ "$(prop toru.service ExecMainStatus)" = 78 ] || die "exit status $(prop toru.service ExecMainStatus), not 78"
[ "$(prop toru.service NRestarts)" = "$restarts" ] || die "a broken config is restarted in a loop"
status_text=$(ct systemctl status toru.service --no-pager -l 2>&1 || true)
grep -q 'bogus_key' <<<"$status_text" && grep -q 'request_timeout' <<<"$status_text" ||
    { echo "$status_text" >&2; die "systemctl status does not show the config errors"; }
grep -q 'unknown key `bogus_key`' <<<"$(ct journalctl -u toru.service --no-pager)" || die "the journal lacks the config error"
ok "broken toru.toml: start fails with status 78, errors in systemctl status and the journal, no restart loop"
sh_in 'cp /root/toru.toml.good /etc/toru/toru.toml'
ct systemctl reset-failed toru.service
check_state "after the config is mended"

# The store: a backup taken while torud runs; an emptied store refused with
# status 65, explained, not restarted; the backup restored by root.
ct toructl store backup /root/e2e.redb >/dev/null || die "toructl store backup failed"
ct systemctl stop toru.service toru.socket
sh_in ': >/var/lib/toru/toru.redb'
ct systemctl start toru.socket
restarts=$(prop toru.service NRestarts)
if ct systemctl start toru.service 2>/dev/null; then die "torud started on an emptied store"; fi
sleep 3
[ "$(prop toru.service ExecMainStatus)" = 65 ] || die "exit status $(prop toru.service ExecMainStatus), not 65"
[ "$(prop toru.service NRestarts)" = "$restarts" ] || die "an emptied store is restarted in a loop"
journal=$(ct journalctl -u toru.service --no-pager)
grep -q 'missing or empty' <<<"$journal" && grep -q 'torud --restore FILE' <<<"$journal" ||
    die "the journal does not say the store is lost and how to recover"
ct systemctl stop toru.service toru.socket
ct torud --restore /root/e2e.redb >/dev/null || die "torud --restore failed"
sh_in 'test "$(stat -c %U:%a /var/lib/toru/toru.redb)" = toru:600' || die "the restored store is not toru's, 0600"
ct systemctl reset-failed toru.service
ct systemctl start toru.socket
check_state "after a restore"
ok "toructl store backup; an emptied store: status 65, the recovery in the journal, no restart loop; torud --restore"

apt_in purge purge toru
sh_in 'test ! -e /var/lib/toru && test ! -e /etc/toru' || die "purge left /var/lib/toru or /etc/toru"
if ct getent passwd toru >/dev/null; then die "purge left the user toru"; fi
apt_in install-after-purge install "/root/$DEB"
fresh=$(ct toructl instance-id)
[ "$fresh" != "$instance" ] || die "purge kept the instance id"
if ct toructl kv get hello e2e-key >/dev/null 2>&1; then die "purge kept the KV data"; fi
ok "apt-get purge removes state, config and user; a new install gets a new instance id"

dump_journal
ct systemctl poweroff >/dev/null 2>&1 || true
wait "$NSPAWN_PID" 2>/dev/null || true
NSPAWN_PID=
say "all checks passed"

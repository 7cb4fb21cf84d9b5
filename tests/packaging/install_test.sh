#!/usr/bin/env bash
# `meson install` lays out a service: the binary, a unit per role that
# systemd-analyze verifies, the service user (systemd-sysusers) and its
# folders (systemd-tmpfiles) made in a scratch root, example configs readable
# only by root and the service's group, the man page. The installed binary
# speaks systemd's notify protocol: READY, WATCHDOG while its shards turn,
# RELOADING around SIGHUP, STOPPING.
# usage: install_test.sh BUILD_DIR SOURCE_ROOT
set -u
build=$1
root=$2
work=$(mktemp -d /tmp/gatehouse-install-XXXXXX)
gatehouse=""  # set below, to the installed binary
. "$root/tests/e2e/lib.sh"

dest="$work/dest"
meson install -C "$build" --destdir "$dest" --no-rebuild >"$work/install.log" 2>&1 || { fail "meson install: $(tail -3 "$work/install.log")"; exit 1; }
prefix=$(meson introspect "$build" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
sysconfdir=$(meson introspect "$build" --buildoptions | python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="sysconfdir"))')
case "$sysconfdir" in /*) ;; *) sysconfdir="$prefix/$sysconfdir" ;; esac
gatehouse="$dest$prefix/bin/gatehouse"
units="$dest$prefix/lib/systemd/system"
for f in "$gatehouse" "$units/gatehouse-gateway.service" "$units/gatehouse-server.service" "$units/gatehouse-agent.service" \
  "$dest$prefix/lib/sysusers.d/gatehouse.conf" "$dest$prefix/lib/tmpfiles.d/gatehouse.conf" \
  "$dest$prefix/share/man/man8/gatehouse.8" "$dest$sysconfdir/gatehouse/gateway.toml" \
  "$dest$sysconfdir/gatehouse/server.toml" "$dest$sysconfdir/gatehouse/agent.toml"; do
  [ -f "$f" ] || fail "not installed: ${f#$dest}"
  ok
done
[ "$(stat -c %a "$dest$sysconfdir/gatehouse/server.toml")" = 640 ] || fail "configs are not 0640"
ok

# Without -c the installed binary reads its role's file from the installed config folder.
"$gatehouse" check-config --role gateway >"$work/default.out" 2>&1
[ $? = 78 ] && grep -q "^$sysconfdir/gatehouse/gateway.toml: cannot open config file" "$work/default.out" ||
  fail "check-config without -c: want $sysconfdir/gatehouse/gateway.toml named: $(cat "$work/default.out")"
ok

# Bash completion: subcommands, and each one's flags from its own --help.
completion="$dest$prefix/share/bash-completion/completions/gatehouse"
[ -f "$completion" ] || fail "not installed: ${completion#$dest}"
ok
complete_words() {  # complete_words WORD...: what completing the last word offers
  bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _gatehouse; echo "${COMPREPLY[*]}"' _ "$completion" "$@"
}
[ "$(complete_words "$gatehouse" check-)" = check-config ] || fail "completion of a subcommand: $(complete_words "$gatehouse" check-)"
ok
[ "$(complete_words "$gatehouse" check-config --d)" = --dump ] || fail "completion of a flag: $(complete_words "$gatehouse" check-config --d)"
ok

# The units verify (their binary path pointed at the installed one).
mkdir -p "$work/units"
for unit in "$units"/gatehouse-*.service; do
  sed "s|$prefix/bin/gatehouse|$gatehouse|g" "$unit" >"$work/units/$(basename "$unit")"
done
systemd-analyze verify --man=no "$work/units"/*.service >"$work/verify.log" 2>&1 || fail "systemd-analyze verify: $(cat "$work/verify.log")"
ok
for line in Type=notify WatchdogSec= "RestartPreventExitStatus=78 69" "ExecStartPre=$prefix/bin/gatehouse check-config" \
  "ExecReload=$prefix/bin/gatehouse check-config" NoNewPrivileges=yes ProtectSystem=strict \
  CapabilityBoundingSet=CAP_SYS_NICE LimitMEMLOCK= LimitNOFILE= ReadWritePaths=/var/lib/gatehouse; do
  grep -q "^$line" "$units/gatehouse-gateway.service" || fail "the gateway's unit lacks $line"
  ok
done
grep -q -- "--journal --follow" "$units/gatehouse-agent.service" || fail "the agent's unit does not send the journal"
ok

# The user and the folders, made by systemd's own tools in a scratch root.
scratch="$work/root"
mkdir -p "$scratch/etc"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$scratch/etc/passwd"
printf 'root:x:0:\n' >"$scratch/etc/group"
systemd-sysusers --root="$scratch" "$dest$prefix/lib/sysusers.d/gatehouse.conf" >/dev/null 2>&1 || fail "systemd-sysusers"
grep -q '^gatehouse:x:[0-9]*:[0-9]*:gatehouse monitoring gateway:/var/lib/gatehouse:/usr/sbin/nologin$' "$scratch/etc/passwd" ||
  fail "the gatehouse user: $(cat "$scratch/etc/passwd")"
ok
systemd-tmpfiles --root="$scratch" --create "$dest$prefix/lib/tmpfiles.d/gatehouse.conf" >/dev/null 2>&1 || fail "systemd-tmpfiles"
uid=$(awk -F: '$1 == "gatehouse" { print $3 }' "$scratch/etc/passwd")
[ "$(stat -c '%a %u' "$scratch/var/lib/gatehouse")" = "750 $uid" ] || fail "/var/lib/gatehouse: $(stat -c '%a %u' "$scratch/var/lib/gatehouse")"
ok

# The notify protocol, from the installed binary, as systemd would see it.
pki "$work/pki" server:ms1.example.test
server_config 0 reject >"$work/server.toml"
python3 - "$work/notify" >"$work/notified" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
try:
    while True:
        message = s.recv(4096).decode()
        print(message.replace("\n", " | "), flush=True)
        if message.startswith("STOPPING=1"):
            break
except socket.timeout:
    print("timeout", flush=True)
PY
listener=$!
pids+=("$listener")
for _ in $(seq 50); do [ -S "$work/notify" ] && break; sleep 0.1; done
NOTIFY_SOCKET="$work/notify" WATCHDOG_USEC=1000000 start server "$work/server.toml" "$work/server.log" || exit 1
server_pid=$started_pid
# Every thread but the main one (which waits for them in sigtimedwait) blocks
# SIGHUP, SIGINT and SIGTERM (SigBlk bits 0, 1, 14): a stop signal reaching a
# thread that does not would kill the process without its clean stop (no
# STOPPING=1, no GOAWAY) whenever the main thread is busy between waits.
for status in /proc/"$server_pid"/task/*/status; do
  [ "$status" = "/proc/$server_pid/task/$server_pid/status" ] && continue
  blocked=$(awk '/^SigBlk:/ { print $2 }' "$status")
  [ $((0x$blocked & 0x4003)) = $((0x4003)) ] || fail "thread ${status%/status} leaves stop signals unblocked (SigBlk $blocked)"
done
ok
sleep 2.5
kill -HUP "$server_pid"
sleep 1
kill -TERM "$server_pid"
wait_exit "$server_pid" 10
wait "$listener"
python3 - "$work/notified" <<'PY' || fail "the notify protocol: $(cat "$work/notified")"
import sys
lines = open(sys.argv[1]).read().splitlines()
assert lines[0].startswith("READY=1 | STATUS=serving on 127.0.0.1:"), lines
assert sum(line == "WATCHDOG=1" for line in lines) >= 4, lines  # every half second, from the shards' turns
reload = lines.index("RELOADING=1")
assert lines[reload + 1].startswith("READY=1"), lines
assert lines[-1] == "STOPPING=1", lines
PY
ok
echo "install: $(find "$dest" -type f | wc -l) files; notify: $(grep -c WATCHDOG "$work/notified") watchdog pings in ~3.5 s"
echo "install: $checks checks, $failures failures"
[ "$failures" -eq 0 ]

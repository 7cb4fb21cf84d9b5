#!/usr/bin/env bash
# SIGHUP on real processes changes what it promises to change, live, and
# nothing else: a server's handshake deadline and approval mode; a gateway's
# failover timings and [[parents]], an agent's [[gateways]], with every event
# of an agent sending through both moves acknowledged; a changed listen is
# named as taking a restart and the running value stays; a file that became
# invalid is refused with the old config kept.
# usage: reload_test.sh GATEHOUSE SOURCE_ROOT
set -u
gatehouse=$1
root=$2
work=$(mktemp -d /tmp/gatehouse-e2e-reload-XXXXXX)
. "$root/tests/e2e/lib.sh"

agents=1
pki "$work/pki" server:ms1.example.test server:ms2.example.test gateway:gw1.example.test agent:web1.example.test \
  agent:web2.example.test

# closed_after_ms PORT: a TCP client that never starts TLS; how long until the server closes it.
closed_after_ms() {
  python3 - "$1" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(30)
started = time.monotonic()
try:
    s.recv(1)
except OSError:
    pass
print(int((time.monotonic() - started) * 1000))
PY
}
# hup PID LOG: SIGHUP, then wait for the next 30003 or 30005 line in LOG.
reread_lines() { grep -cE '"event":(30003|30005)' "$hup_log"; }
reread_logged() { [ "$(reread_lines)" -gt "$hup_before" ]; }
hup() {
  hup_log=$2
  hup_before=$(reread_lines)
  kill -HUP "$1"
  wait_for 10 reread_logged || fail "no reload line after SIGHUP in $hup_log"
}

# 1. A server: handshake_timeout_ms 3000, then 500 after a SIGHUP.
server_config 0 reject "handshake_timeout_ms = 3000" >"$work/server.toml"
start server "$work/server.toml" "$work/server.log" || exit 1
server_pid=$started_pid
server_port=$port
took=$(closed_after_ms "$server_port")
[ "$took" -ge 2500 ] || fail "a silent client before the reload: closed after $took ms, want ~3000"
ok
sed -i 's/^handshake_timeout_ms = 3000$/handshake_timeout_ms = 500/' "$work/server.toml"
hup "$server_pid" "$work/server.log"
grep -q '"event":30005.*"msg":"config re-read: applied \[runtime\] handshake_timeout_ms"' "$work/server.log" ||
  fail "the reload names the applied key and nothing for a restart: $(grep '"event":30005' "$work/server.log" | tail -1)"
ok
took=$(closed_after_ms "$server_port")
[ "$took" -lt 2000 ] || fail "a silent client after the reload: closed after $took ms, want ~500"
ok

# 2. Approval mode: an unapproved agent is refused under "reject", and gets
# in once a reload says "auto"; its events are stored once.
cat >"$work/web1.toml" <<CONF
name = "web1.example.test"
queue_dir = "$work/queue-web1"
[[gateways]]
address = "127.0.0.1:$server_port"
name = "ms1.example.test"
[failover]
backoff_initial_ms = 200
backoff_max_ms = 400
[tls]
cert = "$work/pki/web1.example.test.crt"
key = "$work/pki/web1.example.test.key"
ca = "$work/pki/ca.crt"
CONF
start agent "$work/web1.toml" "$work/web1.log" --synthetic 200 --count 400
agent_pid=$started_pid
refused() { grep -q '"event":20070' "$work/web1.log"; }
expect "the unapproved agent is refused under reject" wait_for 15 refused
sed -i 's/^agents = "reject"$/agents = "auto"/' "$work/server.toml"
hup "$server_pid" "$work/server.log"
grep -q '"event":30005.*applied \[approval\] agents' "$work/server.log" || fail "the reload names [approval] agents"
ok
wait_exit "$agent_pid" 30
[ "$rc" = 0 ] || fail "the agent after the approval mode changed: exit $rc ($(tail -2 "$work/web1.log"))"
ok
stored=$(json_field "$(stats "$work/server.toml")" events)
[ "$stored" = 400 ] || fail "events stored after the reload: $stored, want 400"
ok

# 3. What takes a restart is named, and the running value stays: the server
# goes on listening on its port.
sed -i "s/^listen = \"127.0.0.1:0\"$/listen = \"127.0.0.1:1\"/" "$work/server.toml"
hup "$server_pid" "$work/server.log"
grep -q '"event":30005.*"restart_needed":"listen"' "$work/server.log" || fail "a changed listen is named for a restart"
ok
took=$(closed_after_ms "$server_port")
[ "$took" -lt 2000 ] || fail "the server still listens on its port after the restart-only change"
ok
echo 'bogus = 1' >>"$work/server.toml"
hup "$server_pid" "$work/server.log"
grep -q '"event":30003.*the changed config is refused, the running one stays: .*bogus: unknown key' "$work/server.log" ||
  fail "a broken file on SIGHUP is refused (30003)"
ok
sed -i '/^bogus = 1$/d' "$work/server.toml"  # the tools read it below

# 4. A gateway's [[parents]] and an agent's [[gateways]] change live, and
# nothing is lost on the way: a second server ms2 and a second gateway process
# (gw1's certificate on another port); the agent's events flow through the
# move of both lists.
server_config 0 auto | sed -e 's|^name = "ms1.example.test"|name = "ms2.example.test"|' \
  -e "s|$work/data|$work/data2|" -e 's|ms1.example.test\.|ms2.example.test.|g' >"$work/server2.toml"
start server "$work/server2.toml" "$work/server2.log" || exit 1
server2_pid=$started_pid
server2_port=$port
for config in server.toml server2.toml; do
  quiet "$gatehouse" approve -c "$work/$config" gateway gw1.example.test --action create
done
gateway_config 127.0.0.1:0 "127.0.0.1:$server_port" ms1.example.test "[failover]" "parent_silence_ms = 6000" >"$work/gateway.toml"
start gateway "$work/gateway.toml" "$work/gateway.log" || exit 1
gateway_pid=$started_pid
gateway_port=$port
gateway_config 127.0.0.1:0 "127.0.0.1:$server2_port" ms2.example.test >"$work/gateway2.toml"
start gateway "$work/gateway2.toml" "$work/gateway2.log" || exit 1
gateway2_pid=$started_pid
gateway2_port=$port
# web2: web1 is bound to direct connection on ms1 by now (it came direct).
sed -e "s|^address = \"127.0.0.1:$server_port\"|address = \"127.0.0.1:$gateway_port\"|" \
  -e 's|^name = "ms1.example.test"|name = "gw1.example.test"|' -e 's|web1|web2|g' "$work/web1.toml" >"$work/web2.toml"
start agent "$work/web2.toml" "$work/web2.log" --synthetic 200 --count 3000
agent_pid=$started_pid
via_ms1() { grep -q '"event":30050.*"parent":"ms1.example.test"' "$work/gateway.log"; }
expect "the gateway's uplinks reach ms1" wait_for 10 via_ms1
agent_up() { grep -q '"event":30050' "$work/web2.log"; }
expect "the agent reaches the gateway" wait_for 10 agent_up
sleep 2  # events flow through gw1 to ms1
gateway_config 127.0.0.1:0 "127.0.0.1:$server2_port" ms2.example.test "[failover]" "parent_silence_ms = 9000" >"$work/gateway.toml"
hup "$gateway_pid" "$work/gateway.log"
grep -q '"event":30005.*"msg":"config re-read: applied \[failover\] parent_silence_ms, \[\[parents\]\]"' "$work/gateway.log" ||
  fail "gateway reload: $(grep '"event":30005' "$work/gateway.log" | tail -1)"
ok
via_ms2() { grep -q '"event":30050.*"parent":"ms2.example.test"' "$work/gateway.log"; }
expect "after the reload the gateway's uplinks reach ms2" wait_for 10 via_ms2
sleep 1
sed -i "s|^address = \"127.0.0.1:$gateway_port\"|address = \"127.0.0.1:$gateway2_port\"|" "$work/web2.toml"
hup "$agent_pid" "$work/web2.log"
grep -q '"event":30005.*"msg":"config re-read: applied \[\[gateways\]\]"' "$work/web2.log" ||
  fail "agent reload: $(grep '"event":30005' "$work/web2.log" | tail -1)"
ok
via_gateway2() { grep -q "\"event\":30050.*\"address\":\"127.0.0.1:$gateway2_port\"" "$work/web2.log"; }
expect "after the reload the agent reaches the second gateway" wait_for 10 via_gateway2
wait_exit "$agent_pid" 60
[ "$rc" = 0 ] || fail "the agent through both moves: exit $rc, want 0 (every event acknowledged)"
ok
on_ms1=$(json_field "$(stats "$work/server.toml")" events)
on_ms2=$(json_field "$(stats "$work/server2.toml")" events)
[ "$on_ms2" -gt 0 ] || fail "no event reached ms2 after the moves"
ok
# ms1 holds section 2's 400 and what came before the moves; two islands, so an
# event ms1 stored but whose ACK the move cut short is stored by ms2 as well.
[ $((on_ms1 - 400 + on_ms2)) -ge 3000 ] || fail "events stored: ms1 $on_ms1 (400 before) + ms2 $on_ms2, want at least 3000"
ok
kill -0 "$gateway_pid" 2>/dev/null || fail "the gateway runs on after its reload"
ok
kill -TERM "$gateway_pid" "$gateway2_pid" "$server_pid" "$server2_pid"
for pid in "$gateway_pid" "$gateway2_pid" "$server_pid" "$server2_pid"; do
  wait_exit "$pid" 10
  [ "$rc" = 0 ] || fail "clean stop after the reloads: pid $pid exit $rc"
  ok
done
echo "reload: $checks checks, $failures failures"
[ "$failures" -eq 0 ]

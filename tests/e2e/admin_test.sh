#!/usr/bin/env bash
# The admin endpoint of every role, as an operator and a monitoring system
# use it, on real processes: /metrics valid for promtool (Debian's
# prometheus) with the counts of what flowed, /health, /ready and
# `gatehouse status` following the gateway's uplinks and the agent's session
# (a parent down, killed with SIGKILL), hostile requests refused without
# disturbing anyone, and a port already taken refusing the start.
# usage: admin_test.sh GATEHOUSE SOURCE_ROOT
set -u
gatehouse=$1
root=$2
work=$(mktemp -d /tmp/gatehouse-e2e-admin-XXXXXX)
. "$root/tests/e2e/lib.sh"

command -v promtool >/dev/null || { echo "promtool not found: install prometheus (tools/bootstrap)"; exit 1; }
agents=3
events=500
specs=(server:ms1.example.test gateway:gw1.example.test)
for i in $(seq -w 1 $agents); do specs+=("agent:web$i.example.test"); done
pki "$work/pki" "${specs[@]}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server_port=$(free_port)
gateway_port=$(free_port)
server_admin=$(free_port)
gateway_admin=$(free_port)
agent_admin=$(free_port)
server_config "$server_port" auto | sed "s|^admin = .*|admin = { listen = \"127.0.0.1:$server_admin\" }|" >"$work/server.toml"
cat >"$work/gateway.toml" <<CONF
name = "gw1.example.test"
listen = "127.0.0.1:$gateway_port"
[admin]
listen = "127.0.0.1:$gateway_admin"
[[parents]]
address = "127.0.0.1:$server_port"
name = "ms1.example.test"
[tls]
cert = "$work/pki/gw1.example.test.crt"
key = "$work/pki/gw1.example.test.key"
ca = "$work/pki/ca.crt"
[runtime]
shards = 2
connections_per_shard = 256
[failover]
backoff_max_ms = 500
[log]
level = "debug"
CONF
fleet_configs "$gateway_port"
printf '[admin]\nlisten = "127.0.0.1:%s"\n' "$agent_admin" >>"$work/web1.toml"

# http PORT PATH: the status code on the first line, then the body.
http() {
  python3 - "$1" "$2" <<'PY'
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen("http://127.0.0.1:%s%s" % (sys.argv[1], sys.argv[2]), timeout=5)
    code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
sys.stdout.write("%d\n%s" % (code, body.decode()))
PY
}
code_of() { http "$1" "$2" | head -1; }
metric() {  # metric PORT SAMPLE: the sample's value in /metrics
  http "$1" /metrics | awk -v s="$2" '$1 == s { print $2 }'
}
status_exit() {  # status_exit CONFIG WANT: gatehouse status exits WANT
  "$gatehouse" status --config "$1" >"$work/status.out" 2>&1
  [ "$?" = "$2" ]
}

# 1. A gateway whose parent is not there yet: alive, not ready; status exits 1 and says why.
#    Its stderr is "the journal" (JOURNAL_STREAM names it): lines carry <N> priorities.
touch "$work/gateway.log"
JOURNAL_STREAM=$(stat -c '%d:%i' "$work/gateway.log") start gateway "$work/gateway.toml" "$work/gateway.log" || exit 1
gateway_pid=$started_pid
[ "$(code_of "$gateway_admin" /health)" = 200 ] || fail "gateway /health while its parent is down"
ok
[ "$(code_of "$gateway_admin" /ready)" = 503 ] || fail "gateway /ready while its parent is down: want 503"
ok
expect "gatehouse status exits 1 (not ready)" status_exit "$work/gateway.toml" 1
grep -q "not_ready_reason: no session with any parent is up" "$work/status.out" || fail "status says why: $(cat "$work/status.out")"
ok

# 2. The admin port is taken: a second gateway refuses to start (30080), the first goes on.
sed "s|^listen = \"127.0.0.1:$gateway_port\"|listen = \"127.0.0.1:0\"|" "$work/gateway.toml" >"$work/gateway-clash.toml"
"$gatehouse" gateway --config "$work/gateway-clash.toml" 2>"$work/clash.log" &
clash_pid=$!
pids+=("$clash_pid")
wait_exit "$clash_pid" 10
[ "$rc" = 75 ] || fail "a gateway whose admin port is taken: exit $rc, want 75 (EX_TEMPFAIL: a restart may succeed)"
ok
grep -q "\"event\":30080.*127.0.0.1:$gateway_admin: Address already in use" "$work/clash.log" ||
  fail "the clash is logged as 30080 with the address: $(tail -2 "$work/clash.log")"
ok
[ "$(code_of "$gateway_admin" /health)" = 200 ] || fail "the first gateway's endpoint after the clash"
ok
# Its data port taken (the admin endpoint off): 75 as well, the address named.
sed "s|^listen = \"127.0.0.1:$gateway_admin\"|listen = \"\"|" "$work/gateway.toml" >"$work/gateway-clash2.toml"
"$gatehouse" gateway --config "$work/gateway-clash2.toml" 2>"$work/clash2.log" &
clash_pid=$!
pids+=("$clash_pid")
wait_exit "$clash_pid" 10
[ "$rc" = 75 ] || fail "a gateway whose listen port is taken: exit $rc, want 75"
ok
grep -q "127.0.0.1:$gateway_port: Address already in use (another process holds the port)" "$work/clash2.log" ||
  fail "the listen clash names the address: $(tail -2 "$work/clash2.log")"
ok

# 3. The server comes: the gateway turns ready; agents send; the counts match.
start server "$work/server.toml" "$work/server.log" || exit 1
server_pid=$started_pid
expect "approve the gateway" quiet "$gatehouse" approve --config "$work/server.toml" gateway gw1.example.test --action create
expect "the gateway turns ready" wait_for 20 status_exit "$work/gateway.toml" 0
expect "the server is ready" status_exit "$work/server.toml" 0
start_agents "$events" 2000
expect "$agents agents × $events events stored" wait_agents 60
want=$((agents * events))
[ "$(metric "$server_admin" gatehouse_events_in_total)" = "$want" ] || fail "server events in: $(metric "$server_admin" gatehouse_events_in_total), want $want"
ok
[ "$(metric "$server_admin" gatehouse_events_acked_total)" = "$want" ] || fail "server events acked: want $want"
ok
[ "$(metric "$server_admin" gatehouse_store_events)" = "$want" ] || fail "server store events: want $want"
ok
[ "$(metric "$gateway_admin" gatehouse_events_out_total)" = "$want" ] || fail "gateway events out: want $want"
ok
[ "$(metric "$server_admin" 'gatehouse_sessions{role="gateway",auth="cert"}')" = 2 ] || fail "server: 2 gateway uplinks"
ok
[ "$(metric "$gateway_admin" 'gatehouse_parent_links{parent="ms1.example.test",state="up"}')" = 2 ] || fail "gateway: 2 uplinks up"
ok
[ "$(metric "$server_admin" gatehouse_store_commit_seconds_count)" -gt 0 ] || fail "server: commit latency observed"
ok
# The server's data is its own: files 0640, folders 0750 (nothing for others).
others=$(find "$work/data" -perm /o+rwx | head -3)
[ -z "$others" ] || fail "data readable by others: $others $(stat -c '%a %n' $others)"
ok

# 4. An agent with an endpoint (opt-in) while it runs: ready, its queue shown.
start agent "$work/web1.toml" "$work/web1-admin.log" --synthetic 200
agent_pid=$started_pid
agent_ready() { [ "$(code_of "$agent_admin" /ready)" = 200 ]; }
expect "the agent is ready once its session is up" wait_for 20 agent_ready
[ "$(metric "$agent_admin" 'gatehouse_parent_links{parent="gw1.example.test",state="up"}')" = 1 ] || fail "agent: its session up"
ok
[ -n "$(metric "$agent_admin" gatehouse_queue_events)" ] || fail "agent: queue depth exposed"
ok

# 5. Every role's /metrics passes promtool.
for role in server:$server_admin gateway:$gateway_admin agent:$agent_admin; do
  http "${role#*:}" /metrics | tail -n +2 >"$work/${role%%:*}.prom"
  promtool check metrics <"$work/${role%%:*}.prom" >"$work/promtool.out" 2>&1 ||
    fail "promtool on the ${role%%:*}'s /metrics: $(head -5 "$work/promtool.out")"
  ok
done
echo "promtool: $(wc -l <"$work/server.prom") server, $(wc -l <"$work/gateway.prom") gateway, $(wc -l <"$work/agent.prom") agent lines valid"

# 6. status --json is one JSON object with what an operator looks at first.
"$gatehouse" status --config "$work/gateway.toml" --json >"$work/status.json" || fail "status --json of the ready gateway"
python3 - "$work/status.json" <<'PY' || fail "status --json content: $(cat "$work/status.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["role"] == "gateway" and s["ready"] is True and s["name"] == "gw1.example.test", s
assert s["parents"][0]["name"] == "ms1.example.test" and s["parents"][0]["up"] == 2, s
assert s["certificate_expires_in_s"] > 86400, s
assert any(p["event"] == 21016 for p in s["recent_problems"]), s  # the parent was down at first
PY
ok

# 7. Hostile requests: refused with their status and 30081; the endpoint answers the next one.
raw() {  # raw PORT BYTES: what the endpoint answers to BYTES (its status line)
  python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=8)
s.sendall(sys.argv[2].encode().decode("unicode_escape").encode("latin-1"))
print(s.recv(200).decode(errors="replace").split("\r\n")[0])
PY
}
[ "$(raw "$gateway_admin" 'hello\r\n\r\n')" = "HTTP/1.1 400 Bad Request" ] || fail "not HTTP: want 400"
ok
[ "$(raw "$gateway_admin" 'POST /metrics HTTP/1.1\r\n\r\n')" = "HTTP/1.1 405 Method Not Allowed" ] || fail "POST: want 405"
ok
[ "$(raw "$gateway_admin" "GET /x HTTP/1.1\r\nX: $(head -c 9000 /dev/zero | tr '\0' a)\r\n\r\n")" = "HTTP/1.1 431 Request Header Fields Too Large" ] ||
  fail "9,000 bytes of headers: want 431"
ok
[ "$(code_of "$gateway_admin" /nowhere)" = 404 ] || fail "an unknown path: want 404"
ok
grep -q '"event":30081.*"status":400' "$work/gateway.log" || fail "the refusal is logged as 30081"
ok
# Idle connections (a slow or hostile client) do not hold up a scrape; one
# that never finishes its request is answered 408 after 5 s.
python3 - "$gateway_admin" <<'PY' >"$work/slow.out" 2>&1 &
import socket, sys, time, urllib.request
port = int(sys.argv[1])
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
idle[0].sendall(b"GET /metrics HTTP/1.1\r\n")  # never finished
started = time.monotonic()
assert urllib.request.urlopen("http://127.0.0.1:%d/health" % port, timeout=3).status == 200
print("health_ms %d" % ((time.monotonic() - started) * 1000))
idle[0].settimeout(8)
print(idle[0].recv(100).decode().split("\r\n")[0])
PY
slow_pid=$!
wait_exit "$slow_pid" 15
grep -q "^health_ms" "$work/slow.out" || fail "/health with 4 idle connections open: $(cat "$work/slow.out")"
ok
grep -q "^HTTP/1.1 408 Request Timeout" "$work/slow.out" || fail "an unfinished request: want 408: $(cat "$work/slow.out")"
ok

# 8. Logs: under the journal every line has the priority of its level; the
#    gateway logged its agents' sessions (opened, closed with duration and
#    counts) and, at level debug, the admin requests it served.
python3 - "$work/gateway.log" <<'PY' || fail "journal priorities: $(head -c 600 "$work/gateway.log")"
import json, sys
want = {"debug": "<7>", "info": "<6>", "warning": "<4>", "error": "<3>"}
lines = open(sys.argv[1]).read().splitlines()
assert lines, "no lines"
for line in lines:
    prefix, body = line[:3], line[3:]
    assert want[json.loads(body)["level"]] == prefix, line
assert any('"level":"error"' in line for line in lines) and any('"level":"debug"' in line for line in lines)
PY
ok
grep -q '"event":30033.*"name":"web1.example.test","role":"agent","auth":"cert"' "$work/gateway.log" ||
  fail "session opened (30033) at the gateway"
ok
grep -qE '"event":30034.*"name":"web2.example.test","duration_ms":[0-9]+,"frames_in":[1-9][0-9]*,' "$work/gateway.log" ||
  fail "session closed (30034) with duration and counts"
ok
grep -q '"event":30082.*"path":"/metrics","status":200' "$work/gateway.log" || fail "debug: admin requests (30082)"
ok
grep -q '^{' "$work/server.log" || fail "the server (not under the journal) logs plain JSON lines"
ok

# 8b. SIGKILL the gateway: the agent is not ready any more; status says so.
kill -KILL "$gateway_pid"
agent_not_ready() { [ "$(code_of "$agent_admin" /ready)" = 503 ]; }
expect "the agent turns not ready without its gateway" wait_for 20 agent_not_ready
expect "the server stays ready" status_exit "$work/server.toml" 0
kill -TERM "$agent_pid"
wait_exit "$agent_pid" 10
expect "gatehouse status of a stopped instance exits 69" status_exit "$work/gateway.toml" 69

# SIGHUP re-reads the config: the log level changes live, a changed
# [runtime] is named as taking a restart; a broken file is refused and the
# running config stays.
printf '[log]\nlevel = "debug"\n' >>"$work/server.toml"
sed -i 's/^shards = 2$/shards = 3/' "$work/server.toml"
kill -HUP "$server_pid"
reloaded() { grep -q '"event":30005.*applied \[log\] level; .*"restart_needed":"\[runtime\]"' "$work/server.log"; }
expect "SIGHUP: the level applied live, [runtime] named for a restart (30005)" wait_for 10 reloaded
code_of "$server_admin" /health >/dev/null
debug_on() { grep -q '"level":"debug","event":30082.*"path":"/health"' "$work/server.log"; }
expect "debug lines from then on" wait_for 5 debug_on
echo 'bogus = 1' >>"$work/server.toml"
kill -HUP "$server_pid"
refused_reload() { grep -q '"event":30003.*the changed config is refused, the running one stays: .*bogus: unknown key' "$work/server.log"; }
expect "a broken config on SIGHUP is refused (30003)" wait_for 10 refused_reload
[ "$(code_of "$server_admin" /ready)" = 200 ] || fail "the server runs on, ready, after the refused reload"
ok

# A clean stop logs as one: no warning or error after 30002, and "stopped cleanly".
kill -TERM "$server_pid"
wait_exit "$server_pid" 10
[ "$rc" = 0 ] || fail "the server's clean stop exits $rc"
ok
sed -n '/"event":30002/,$p' "$work/server.log" | grep -E '"level":"(warning|error)"' && fail "warnings in a clean stop"
ok
grep -q '"msg":"stopped cleanly"' "$work/server.log" || fail "the clean stop is logged"
ok
echo "admin: $checks checks, $failures failures"
[ "$failures" -eq 0 ]

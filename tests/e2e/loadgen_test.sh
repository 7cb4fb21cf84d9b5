#!/usr/bin/env bash
# 1,000 agents (half certificate, half Kerberos against a real KDC) through a
# gateway to a server, 100 events each, simulated by bench/loadgen: the store
# holds exactly 100,000 events, none twice, and the server sees
# shards × [uplink] connections_per_shard uplinks, not 1,000. Then loadgen's
# storm (every session dropped at once and re-established, a steady probe
# streaming through it) and its failover (the primary gateway killed with
# SIGKILL mid-stream: every agent flows again through the second, every
# event stored once). Counts are asserted, never speed.
# usage: loadgen_test.sh GATEHOUSE LOADGEN SOURCE_ROOT
set -u
gatehouse=$1
loadgen=$2
root=$3
work=$(mktemp -d /tmp/gatehouse-e2e-lg-XXXXXX)
. "$root/tests/e2e/lib.sh"
if ! command -v krb5kdc >/dev/null; then echo "SKIP: no krb5kdc (tools/bootstrap installs it)"; exit 77; fi

pki "$work/pki" server:ms1.example.test gateway:gw1.example.test gateway:gw2.example.test
"$root/tests/krb/kdc" start "$work/kdc" gatehouse/gw1.example.test >/dev/null
stop_kdc() { "$root/tests/krb/kdc" stop "$work/kdc"; cleanup; }
trap stop_kdc EXIT
"$root/bench/loadgen/kerberos-agents" "$work/kdc" 1000 >/dev/null
export KRB5_CONFIG="$work/kdc/krb5.conf" KRB5RCACHEDIR="$work/kdc"

server_config "0" "auto" >"$work/server.toml"
start server "$work/server.toml" "$work/server.log" || exit 1
server_port=$port
expect "approve the gateway" quiet "$gatehouse" approve --config "$work/server.toml" gateway gw1.example.test --action create --tier dmz
cat >"$work/gateway.toml" <<CONF
name = "gw1.example.test"
listen = "127.0.0.1:0"
admin = { listen = "127.0.0.1:0" }  # the admin endpoint on a free port
[[parents]]
address = "127.0.0.1:$server_port"
name = "ms1.example.test"
[uplink]
connections_per_shard = 2
[tls]
cert = "$work/pki/gw1.example.test.crt"
key = "$work/pki/gw1.example.test.key"
ca = "$work/pki/ca.crt"
[kerberos]
keytab = "$work/kdc/gw1.keytab"
[runtime]
shards = 2
connections_per_shard = 4096
CONF
sleep 1  # the approval reaches the server within a second
start gateway "$work/gateway.toml" "$work/gateway.log" || exit 1
gateway_pid=$started_pid
gateway_port=$port
expect "the gateway's uplinks are up" wait_for 10 bash -c "[ \$(grep -c '\"event\":30050' '$work/gateway.log') -ge 4 ]"

report=$("$loadgen" --target "127.0.0.1:$gateway_port" --agents 1000 --auth mixed --certs "$work/pki" \
           --keytab "$work/kdc/loadgen-agents" --events 100 --rate max --ramp 2 --gateway-pid "$gateway_pid" \
           2>"$work/loadgen.err")
expect "loadgen completes: $report" grep -q '"complete":true' <<<"$report"
[ "$(json_field "$report" sessions_established)" -ge 1000 ] || fail "sessions: $report"
ok
s=$(stats "$work/server.toml")
[ "$(json_field "$s" events)" = 100000 ] && [ "$(json_field "$s" agents)" = 1000 ] ||
  fail "want 100,000 events from 1,000 agents, have $s"
ok
uplinks=$(ss -Htn state established "( dport = :$server_port )" | wc -l)
[ "$uplinks" = 4 ] || fail "want 4 uplinks (2 shards × 2), see $uplinks"
ok
echo "1,000 agents (500 cert, 500 Kerberos) × 100 events: $s over $uplinks uplinks"
echo "loadgen: $report"

# The storm: 280 sessions dropped at once come back; 20 steady ones stream on.
report=$("$loadgen" --target "127.0.0.1:$gateway_port" --agents 300 --steady 20 --steady-rate 20 --rate 1 --certs "$work/pki" \
           --prefix storm --shards 2 --ramp 1 --warmup 1 --storm-at 3 --duration 6 2>"$work/loadgen-storm.err")
[ "$(json_field "$report" dropped)" = 280 ] && [ "$(json_field "$report" reestablished)" = 280 ] ||
  fail "the storm: want 280 sessions dropped and re-established: $report"
ok
grep -q '"handshake_failures":{}' <<<"$report" || fail "the storm: handshake failures: $report"
ok
echo "storm: $report"

# Failover: 200 agents list gw1 then gw2, 5,000 events each; gw1 is killed -9
# once a fifth is acknowledged (loadgen reports progress once a second).
sed -e 's/gw1\.example\.test/gw2.example.test/g' "$work/gateway.toml" >"$work/gateway2.toml"
expect "approve the second gateway" quiet "$gatehouse" approve --config "$work/server.toml" gateway gw2.example.test --action create --tier dmz
sleep 1
start gateway "$work/gateway2.toml" "$work/gateway2.log" || exit 1
gateway2_port=$port
before=$(json_field "$(stats "$work/server.toml")" events)
"$loadgen" --target "127.0.0.1:$gateway_port,127.0.0.1:$gateway2_port" --target-name gw1.example.test,gw2.example.test \
  --agents 200 --certs "$work/pki" --prefix failover --shards 2 --events 5000 --rate max --ramp 1 \
  >"$work/failover.json" 2>"$work/loadgen-failover.err" &
loadgen_pid=$!
pids+=("$loadgen_pid")
acked_a_fifth() { [ "$(grep -o 'acked [0-9]*' "$work/loadgen-failover.err" | tail -1 | cut -d' ' -f2)" -ge 200000 ] 2>/dev/null; }
expect "a fifth of the events acknowledged through gw1" wait_for 60 acked_a_fifth
kill -KILL "$gateway_pid"
wait "$loadgen_pid"
report=$(cat "$work/failover.json")
expect "loadgen completes after the failover: $report" grep -q '"complete":true' <<<"$report"
lost=$(json_field "$report" sessions_lost)
[ "${lost:-0}" -gt 0 ] && [ "$(json_field "$report" recovered)" = "$lost" ] ||
  fail "failover: every lost session must flow again: $report"
ok
after=$(json_field "$(stats "$work/server.toml")" events)
[ $((after - before)) = 1000000 ] || fail "failover: want 1,000,000 events stored once, have $((after - before))"
ok
echo "failover: $report"
echo "loadgen: $((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]

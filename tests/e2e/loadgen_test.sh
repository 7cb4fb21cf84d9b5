#!/usr/bin/env bash
# 1,000 agents (half certificate, half Kerberos against a real KDC) through a
# gateway to a server, 100 events each, simulated by bench/loadgen: the store
# holds exactly 100,000 events, none twice, and the server sees
# shards × [uplink] connections_per_shard uplinks, not 1,000.
# usage: loadgen_test.sh GATEHOUSE LOADGEN SOURCE_ROOT
set -u
gatehouse=$1
loadgen=$2
root=$3
work=$(mktemp -d /tmp/gatehouse-e2e-lg-XXXXXX)
. "$root/tests/e2e/lib.sh"
if ! command -v krb5kdc >/dev/null; then echo "SKIP: no krb5kdc (tools/bootstrap installs it)"; exit 77; fi

pki "$work/pki" server:ms1.example.test gateway:gw1.example.test
"$root/tests/krb/kdc" start "$work/kdc" gatehouse/gw1.example.test >/dev/null
stop_kdc() { "$root/tests/krb/kdc" stop "$work/kdc"; cleanup; }
trap stop_kdc EXIT
"$root/bench/loadgen/kerberos-agents" "$work/kdc" 1000 >/dev/null
export KRB5_CONFIG="$work/kdc/krb5.conf" KRB5RCACHEDIR="$work/kdc"

cat >"$work/server.toml" <<CONF
name = "ms1.example.test"
listen = "127.0.0.1:0"
data_dir = "$work/data"
[approval]
agents = "auto"
[tls]
cert = "$work/pki/ms1.example.test.crt"
key = "$work/pki/ms1.example.test.key"
ca = "$work/pki/ca.crt"
[runtime]
shards = 2
connections_per_shard = 256
CONF
start server "$work/server.toml" "$work/server.log" || exit 1
server_port=$port
expect "approve the gateway" quiet "$gatehouse" approve --config "$work/server.toml" gateway gw1.example.test --action create
cat >"$work/gateway.toml" <<CONF
name = "gw1.example.test"
listen = "127.0.0.1:0"
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
expect "the gateway's uplinks are up" wait_for 10 bash -c "[ \$(grep -c '\"event\":30050' '$work/gateway.log') -ge 4 ]"

report=$("$loadgen" --target "127.0.0.1:$port" --agents 1000 --auth mixed --certs "$work/pki" \
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
echo "loadgen: $((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]

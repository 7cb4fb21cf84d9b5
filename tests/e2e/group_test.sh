#!/usr/bin/env bash
# A management group: two servers (ms1, ms2) on one real PostgreSQL 15, a
# gateway with both as parents, agents through it. Approvals made through
# either server are in force on both; kill -9 of the server the gateway uses,
# mid-stream: it fails over to the other, and the database holds every event
# once (counted with SQL); restarted, the gateway fails back to it, still
# exactly once. The database's primary is killed under load and its
# synchronous standby promoted: every acknowledged event is there, none twice.
# An approval deleted through one server ends the agent's session on the other.
# usage: group_test.sh GATEHOUSE SOURCE_ROOT
set -u
gatehouse=$1
root=$2
work=$(mktemp -d /tmp/gatehouse-e2e-group-XXXXXX)
chmod 711 "$work"  # the database runs as "postgres" in a folder below
. "$root/tests/e2e/lib.sh"

agents=12
events=40000
specs=(server:ms1.example.test server:ms2.example.test gateway:gw1.example.test)
for i in $(seq -w 1 $agents); do specs+=("agent:web$i.example.test"); done
pki "$work/pki" "${specs[@]}"

"$root/tests/pg/postgres" start "$work/pg" >/dev/null || { fail "PostgreSQL did not start"; exit 1; }
exit_hooks+=("'$root/tests/pg/postgres' stop '$work/pg'")
"$root/tests/pg/postgres" standby "$work/pg-standby" "$work/pg" >/dev/null || { fail "the standby did not start"; exit 1; }
exit_hooks+=("'$root/tests/pg/postgres' stop '$work/pg-standby'")
# Both hosts: the servers (and psql) take whichever is the read-write primary.
dsn="host=$work/pg,$work/pg-standby port=$(cat "$work/pg/port"),$(cat "$work/pg-standby/port") user=gatehouse dbname=gatehouse target_session_attrs=read-write"
sql() { /usr/lib/postgresql/15/bin/psql -qAt -v ON_ERROR_STOP=1 "$dsn" -c "$1"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
group_server_config() {  # group_server_config NAME PORT
  cat <<CONF
name = "$1"
listen = "127.0.0.1:$2"
admin = { listen = "127.0.0.1:0" }  # the admin endpoint on a free port
data_dir = "$work/data-$1"
[approval]
agents = "review"
[store]
backend = "postgresql"
dsn = "$dsn"
[tls]
cert = "$work/pki/$1.crt"
key = "$work/pki/$1.key"
ca = "$work/pki/ca.crt"
[runtime]
shards = 2
connections_per_shard = 256
CONF
}
ms1_port=$(free_port)
ms2_port=$(free_port)
gateway_port=$(free_port)
group_server_config ms1.example.test "$ms1_port" >"$work/ms1.toml"
group_server_config ms2.example.test "$ms2_port" >"$work/ms2.toml"
cat >"$work/gateway.toml" <<CONF
name = "gw1.example.test"
listen = "127.0.0.1:$gateway_port"
admin = { listen = "127.0.0.1:0" }  # the admin endpoint on a free port
[[parents]]
address = "127.0.0.1:$ms1_port"
name = "ms1.example.test"
[[parents]]
address = "127.0.0.1:$ms2_port"
name = "ms2.example.test"
[failover]
failback_s = 1
[tls]
cert = "$work/pki/gw1.example.test.crt"
key = "$work/pki/gw1.example.test.key"
ca = "$work/pki/ca.crt"
[runtime]
shards = 2
connections_per_shard = 1024
CONF
fleet_configs "$gateway_port"


# 1. Both servers make (or find) the schema; the gateway, approved through
#    ms2 while it is refused by ms1, is let in by ms1 at its next attempt.
start server "$work/ms1.toml" "$work/ms1.log" || exit 1
ms1_pid=$started_pid
start server "$work/ms2.toml" "$work/ms2.log" || exit 1
ms2_pid=$started_pid
expect "the schema is made once (30072 from one server)" \
  test "$(cat "$work/ms1.log" "$work/ms2.log" | grep -c '"event":30072')" = 1
start gateway "$work/gateway.toml" "$work/gateway.log" || exit 1
gateway_pid=$started_pid
expect "ms1 refuses the unapproved gateway (20000)" wait_for 10 grep -q '"event":20000.*gw1.example.test' "$work/ms1.log"
expect "approve the gateway through ms2" \
  quiet "$gatehouse" approve --config "$work/ms2.toml" gateway gw1.example.test --action create --tier dmz
for i in $(seq -w 1 $agents); do
  quiet "$gatehouse" approve --config "$work/ms2.toml" agent "web$i.example.test" --action create
done
# Refused by ms1, the gateway went on to ms2; approved, it comes back to its
# first parent (failback) if ms2 took it meanwhile.
expect "the gateway is on ms1, approved through ms2" \
  wait_for 30 grep -q '"event":30050.*ms1.example.test' "$work/gateway.log"
expect "ms1 and ms2 list the same approvals" \
  test "$("$gatehouse" approve --config "$work/ms1.toml" list)" = "$("$gatehouse" approve --config "$work/ms2.toml" list)"

# 2. kill -9 of ms1 mid-stream: the gateway fails over to ms2; ms1 restarted,
#    the gateway fails back to it; every event is in the database once.
start_agents "$events" 2000
stored() { sql "SELECT count(*) FROM gatehouse.events"; }
some_stored() { [ "$(stored)" -gt 20000 ]; }
expect "events flow through ms1" wait_for 30 some_stored
lines() { grep -c "$1" "$work/gateway.log"; }
more_lines() { [ "$(lines "$1")" -gt "$2" ]; }
on_ms2_before=$(lines '"event":30050.*ms2.example.test')
failbacks_before=$(lines '"event":30053.*ms1.example.test')
kill -KILL "$ms1_pid"
wait "$ms1_pid" 2>/dev/null
at_kill=$(stored)
expect "the gateway fails over to ms2" wait_for 30 more_lines '"event":30050.*ms2.example.test' "$on_ms2_before"
sleep 2  # events flow through ms2 meanwhile
start server "$work/ms1.toml" "$work/ms1.log" || exit 1
ms1_pid=$started_pid
expect "the gateway fails back to ms1 (30053)" wait_for 30 more_lines '"event":30053.*ms1.example.test' "$failbacks_before"
at_failback=$(stored)
expect "the agents finish" wait_agents 180
total=$((agents * events))
[ "$(stored)" = "$total" ] || fail "want $total events in gatehouse.events, have $(stored)"
ok
twice=$(sql "SELECT count(*) FROM (SELECT agent, incarnation, seq FROM gatehouse.events GROUP BY 1, 2, 3 HAVING count(*) > 1) t")
[ "$twice" = 0 ] || fail "$twice (agent, incarnation, seq) stored twice"
ok
per_agent=$(sql "SELECT count(*) FROM (SELECT agent FROM gatehouse.events WHERE gap_first_seq IS NULL GROUP BY agent
                 HAVING count(*) = $events AND min(seq) = 1 AND max(seq) = $events) t")
[ "$per_agent" = "$agents" ] || fail "want $agents agents with seqs 1..$events each, have $per_agent"
ok
by_ms2=$(sql "SELECT count(*) FROM gatehouse.events WHERE server = 'ms2.example.test'")
[ "$by_ms2" -gt 0 ] || fail "ms2 stored nothing after the failover"
ok
path=$(sql "SELECT string_agg(DISTINCT path, ',') FROM gatehouse.events")
[ "$path" = gw1.example.test ] || fail "want path gw1.example.test, have '$path'"
ok
s=$("$gatehouse" store --config "$work/ms2.toml" stats --json)
[ "$(json_field "$s" events)" = "$total" ] || fail "store stats from ms2's config: want $total events, have $s"
ok
[ "$("$gatehouse" store --config "$work/ms1.toml" agents | grep -c "\"events\":$events,")" = "$agents" ] ||
  fail "store agents from ms1's config: $("$gatehouse" store --config "$work/ms1.toml" agents | head -3)"
ok
group_dump() { "$gatehouse" store --config "$work/ms1.toml" dump --agent web03.example.test --since "$1"; }
[ "$(group_dump "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)" | grep -c '"seq"')" = "$events" ] ||
  fail "dump --since an hour ago from ms1's config: want web03's $events events"
ok
[ "$(group_dump @4102444800 | grep -c '"seq"')" = 0 ] || fail "dump --since 2100: want none"
ok
group_dump @0 | head -1 | grep -q '"path":"gw1.example.test","server":"ms[12].example.test"' ||
  fail "dump: no path/server in $(group_dump @0 | head -1 | cut -c1-200)"
ok
echo "kill -9 of ms1: $at_kill events stored at the kill, $at_failback at the failback, $by_ms2 by ms2;" \
  "$(stored) of $total, none twice; duplicates dropped: $(json_field "$s" duplicates_dropped)"

# 3. kill -9 of the database's primary under load, its synchronous standby
#    promoted: the servers stop acknowledging (30070), find the new primary
#    in their dsn (30071), and every event is there once.
start_agents "$events" 2000
more_stored() { [ "$(stored)" -gt $((total + 20000)) ]; }
expect "events flow again" wait_for 30 more_stored
"$root/tests/pg/postgres" kill "$work/pg"
killed_at=$(date +%s%3N)
sleep 1
expect "promote the standby" "$root/tests/pg/postgres" promote "$work/pg-standby"
expect "the agents finish on the promoted standby" wait_agents 180
total=$((2 * agents * events))
[ "$(stored)" = "$total" ] || fail "after the promotion: want $total events, have $(stored)"
ok
twice=$(sql "SELECT count(*) FROM (SELECT agent, incarnation, seq FROM gatehouse.events GROUP BY 1, 2, 3 HAVING count(*) > 1) t")
[ "$twice" = 0 ] || fail "after the promotion: $twice (agent, incarnation, seq) stored twice"
ok
expect "a server said the database failed (30070)" grep -q '"event":30070' "$work/ms1.log"
expect "and that it commits again (30071)" grep -q '"event":30071' "$work/ms1.log"
down_ms=$(grep -m1 '"event":30071' "$work/ms1.log" | grep -o '"down_ms":[0-9]*' | cut -d: -f2)
echo "primary killed, standby promoted: $(stored) of $total events, none twice; ms1 acknowledged nothing for $down_ms ms"

# 4. An approval deleted through ms2 ends web01's session on ms1.
start agent "$work/web01.toml" "$work/web01-long.log" --synthetic 10 --count 100000
long_pid=$started_pid
expect "web01 is back" wait_for 20 grep -q '"event":30050' "$work/web01-long.log"
deleted_at=$(date +%s%3N)
expect "delete web01's approval through ms2's config" \
  quiet "$gatehouse" approve --config "$work/ms2.toml" agent web01.example.test --action delete
expect "ms1 ends web01's session (30064)" wait_for 10 grep -q '"event":30064.*web01.example.test' "$work/ms1.log"
ended_ms=$(( $(date -d "$(grep -m1 '"event":30064.*web01.example.test' "$work/ms1.log" | grep -o '"ts":"[^"]*"' | cut -d'"' -f4)" +%s%3N) - deleted_at ))
[ "$ended_ms" -le 2000 ] || fail "web01's session ended ${ended_ms} ms after the deletion (want ≤ 2,000)"
ok
echo "approval deleted through ms2: ms1 ended the session after $ended_ms ms"
kill -TERM "$long_pid"
wait_exit "$long_pid" 20

for pid in "$gateway_pid" "$ms1_pid" "$ms2_pid"; do
  kill -TERM "$pid"
  wait_exit "$pid" 30 || fail "pid $pid did not stop on SIGTERM"
done
echo "group: $checks checks, $failures failed"
[ "$failures" = 0 ]

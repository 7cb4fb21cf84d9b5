#!/usr/bin/env bash
# Agent health as SCOM's operators know it, on real processes: a server with
# a 2 s heartbeat and 3 missed = down; an agent direct to it, one through a
# gateway, one through a chain of two. Frozen with SIGSTOP, an agent turns
# down (30100) within interval × missed + one interval, whichever way it
# came, while the others stay up; after SIGCONT it is up again (30101).
# A chained gateway killed with SIGKILL turns down with its agent.
# `gatehouse agents` lists each with state, last heartbeat, tier and path.
# usage: health_test.sh GATEHOUSE SOURCE_ROOT
set -u
gatehouse=$1
root=$2
work=$(mktemp -d /tmp/gatehouse-e2e-health-XXXXXX)
. "$root/tests/e2e/lib.sh"

interval_s=2
missed=3
bound_ms=$(( (interval_s * missed + interval_s) * 1000 ))
pki "$work/pki" server:ms1.example.test gateway:gw1.example.test gateway:gw2.example.test \
  agent:web1.example.test agent:web2.example.test agent:web3.example.test

server_config 0 auto "[health]" "heartbeat_interval_s = $interval_s" "heartbeats_missed_max = $missed" >"$work/server.toml"
start server "$work/server.toml" "$work/server.log" || exit 1
server_pid=$started_pid
server_port=$port
for gateway in gw1 gw2; do
  quiet "$gatehouse" approve --config "$work/server.toml" gateway "$gateway.example.test" --action create --tier dmz
done

# gateway_config NAME PARENT_PORT PARENT_NAME: its own heartbeat is 10 s, so
# its agents must be told the group's 2 s (the smaller) to stay up.
gateway_config() {
  cat <<CONF
name = "$1.example.test"
listen = "127.0.0.1:0"
admin = { listen = "" }
[[parents]]
address = "127.0.0.1:$2"
name = "$3"
[tls]
cert = "$work/pki/$1.example.test.crt"
key = "$work/pki/$1.example.test.key"
ca = "$work/pki/ca.crt"
[runtime]
shards = 1
connections_per_shard = 64
[health]
heartbeat_interval_s = 10
CONF
}
gateway_config gw1 "$server_port" ms1.example.test >"$work/gw1.toml"
start gateway "$work/gw1.toml" "$work/gw1.log" || exit 1
gw1_port=$port
gateway_config gw2 "$gw1_port" gw1.example.test >"$work/gw2.toml"
start gateway "$work/gw2.toml" "$work/gw2.log" || exit 1
gw2_pid=$started_pid
gw2_port=$port

agent_config() {  # agent_config NAME PARENT_PORT PARENT_NAME
  cat <<CONF
name = "$1.example.test"
queue_dir = "$work/queue-$1"
[[gateways]]
address = "127.0.0.1:$2"
name = "$3"
[tls]
cert = "$work/pki/$1.example.test.crt"
key = "$work/pki/$1.example.test.key"
ca = "$work/pki/ca.crt"
CONF
}
agent_config web1 "$server_port" ms1.example.test >"$work/web1.toml"
agent_config web2 "$gw1_port" gw1.example.test >"$work/web2.toml"
agent_config web3 "$gw2_port" gw2.example.test >"$work/web3.toml"
declare -A agent_pid
for agent in web1 web2 web3; do
  start agent "$work/$agent.toml" "$work/$agent.log" --synthetic 5
  agent_pid[$agent]=$started_pid
done

agents_json() { "$gatehouse" agents --config "$work/server.toml" --json; }
state_is() {  # state_is AGENT STATE
  agents_json | python3 -c '
import json, sys
agents = {a["name"]: a for a in json.load(sys.stdin)}
sys.exit(0 if agents.get(sys.argv[1], {}).get("state") == sys.argv[2] else 1)' "$1.example.test" "$2"
}
all_up() { state_is web1 up && state_is web2 up && state_is web3 up; }
expect "all three agents are up in gatehouse agents" wait_for 30 all_up
agents_json >"$work/agents.json"
python3 - "$work/agents.json" <<'PY' || fail "gatehouse agents --json: $(cat "$work/agents.json")"
import json, sys
agents = {a["name"]: a for a in json.load(open(sys.argv[1]))}
assert agents["web1.example.test"]["path"] == "" and agents["web1.example.test"]["tier"] == "direct", agents
assert agents["web2.example.test"]["path"] == "gw1.example.test" and agents["web2.example.test"]["tier"] == "dmz", agents
assert agents["web3.example.test"]["path"] == "gw2.example.test>gw1.example.test", agents
assert all(a["last_heartbeat"] for a in agents.values()), agents
PY
ok
"$gatehouse" agents --config "$work/server.toml" >"$work/agents.txt"
grep -qE '^web3.example.test +up +20[0-9-]+T[0-9:.]+Z +dmz +gw2.example.test>gw1.example.test' "$work/agents.txt" ||
  fail "gatehouse agents (table): $(cat "$work/agents.txt")"
ok

# Down within interval × missed + one interval of the freeze, direct and
# through two gateways; the unfrozen agent through one gateway stays up.
ms_now() { date +%s%3N; }
down_logged() { grep -q "\"event\":30100.*\"agent\":\"$1.example.test\"" "$work/server.log"; }
frozen_at=$(ms_now)
kill -STOP "${agent_pid[web1]}" "${agent_pid[web3]}"
for agent in web1 web3; do
  expect "$agent turns down (30100)" wait_for 20 down_logged "$agent"
  elapsed=$(( $(ms_now) - frozen_at ))
  [ "$elapsed" -le "$bound_ms" ] || fail "$agent down after $elapsed ms, want within $bound_ms ms"
  ok
  echo "$agent: down $elapsed ms after SIGSTOP (bound $bound_ms ms)"
done
expect "web1 down in gatehouse agents" state_is web1 down
expect "web3 down in gatehouse agents" state_is web3 down
expect "web2 stays up" state_is web2 up
down=$("$gatehouse" agents --config "$work/server.toml" --state down --json | python3 -c 'import json,sys; print(sorted(a["name"] for a in json.load(sys.stdin)))')
[ "$down" = "['web1.example.test', 'web3.example.test']" ] || fail "agents --state down: $down"
ok
grep -q '"event":30100.*"agent":"web2' "$work/server.log" && fail "web2 was reported down"
ok

# SIGCONT: up again (30101), and in the listing.
kill -CONT "${agent_pid[web1]}" "${agent_pid[web3]}"
up_logged() { grep -q "\"event\":30101.*\"agent\":\"$1.example.test\"" "$work/server.log"; }
for agent in web1 web3; do
  expect "$agent is up again (30101)" wait_for 30 up_logged "$agent"
done
expect "all three up again" wait_for 20 all_up

# A chained gateway killed: it and its agent turn down; restarted, both up.
kill -KILL "$gw2_pid"
gateway_down() { grep -q '"event":30100.*"gateway":"gw2.example.test"' "$work/server.log"; }
expect "gw2 turns down (30100)" wait_for 20 gateway_down
web3_down_again() { [ "$(grep -c "\"event\":30100.*\"agent\":\"web3.example.test\"" "$work/server.log")" = 2 ]; }
expect "web3 turns down with its gateway" wait_for 20 web3_down_again
sed -i "s|^listen = \"127.0.0.1:0\"|listen = \"127.0.0.1:$gw2_port\"|" "$work/gw2.toml"
start gateway "$work/gw2.toml" "$work/gw2b.log" || exit 1
gateway_up() { grep -q '"event":30101.*"gateway":"gw2.example.test"' "$work/server.log"; }
expect "gw2 is up again (30101)" wait_for 30 gateway_up
expect "web3 is up again behind it" wait_for 30 state_is web3 up

for agent in web1 web2 web3; do kill -TERM "${agent_pid[$agent]}"; done
kill -TERM "$server_pid"
wait_exit "$server_pid" 10
echo "health: $checks checks, $failures failures"
[ "$failures" -eq 0 ]

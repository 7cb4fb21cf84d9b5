#!/usr/bin/env bash
# Management-server-initiated connections (SCOM's
# /ManagementServerInitiatesConnection), on real processes in a network
# namespace: the gateway and its agents live in a DMZ namespace from which
# the server's port cannot be reached at all (it listens on the trusted
# side's loopback); the server dials the gateway ([[gateways]]), the gateway
# waits to be dialled (connect = "parent") and never dials. Events flow
# exactly once, through a SIGKILL of the gateway (the server dials the new
# one); the same approval applies (an unapproved gateway the server dials is
# refused, 20000 / 30051); a DMZ host that dials the gateway claiming to be
# the parent is refused (30056). The server keeps one connection more to gw1
# than gw1 has uplinks: the gateway answers that dial busy (the shard the
# kernel gave it has no free uplink), the server dials again at once, not
# with a growing backoff, and warns once the answer stays busy (30055).
# usage: dial_test.sh GATEHOUSE SOURCE_ROOT
set -u
gatehouse=$1
root=$2
work=$(mktemp -d /tmp/gatehouse-e2e-dial-XXXXXX)
. "$root/tests/e2e/lib.sh"

ns="ghdmz$$"
if ! ip netns add "$ns" 2>/dev/null; then
  echo "SKIP: network namespaces need root (ip netns add)"
  exit 77
fi
veth="ghd$$"
exit_hooks+=("ip netns del '$ns' 2>/dev/null; ip link del '$veth' 2>/dev/null")
ip link add "$veth" type veth peer name "${veth}p" && ip link set "${veth}p" netns "$ns" &&
  ip addr add 10.214.0.1/30 dev "$veth" && ip link set "$veth" up &&
  ip netns exec "$ns" ip addr add 10.214.0.2/30 dev "${veth}p" &&
  ip netns exec "$ns" ip link set "${veth}p" up && ip netns exec "$ns" ip link set lo up ||
  { fail "cannot build the veth pair"; exit 1; }
in_dmz() { ip netns exec "$ns" "$@"; }

agents=3
events=3000
specs=(server:ms1.example.test gateway:gw1.example.test gateway:gw2.example.test)
for i in $(seq -w 1 $agents); do specs+=("agent:web$i.example.test"); done
pki "$work/pki" "${specs[@]}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server_port=$(free_port)
gw_port=$(free_port)
gw2_port=$(free_port)
# The trusted side's server listens on its loopback only: the DMZ has no way to it.
server_config "$server_port" auto >"$work/server.toml"
python3 - "$work/server.toml" "$gw_port" "$gw2_port" <<'PY'
import sys
path, gw_port, gw2_port = sys.argv[1:]
text = open(path).read()
dial = ('[[gateways]]\naddress = "10.214.0.2:%s"\nname = "gw1.example.test"\nconnections = 3\n'
        '[[gateways]]\naddress = "10.214.0.2:%s"\nname = "gw2.example.test"\nconnections = 1\n'
        # gw3 is not there: gw2 answers at the address given for it
        '[[gateways]]\naddress = "10.214.0.2:%s"\nname = "gw3.example.test"\nconnections = 1\n') % (gw_port, gw2_port, gw2_port)
head, tail = text.split("[tls]", 1)
open(path, "w").write(head + dial + "[tls]" + tail)
PY
gateway_config() {  # gateway_config NAME PORT
  cat <<CONF
name = "$1.example.test"
listen = "10.214.0.2:$2"
admin = { listen = "" }
[[parents]]
address = "10.214.0.1:$server_port"
name = "ms1.example.test"
connect = "parent"
[tls]
cert = "$work/pki/$1.example.test.crt"
key = "$work/pki/$1.example.test.key"
ca = "$work/pki/ca.crt"
[runtime]
shards = 2
connections_per_shard = 256
CONF
}
gateway_config gw1 "$gw_port" >"$work/gw1.toml"
gateway_config gw2 "$gw2_port" >"$work/gw2.toml"
fleet_configs "$gw_port" 10.214.0.2
"$gatehouse" check-config --config "$work/server.toml" >/dev/null || fail "the server's config with [[gateways]]"
"$gatehouse" check-config --config "$work/gw1.toml" >/dev/null || fail "the gateway's config with connect = \"parent\""
ok

expect "approve gw1 (gw2 is not)" quiet "$gatehouse" approve --config "$work/server.toml" gateway gw1.example.test --action create
start server "$work/server.toml" "$work/server.log" || exit 1
server_pid=$started_pid
# start_dmz ROLE CONFIG LOG [ARGS]: a role inside the DMZ namespace.
start_dmz() {
  local role=$1 config=$2 log=$3; shift 3
  ip netns exec "$ns" "$gatehouse" "$role" --config "$config" "$@" >>"$log.out" 2>>"$log" &
  started_pid=$!
  pids+=("$started_pid")
}
start_dmz gateway "$work/gw1.toml" "$work/gw1.log"
gw_pid=$started_pid
start_dmz gateway "$work/gw2.toml" "$work/gw2.log"

# The DMZ cannot reach the server's port at all.
dmz_reaches() { in_dmz timeout 2 bash -c "exec 3<>/dev/tcp/$1/$server_port" 2>/dev/null; }
dmz_reaches 10.214.0.1 && fail "the DMZ reaches the server's port on 10.214.0.1"
ok
dmz_reaches 127.0.0.1 && fail "the DMZ reaches a server port on its own loopback"
ok

gw_uplinks_up() { [ "$(grep -c '"event":30050' "$work/gw1.log")" -ge 2 ]; }
expect "the server dials gw1: both uplinks up (30050 at the gateway)" wait_for 20 gw_uplinks_up
expect "the server logs its dials (30054)" grep -q '"event":30054.*gw1.example.test' "$work/server.log"
for i in $(seq -w 1 "$agents"); do
  start_dmz agent "$work/web$i.toml" "$work/web$i.log" --synthetic 1500 --count "$events"
  agent_pids+=("$started_pid")
done
sleep 1
kill -KILL "$gw_pid"  # mid-stream: the server dials the new gateway
wait "$gw_pid" 2>/dev/null
start_dmz gateway "$work/gw1.toml" "$work/gw1b.log"
gw_pid=$started_pid
expect "$agents agents × $events events through the dialled gateway" wait_agents 90
s=$(stats "$work/server.toml")
[ "$(json_field "$s" events)" = $((agents * events)) ] || fail "want $((agents * events)) events once, have $s"
ok
echo "stored through the dialled gateway, a SIGKILL included: $s"

# The gateway never dialled: no 21006, and every DMZ connection is to the
# gateway's port (the server's dials and the agents').
grep -q '"event":21006' "$work/gw1.log" "$work/gw1b.log" && fail "the gateway tried to dial its parent (21006)"
ok
outgoing=$(in_dmz ss -Htn state established | awk -v p=":$gw_port" -v q=":$gw2_port" '$3 !~ p"$" && $3 !~ q"$" && $4 !~ p"$" && $4 !~ q"$"' | wc -l)
[ "$outgoing" = 0 ] || fail "connections in the DMZ not to a gateway's port: $(in_dmz ss -Htn state established)"
ok

# The same approval: gw2 is dialled, and refused until approved.
expect "the server refuses the unapproved gw2 it dialled (20000)" wait_for 20 grep -q '"event":20000.*gw2.example.test' "$work/server.log"
expect "gw2 hears it is not approved (30051)" wait_for 20 grep -q '"event":30051' "$work/gw2.log"
# The gateway that answers a dial must be the one dialled: gw2 answering for gw3 is refused.
expect "a dial answered by another gateway is refused (20000)" wait_for 20 \
  grep -q '"event":20000.*the connection dialled to gateway gw3.example.test was answered by gateway gw2.example.test' "$work/server.log"

# gw1 has 2 shards x 1 uplink and the server keeps 3 connections to it: the
# third is answered busy (quietly at the gateway: no 30056 warning), dialled
# again at each tick (so both uplinks came up within seconds above, wherever the
# kernel put the first dials), and the server says once what is wrong.
expect "a dial gw1 has no free uplink for: answered busy, redialled, warned (30055)" wait_for 30 \
  grep -q '"event":30055.*gateway gw1.example.test answered busy to 32 dials in a row' "$work/server.log"
grep -q '"event":30056' "$work/gw1.log" && fail "a busy dial-in was logged as a refused parent (30056)"
ok

# A DMZ host claiming to be the parent (the preamble from a DMZ address) is refused.
in_dmz python3 - "$gw_port" <<'PY'
import socket, sys
s = socket.create_connection(("10.214.0.2", int(sys.argv[1])), timeout=5)
s.sendall(b"GATEHOUSE-PARENT-DIAL/1\n")
s.settimeout(5)
try:
    assert s.recv(100) == b"", "the gateway should close the connection"
except ConnectionResetError:
    pass  # closed at once (RST): refused
PY
[ $? = 0 ] || fail "the fake parent's connection was not closed"
ok
expect "the fake parent is logged (30056)" grep -q '"event":30056.*10.214.0.2' "$work/gw1b.log"

kill -TERM "$server_pid"
wait_exit "$server_pid" 10
echo "dial: $checks checks, $failures failures"
[ "$failures" -eq 0 ]

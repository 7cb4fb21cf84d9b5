#!/usr/bin/env bash
# A dual-stack gateway (listen = "[::]:...") behind a real HAProxy relay that
# passes TCP through with PROXY v2, in a network namespace of its own (a
# wildcard listener must not open a port on this host's interfaces). The relay
# reaches the gateway over IPv4, so the gateway sees it as ::ffff:127.0.0.3;
# trusted_relays = ["127.0.0.3"] must still match it and its header must name
# the agent's own address; the same relay address without a header is refused
# (30010), and a peer that is not a relay cannot pass itself off as one.
# usage: relay_test.sh GATEHOUSE SOURCE_ROOT
set -u
gatehouse=$1
root=$2
work=$(mktemp -d /tmp/gatehouse-e2e-relay-XXXXXX)
. "$root/tests/e2e/lib.sh"

command -v haproxy >/dev/null || { echo "haproxy not found: install it (tools/bootstrap)"; exit 1; }
ns="ghrelay$$"
if ! ip netns add "$ns" 2>/dev/null; then
  echo "SKIP: network namespaces need root (ip netns add)"
  exit 77
fi
exit_hooks+=("ip netns del '$ns' 2>/dev/null")
ip netns exec "$ns" ip link set lo up || { fail "cannot bring up the namespace's loopback"; exit 1; }
in_ns() { ip netns exec "$ns" "$@"; }

agents=1
pki "$work/pki" server:ms1.example.test gateway:gw1.example.test agent:web1.example.test
server_port=15723
gateway_port=15724
relay_port=15725
server_config "$server_port" auto >"$work/server.toml"
gateway_config "[::]:$gateway_port" "127.0.0.1:$server_port" ms1.example.test 'trusted_relays = ["127.0.0.3"]' \
  >"$work/gateway.toml"
cat >"$work/haproxy.cfg" <<CONF
global
  log stderr format raw local0 err
defaults
  mode tcp
  timeout connect 5s
  timeout client 1m
  timeout server 1m
frontend agents
  bind 127.0.0.1:$relay_port
  default_backend gateway
backend gateway
  server gw1 127.0.0.1:$gateway_port send-proxy-v2 source 127.0.0.3
CONF
fleet_configs "$relay_port"

# start_in_ns ROLE CONFIG LOG [ARGS...]: start() inside the namespace (ip
# netns exec execs the command: $! is the role's own pid, stopped by it).
start_in_ns() {
  local role=$1 config=$2 log=$3; shift 3
  ip netns exec "$ns" "$gatehouse" "$role" --config "$config" "$@" >>"$log.out" 2>>"$log" &
  started_pid=$!
  pids+=("$started_pid")
}
started() { grep -q '"event":30001' "$1"; }
start_in_ns server "$work/server.toml" "$work/server.log"
server_pid=$started_pid
expect "the server starts" wait_for 10 started "$work/server.log"
quiet in_ns "$gatehouse" approve -c "$work/server.toml" gateway gw1.example.test --action create
start_in_ns gateway "$work/gateway.toml" "$work/gateway.log"
gateway_pid=$started_pid
expect "the dual-stack gateway starts" wait_for 10 started "$work/gateway.log"
ip netns exec "$ns" haproxy -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log" &
haproxy_pid=$!
pids+=("$haproxy_pid")
relay_up() { in_ns bash -c "exec 3<>/dev/tcp/127.0.0.1/$relay_port" 2>/dev/null; }
expect "the relay listens" wait_for 10 relay_up

# 1. An agent through the relay: honoured as relayed, its own address named, every event stored.
ip netns exec "$ns" "$gatehouse" agent -c "$work/web1.toml" --synthetic 500 --count 1000 >"$work/web1.log.out" 2>"$work/web1.log" &
agent_pid=$!
pids+=("$agent_pid")
wait_exit "$agent_pid" 30
[ "$rc" = 0 ] || fail "the agent through the relay: exit $rc ($(tail -2 "$work/web1.log"))"
ok
stored=$(json_field "$(in_ns "$gatehouse" store -c "$work/server.toml" stats --json)" events)
[ "$stored" = 1000 ] || fail "events stored through the relay: $stored, want 1000"
ok
grep -q '"event":30033.*"peer":"127\.0\.0\.1:[0-9]* via \[::ffff:127\.0\.0\.3\]:[0-9]*".*"name":"web1.example.test"' "$work/gateway.log" ||
  fail "the session names the agent's address via the IPv4-mapped relay: $(grep '"event":30033' "$work/gateway.log" | tail -1)"
ok

# 2. From the relay's address without a PROXY header (a TLS ClientHello at
# once): refused, named; the gateway goes on.
in_ns python3 - "$gateway_port" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.3", 0))
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes.fromhex("16030100a5010000a10303") + b"\0" * 160)
s.settimeout(5)
try:
    s.recv(1)
except OSError:
    pass
PY
refused() { grep -q '"event":30010.*refused a trusted relay.s connection' "$work/gateway.log"; }
expect "a relay address without a PROXY header is refused (30010)" wait_for 5 refused

# 3. Not a relay (127.0.0.1, IPv4-mapped too) sending a PROXY header that claims
# another source: not read as one (the bytes are its TLS, which fails); no
# session is opened for it.
in_ns python3 - "$gateway_port" <<'PY'
import socket, struct, sys
header = b"\r\n\r\n\0\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12) + \
    socket.inet_aton("10.9.9.9") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 4444, 5723)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(header)
s.settimeout(5)
try:
    s.recv(1)
except OSError:
    pass
PY
sleep 0.5
grep -q '10\.9\.9\.9' "$work/gateway.log" && fail "a PROXY header from a peer that is no relay was believed"
ok
kill -0 "$gateway_pid" 2>/dev/null || fail "the gateway runs on"
ok

kill -TERM "$haproxy_pid" "$gateway_pid" "$server_pid"
for pid in "$gateway_pid" "$server_pid"; do
  wait_exit "$pid" 10
  [ "$rc" = 0 ] || fail "clean stop: pid $pid exit $rc"
  ok
done
echo "relay: $checks checks, $failures failures"
[ "$failures" -eq 0 ]

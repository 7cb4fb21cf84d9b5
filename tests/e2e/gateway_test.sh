#!/usr/bin/env bash
# Agents → gateway → server, as real processes: an unapproved gateway refused
# then approved live; kill -9 of the gateway and of the server mid-stream with
# exact counts; a parent stopped (SIGSTOP) for 10 s under load with the
# gateway's memory bounded; few uplinks for many agents; a killed gateway
# leaves nothing in TMPDIR.
# usage: gateway_test.sh GATEHOUSE SOURCE_ROOT
set -u
gatehouse=$1
root=$2
work=$(mktemp -d /tmp/gatehouse-e2e-gw-XXXXXX)
. "$root/tests/e2e/lib.sh"
# The roles' TMPDIR, looked at after the gateway's kill -9 (section 3).
export TMPDIR="$work/tmp"
mkdir -p "$TMPDIR"

agents=12
specs=(server:ms1.example.test gateway:gw1.example.test gateway:gw2.example.test)
for i in $(seq -w 1 $agents); do specs+=("agent:web$i.example.test"); done
pki "$work/pki" "${specs[@]}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
server_port=$(free_port)
gateway_port=$(free_port)
server_config "$server_port" "review" "recv_buffers = 64" >"$work/server.toml"
cat >"$work/gateway.toml" <<CONF
name = "gw1.example.test"
listen = "127.0.0.1:$gateway_port"
admin = { listen = "127.0.0.1:0" }  # the admin endpoint on a free port
[[parents]]
address = "127.0.0.1:$server_port"
name = "ms1.example.test"
[uplink]
connections_per_shard = 2
buffer_max_bytes = 1048576
[tls]
cert = "$work/pki/gw1.example.test.crt"
key = "$work/pki/gw1.example.test.key"
ca = "$work/pki/ca.crt"
[runtime]
shards = 2
connections_per_shard = 1024
recv_buffers = 128
CONF
fleet_configs "$gateway_port"

# Every agent's seqs 1..N stored exactly once.
check_exact() {
  local want=$1 what=$2 s
  s=$(stats "$work/server.toml")
  [ "$(json_field "$s" events)" = "$want" ] || fail "$what: want $want events, have $s"
  ok
}

# 1. The gateway is not approved: its uplinks are refused (20000 at the server,
#    30051 at the gateway). Approved live, it carries the agents' OPENs, which
#    the server refuses (20000 at the server, 20070 at the agents: they are
#    pending); approved live too, the agents flow.
start server "$work/server.toml" "$work/server.log" || exit 1
server_pid=$started_pid
start gateway "$work/gateway.toml" "$work/gateway.log" || exit 1
gateway_pid=$started_pid
expect "server logs 20000 for the unapproved gateway" wait_for 10 grep -q '"event":20000.*gw1.example.test' "$work/server.log"
expect "gateway logs 30051" wait_for 10 grep -q '"event":30051' "$work/gateway.log"
expect "approve the gateway" quiet "$gatehouse" approve --config "$work/server.toml" gateway gw1.example.test --action create --tier dmz
start_agents 2000 2000
expect "an agent through the gateway logs 20070" wait_for 20 grep -q '"event":20070' "$work/web01.log"
expect "the server logs 20000 for it, via the gateway" \
  wait_for 10 grep -q '"event":20000.*web01.example.test.*"via":"gw1.example.test"' "$work/server.log"
pending_count() { [ "$("$gatehouse" approve --config "$work/server.toml" list --pending | wc -l)" = "$agents" ]; }
expect "all $agents agents on the pending list" wait_for 20 pending_count
pending=$("$gatehouse" approve --config "$work/server.toml" list --pending | awk '{print $2}')
for name in $pending; do quiet "$gatehouse" approve --config "$work/server.toml" agent "$name" --action create; done
expect "12 agents × 2,000 events through the gateway" wait_agents 90
check_exact 24000 "after the live approval"

# 2. Few uplinks for many agents: the server sees shards × connections_per_shard = 4.
uplinks=$(ss -Htn state established "( dport = :$server_port )" | wc -l)
[ "$uplinks" = 4 ] || fail "want 4 uplinks from the gateway to the server, see $uplinks"
ok
echo "uplinks to the server for $agents agents: $uplinks"

# 3. kill -9 of the gateway mid-stream; restarted, the agents reconnect and resend.
start_agents 20000 4000
sleep 2
kill -KILL "$gateway_pid"
wait "$gateway_pid" 2>/dev/null
at_kill=$(json_field "$(stats "$work/server.toml")" events)
# Its krb5 profile (PKINIT kept out) is a memory file: nothing left on disk.
left=$(find "$TMPDIR" -mindepth 1 -name 'gatehouse-*')
[ -z "$left" ] || fail "the killed gateway left files in TMPDIR: $left"
ok
sleep 1
start gateway "$work/gateway.toml" "$work/gateway.log" || exit 1
gateway_pid=$started_pid
expect "the agents finish after the gateway's restart" wait_agents 120
check_exact $((24000 + 12 * 20000)) "after kill -9 of the gateway"
echo "gateway kill -9: $at_kill events stored at the kill"

# 4. kill -9 of the server mid-stream (through the gateway); restarted, exact counts.
start_agents 40000 4000
sleep 2
kill -KILL "$server_pid"
wait "$server_pid" 2>/dev/null
at_kill=$(json_field "$(stats "$work/server.toml")" events)
start server "$work/server.toml" "$work/server.log" || exit 1
server_pid=$started_pid
expect "the agents finish after the server's restart" wait_agents 180
check_exact $((24000 + 12 * 60000)) "after kill -9 of the server"
echo "server kill -9: $at_kill events stored at the kill"

# 5. The parent stalls (SIGSTOP) for 10 s under load: the gateway's memory
#    stays bounded; after SIGCONT everything arrives exactly once.
start_agents 60000 6000
sleep 2
rss_before=$(awk '/VmRSS/ {print $2}' /proc/$gateway_pid/status)
kill -STOP "$server_pid"
peak=0
for _ in $(seq 50); do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$gateway_pid/status)
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 0.2
done
kill -CONT "$server_pid"
expect "the agents finish after SIGCONT" wait_agents 240
check_exact $((24000 + 12 * 120000)) "after the parent's 10 s stall"
# Bound: 4 uplinks × (buffer_max_bytes + a turn of reading) on top of the RSS before the stall.
bound_kb=$((rss_before + 4 * 2 * 1024 + 16 * 1024))
[ "$peak" -le "$bound_kb" ] || fail "gateway RSS during the stall: peak ${peak} KiB > bound ${bound_kb} KiB (before: ${rss_before} KiB)"
ok
echo "parent stalled 10 s: gateway RSS ${rss_before} KiB before, peak ${peak} KiB (bound ${bound_kb} KiB)"

# 6. A frozen gateway (SIGSTOP): agents that list a second gateway of its tier
#    find it silent within [failover] parent_silence_ms (3 s here), log 21006,
#    and finish through gw2 with exact counts.
gw2_port=$(free_port)
sed -e "s/gw1\.example\.test/gw2.example.test/g" -e "s/127.0.0.1:$gateway_port/127.0.0.1:$gw2_port/" \
  "$work/gateway.toml" >"$work/gateway2.toml"
expect "approve gw2 in gw1's tier" quiet "$gatehouse" approve --config "$work/server.toml" gateway gw2.example.test --action create --tier dmz
start gateway "$work/gateway2.toml" "$work/gateway2.log" || exit 1
gw2_pid=$started_pid
for i in $(seq -w 1 $agents); do
  printf '[[gateways]]\naddress = "127.0.0.1:%s"\nname = "gw2.example.test"\n[failover]\nparent_silence_ms = 3000\n' "$gw2_port" \
    >>"$work/web$i.toml"
done
start_agents 12000 1000  # 12 s of events: under ASan the last agent's session can come seconds after the first's
expect "every agent has a session with gw1" wait_for 60 agents_on gw1.example.test
sleep 1  # and events flowing through it
expect "every agent still sending when gw1 freezes" agents_running
kill -STOP "$gateway_pid"
frozen_at=$(date +%s%3N)
expect "the agents finish through gw2 while gw1 is frozen" wait_agents 90
check_exact $((24000 + 12 * 132000)) "after gw1 froze"
left=$(grep -l '"event":21006.*no answer from the parent for' "$work"/web*.log | wc -l)
[ "$left" = "$agents" ] || fail "want all $agents agents to find gw1 silent (21006), $left did"
ok
echo "gateway frozen: all $agents agents left it for gw2 and finished $(( $(date +%s%3N) - frozen_at )) ms after the freeze"
kill -CONT "$gateway_pid"

# 7. A black-holed gateway: the agents run in a network namespace of their
#    own, gw1 and gw2 each behind a veth pair; gw1's link goes down on its
#    side, so every packet to it vanishes (no RST, no ICMP). The agents find
#    it silent within parent_silence_ms and finish through gw2, exact counts.
ns=gh-bh-$$
if ip netns add "$ns" 2>/dev/null; then
  # Removed at exit too: a run stopped in this stage leaves no namespace or link.
  exit_hooks+=("ip netns del '$ns' 2>/dev/null; ip link del 'ghb$$' 2>/dev/null; ip link del 'gha$$' 2>/dev/null")
  ip link add "gha$$" type veth peer name "ghA$$" && ip link add "ghb$$" type veth peer name "ghB$$" &&
    ip link set "ghA$$" netns "$ns" && ip link set "ghB$$" netns "$ns" &&
    ip addr add 10.213.0.1/30 dev "gha$$" && ip addr add 10.213.0.5/30 dev "ghb$$" &&
    ip link set "gha$$" up && ip link set "ghb$$" up &&
    ip netns exec "$ns" ip addr add 10.213.0.2/30 dev "ghA$$" &&
    ip netns exec "$ns" ip addr add 10.213.0.6/30 dev "ghB$$" &&
    ip netns exec "$ns" ip link set "ghA$$" up && ip netns exec "$ns" ip link set "ghB$$" up &&
    ip netns exec "$ns" ip link set lo up || fail "cannot build the veth pairs"
  kill -TERM "$gateway_pid" "$gw2_pid"
  wait_exit "$gateway_pid" 10
  wait_exit "$gw2_pid" 10
  sed -i "s/^listen = .*/listen = \"10.213.0.1:$gateway_port\"/" "$work/gateway.toml"
  sed -i "s/^listen = .*/listen = \"10.213.0.5:$gw2_port\"/" "$work/gateway2.toml"
  start gateway "$work/gateway.toml" "$work/gateway.log" || exit 1
  gateway_pid=$started_pid
  start gateway "$work/gateway2.toml" "$work/gateway2.log" || exit 1
  gw2_pid=$started_pid
  for i in $(seq -w 1 $agents); do
    sed -i -e "s/127.0.0.1:$gateway_port/10.213.0.1:$gateway_port/" -e "s/127.0.0.1:$gw2_port/10.213.0.5:$gw2_port/" \
      "$work/web$i.toml"
  done
  printf '#!/usr/bin/env bash\nexec ip netns exec %s %q "$@"\n' "$ns" "$gatehouse" >"$work/in-agents-namespace"
  chmod +x "$work/in-agents-namespace"
  real_gatehouse=$gatehouse
  gatehouse="$work/in-agents-namespace"
  start_agents 8000 1000  # 8 s of events (see the frozen gateway)
  gatehouse=$real_gatehouse
  expect "every agent has a session with gw1" wait_for 60 agents_on gw1.example.test
  sleep 1  # and events flowing through it
  expect "every agent still sending when gw1's link goes down" agents_running
  ip link set "gha$$" down
  holed_at=$(date +%s%3N)
  expect "the agents finish through gw2 while gw1 is black-holed" wait_agents 90
  finished_ms=$(( $(date +%s%3N) - holed_at ))
  check_exact $((24000 + 12 * 132000 + 12 * 8000)) "after gw1 was black-holed"
  left=$(grep -c '"event":21006.*no answer from the parent for' "$work"/web*.log | awk -F: '$2 >= 2' | wc -l)
  [ "$left" = "$agents" ] || fail "want all $agents agents to find gw1 silent again (21006), $left did"
  ok
  echo "gateway black-holed: all $agents agents left it for gw2 and finished $finished_ms ms after the link went down"

  # 8. A slow link is not a dead one: gw1's link back, limited to 2 Mbit/s
  #    each way (tc tbf), 12 agents offering ~3 MB/s through it, with the
  #    agent's default silence bound (45 s; the 3 s above is for the frozen
  #    and black-holed cases). Their DATA queues and drops at the limit (TCP
  #    backs off and resends), yet no agent declares gw1 silent or leaves it;
  #    exact counts. (With 3 s, a flow in TCP's retransmission backoff on a
  #    saturated link does go quiet that long, and its agent fails over:
  #    nothing lost, nothing twice, but a needless failover.)
  for i in $(seq -w 1 $agents); do sed -i '/^parent_silence_ms = /d' "$work/web$i.toml"; done
  ip link set "gha$$" up
  # The link (and its route) is back when a TCP connect from the agents' side gets through.
  gw1_reachable() { ip netns exec "$ns" timeout 1 bash -c "exec 3<>/dev/tcp/10.213.0.1/$gateway_port" 2>/dev/null; }
  expect "gw1 reachable again from the agents' namespace" wait_for 10 gw1_reachable
  tc qdisc add dev "gha$$" root tbf rate 2mbit burst 16kb latency 300ms &&
    ip netns exec "$ns" tc qdisc add dev "ghA$$" root tbf rate 2mbit burst 16kb latency 300ms ||
    fail "cannot rate-limit gw1's link with tc tbf"
  silent_before=$(cat "$work"/web*.log | grep -c '"event":21006.*no answer from the parent for')
  gw2_opens_before=$(grep -c '"event":30050.*gw2.example.test' "$work"/web*.log | awk -F: '{s += $2} END {print s}')
  gatehouse="$work/in-agents-namespace"
  start_agents 4000 4000
  gatehouse=$real_gatehouse
  slow_from=$(date +%s%3N)
  expect "the agents finish through the rate-limited gw1" wait_agents 120
  slow_ms=$(( $(date +%s%3N) - slow_from ))
  check_exact $((24000 + 12 * 132000 + 12 * 8000 + 12 * 4000)) "through the rate-limited link"
  silent_after=$(cat "$work"/web*.log | grep -c '"event":21006.*no answer from the parent for')
  gw2_opens_after=$(grep -c '"event":30050.*gw2.example.test' "$work"/web*.log | awk -F: '{s += $2} END {print s}')
  [ "$silent_after" = "$silent_before" ] && [ "$gw2_opens_after" = "$gw2_opens_before" ] ||
    fail "a slow link was taken for a dead one: $((silent_after - silent_before)) 21006, $((gw2_opens_after - gw2_opens_before)) sessions on gw2"
  ok
  sent_bytes=$(ip netns exec "$ns" tc -s qdisc show dev "ghA$$" 2>/dev/null | grep -o 'Sent [0-9]* bytes' | head -1 | cut -d' ' -f2)
  echo "rate-limited gw1 (tc tbf 2 Mbit/s): 12 x 4000 events in $slow_ms ms, ${sent_bytes:-?} bytes up the link, no agent left it"
else
  echo "SKIP: no network namespaces here (ip netns needs root): the black-holed gateway"
fi

s=$(stats "$work/server.toml")
echo "store: $s"
kill -TERM "$gateway_pid" "$gw2_pid" "$server_pid"
wait_exit "$gateway_pid" 10
wait_exit "$gw2_pid" 10
wait_exit "$server_pid" 10
echo "gateway: $((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]

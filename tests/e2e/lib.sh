# Helpers for the end-to-end tests: real gatehouse processes on loopback, a
# dev PKI per run, every process stopped by pid on exit.
# Needs: $gatehouse (the binary), $work (a scratch folder).
pids=()
mounts=()  # file systems a test mounted (unmounted at exit, before the folder goes)
loops=()   # loop devices a test attached
exit_hooks=()  # commands run at exit before the folder goes (e.g. stopping a PostgreSQL)
failures=0
checks=0
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  for hook in "${exit_hooks[@]}"; do eval "$hook"; done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null; done
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null; done
  [ "${KEEP_WORK:-}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }
ok() { checks=$((checks + 1)); }
quiet() { "$@" >/dev/null; }
expect() {  # expect DESCRIPTION COMMAND...: the command must succeed
  local what=$1; shift
  checks=$((checks + 1))
  "$@" || fail "$what"
}

pki() {  # pki DIR ROLE:NAME...: a dev CA and one certificate per ROLE:NAME
  local dir=$1; shift
  mkdir -p "$dir"
  "$gatehouse" certs init-ca --dir "$dir" >/dev/null
  for spec in "$@"; do
    "$gatehouse" certs issue --ca-dir "$dir" --out "$dir" --role "${spec%%:*}" --name "${spec#*:}" >/dev/null
  done
}

# start ROLE CONFIG LOG [ARGS...]: starts a role in the background; sets
# started_pid and, for server and gateway, port (from event 30001).
start() {
  local role=$1 config=$2 log=$3; shift 3
  "$gatehouse" "$role" --config "$config" "$@" >>"$log.out" 2>>"$log" &
  started_pid=$!
  pids+=("$started_pid")
  [ "$role" = agent ] && return 0
  port=""
  for _ in $(seq 200); do
    port=$(grep '"event":30001' "$log" 2>/dev/null | tail -1 | grep -o '"port":[0-9]*' | cut -d: -f2)
    [ -n "$port" ] && return 0
    kill -0 "$started_pid" 2>/dev/null || { fail "$role did not start: $(tail -3 "$log")"; return 1; }
    sleep 0.05
  done
  fail "$role did not report its port: $(tail -3 "$log")"
  return 1
}

wait_exit() {  # wait_exit PID SECONDS: sets rc (or "timeout")
  local pid=$1 limit=$2 waited=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.1
    waited=$((waited + 1))
    if [ "$waited" -ge $((limit * 10)) ]; then rc=timeout; return 1; fi
  done
  wait "$pid"
  rc=$?
}

wait_for() {  # wait_for SECONDS COMMAND...: polls until the command succeeds
  local limit=$1; shift
  for _ in $(seq $((limit * 20))); do "$@" && return 0; sleep 0.05; done
  return 1
}

json_field() { grep -o "\"$2\":[0-9]*" <<<"$1" | head -1 | cut -d: -f2; }

stats() { "$gatehouse" store --config "$1" stats --json; }

# server_config PORT APPROVAL [LINE...]: the test server ms1.example.test (its
# certificate from $work/pki, data in $work/data, 2 shards of 256
# connections); LINEs are added to [runtime].
server_config() {
  local port=$1 approval=$2; shift 2
  cat <<CONF
name = "ms1.example.test"
listen = "127.0.0.1:$port"
admin = { listen = "127.0.0.1:0" }  # the admin endpoint on a free port
data_dir = "$work/data"
[approval]
agents = "$approval"
[tls]
cert = "$work/pki/ms1.example.test.crt"
key = "$work/pki/ms1.example.test.key"
ca = "$work/pki/ca.crt"
[runtime]
shards = 2
connections_per_shard = 256
CONF
  printf '%s\n' "$@"
}

# gateway_config LISTEN PARENT_ADDRESS PARENT_NAME [LINE...]: gw1.example.test
# (its certificate from $work/pki, no admin endpoint, 2 shards of 256
# connections) with one parent; LINEs go before [[parents]] (top-level keys,
# or whole tables).
gateway_config() {
  local listen=$1 parent_address=$2 parent_name=$3; shift 3
  printf 'name = "gw1.example.test"\nlisten = "%s"\nadmin = { listen = "" }\n' "$listen"
  printf '%s\n' "$@"
  cat <<CONF
[[parents]]
address = "$parent_address"
name = "$parent_name"
[tls]
cert = "$work/pki/gw1.example.test.crt"
key = "$work/pki/gw1.example.test.key"
ca = "$work/pki/ca.crt"
[runtime]
shards = 2
connections_per_shard = 256
CONF
}

# The fleet behind gw1.example.test (gateway_test, group_test): agents
# web01..web$agents, certificates from $work/pki.
# fleet_configs GATEWAY_PORT [GATEWAY_HOST]: writes $work/webNN.toml (host 127.0.0.1).
fleet_configs() {
  local i host=${2:-127.0.0.1}
  for i in $(seq -w 1 "$agents"); do
    cat >"$work/web$i.toml" <<CONF
name = "web$i.example.test"
queue_dir = "$work/queue-web$i"
[[gateways]]
address = "$host:$1"
name = "gw1.example.test"
[tls]
cert = "$work/pki/web$i.example.test.crt"
key = "$work/pki/web$i.example.test.key"
ca = "$work/pki/ca.crt"
CONF
  done
}
# start_agents COUNT RATE: every agent sends COUNT synthetic events at RATE/s
# (agent_pids; agent_logs and the lines each held before, for agents_on).
agent_pids=()
start_agents() {
  local i
  agent_pids=() agent_logs=() agent_log_lines=()
  for i in $(seq -w 1 "$agents"); do
    agent_logs+=("$work/web$i.log")
    agent_log_lines+=("$(cat "$work/web$i.log" 2>/dev/null | wc -l)")
    start agent "$work/web$i.toml" "$work/web$i.log" --synthetic "$2" --count "$1"
    agent_pids+=("$started_pid")
  done
}
# agents_on PARENT_NAME: every agent of the last start_agents has a session
# with that parent (30050 since it started). A test that fails a parent waits
# for this: an agent still connecting meets a different failure.
agents_on() {
  local i
  for i in "${!agent_logs[@]}"; do
    awk -v skip="${agent_log_lines[i]}" -v parent="\"parent\":\"$1\"" \
      'NR > skip && /"event":30050,/ && index($0, parent) { found = 1 } END { exit !found }' \
      "${agent_logs[i]}" || return 1
  done
}
agents_running() {  # every agent of the last start_agents still runs (a parent failed now meets them all)
  local pid
  for pid in "${agent_pids[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}
wait_agents() {  # wait_agents SECONDS: every agent exits 0
  local all=0 pid
  for pid in "${agent_pids[@]}"; do
    wait_exit "$pid" "$1" && [ "$rc" = 0 ] || { fail "agent $pid: exit $rc"; all=1; }
  done
  return $all
}

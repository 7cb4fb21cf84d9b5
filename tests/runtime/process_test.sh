#!/usr/bin/env bash
# The runtime in real processes: SIGTERM/SIGINT under load, environment faults
# (io_uring blocked, RLIMIT_MEMLOCK too low), a full connection table.
# usage: process_test.sh ECHO_SERVER ECHO_CLIENT WITHOUT_IO_URING
set -u
server=$1
client=$2
without_io_uring=$3
work=$(mktemp -d /tmp/gatehouse-process-test-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done; rm -rf "$work"; }
trap cleanup EXIT
failures=0
checks=0
fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }
check() { checks=$((checks + 1)); "$@"; }

start_server() {  # start_server LOG ARGS...: sets server_pid and port
  local log=$1; shift
  "$server" "$@" >"$log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  port=""
  for _ in $(seq 100); do
    port=$(grep -o '"listening":[0-9]*' "$log" 2>/dev/null | cut -d: -f2)
    [ -n "$port" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

wait_exit() {  # wait_exit PID SECONDS: sets rc; fails if it outlives SECONDS
  local pid=$1 limit=$2 waited=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.1
    waited=$((waited + 1))
    if [ "$waited" -ge $((limit * 10)) ]; then rc=timeout; return 1; fi
  done
  wait "$pid"
  rc=$?
}

# 1. SIGTERM under load: stop accepting, drain, exit 0, well within the 5 s drain bound.
check start_server "$work/term.log" --engine uring --shards 2 || fail "server did not start: $(cat "$work/term.log")"
"$client" --target "127.0.0.1:$port" --connections 500 --depth 8 --size 512 --warmup 0 --duration 4 >"$work/client.log" 2>&1 &
client_pid=$!
pids+=("$client_pid")
sleep 1.5
kill -TERM "$server_pid"
start=$(date +%s%N)
wait_exit "$server_pid" 4
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
checks=$((checks + 1))
[ "$rc" = 0 ] || fail "SIGTERM under load: exit $rc, want 0 within 4 s"
checks=$((checks + 1))
grep -q '"accepted_total":500' "$work/term.log" || fail "SIGTERM: not all 500 connections were served: $(tail -1 "$work/term.log")"
echo "SIGTERM under load: exit $rc after ${elapsed_ms} ms"
wait "$client_pid" 2>/dev/null

# 1b. SIGHUP reloads the certificate (event 20053 again) and the server keeps running.
if [ -n "${GATEHOUSE:-}" ]; then
  pki="$work/pki"
  mkdir -p "$pki"
  "$GATEHOUSE" certs init-ca --dir "$pki" >/dev/null
  "$GATEHOUSE" certs issue --ca-dir "$pki" --out "$pki" --role gateway --name gw1.example.test >/dev/null
  check start_server "$work/hup.log" --engine uring --shards 1 --tls-dir "$pki" || fail "TLS server did not start"
  checks=$((checks + 1))
  [ "$(grep -c '"event":20053' "$work/hup.log")" = 1 ] || fail "no certificate_loaded event at start"
  kill -HUP "$server_pid"
  sleep 0.5
  checks=$((checks + 1))
  [ "$(grep -c '"event":20053' "$work/hup.log")" = 2 ] || fail "SIGHUP did not reload the certificate"
  checks=$((checks + 1))
  kill -0 "$server_pid" 2>/dev/null || fail "SIGHUP stopped the server"
  kill -TERM "$server_pid"
  wait_exit "$server_pid" 3
  checks=$((checks + 1))
  [ "$rc" = 0 ] || fail "TLS server: exit $rc after SIGTERM"
fi

# 2. SIGINT, idle.
check start_server "$work/int.log" --engine uring --shards 2 || fail "server did not start"
kill -INT "$server_pid"
wait_exit "$server_pid" 3
checks=$((checks + 1))
[ "$rc" = 0 ] || fail "SIGINT: exit $rc, want 0"

# 3. io_uring blocked (seccomp, as in a container's default profile): a clear cause and fix.
"$without_io_uring" "$server" --engine uring >"$work/seccomp.log" 2>&1
rc=$?
checks=$((checks + 1))
[ "$rc" = 1 ] || fail "io_uring blocked: exit $rc, want 1"
checks=$((checks + 1))
grep -q '"event":30021.*io_uring is not permitted here.*seccomp' "$work/seccomp.log" ||
  fail "io_uring blocked: message lacks cause and fix: $(cat "$work/seccomp.log")"
# A gatehouse role exits 69 (EX_UNAVAILABLE) then: its unit does not restart
# it (RestartPreventExitStatus), a restart cannot bring io_uring back.
if [ -n "${GATEHOUSE:-}" ]; then
  cat >"$work/gateway.toml" <<CONF
name = "gw1.example.test"
listen = "127.0.0.1:0"
admin = { listen = "" }
[[parents]]
address = "127.0.0.1:9"
name = "ms1.example.test"
[tls]
cert = "$pki/gw1.example.test.crt"
key = "$pki/gw1.example.test.key"
ca = "$pki/ca.crt"
[runtime]
shards = 1
connections_per_shard = 64
CONF
  "$without_io_uring" "$GATEHOUSE" gateway -c "$work/gateway.toml" >"$work/role-seccomp.log" 2>&1
  rc=$?
  checks=$((checks + 1))
  [ "$rc" = 69 ] || fail "a gateway without io_uring: exit $rc, want 69: $(tail -2 "$work/role-seccomp.log")"
  checks=$((checks + 1))
  grep -q 'io_uring is not permitted here' "$work/role-seccomp.log" || fail "the gateway names the cause"
fi

# 4. RLIMIT_MEMLOCK too low for an unprivileged process (needs root to drop to nobody).
if [ "$(id -u)" = 0 ] && setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
  # nobody may not reach the build tree (a clone under /root is 0700): a copy
  # of the binary in a folder it can read.
  unprivileged=$(mktemp -d /tmp/gatehouse-nobody-XXXXXX)
  chmod 755 "$unprivileged"
  install -m 755 "$server" "$unprivileged/echo_server"
  setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all \
    prlimit --memlock=0:0 "$unprivileged/echo_server" --engine uring >"$work/memlock.log" 2>&1
  rc=$?
  rm -rf "$unprivileged"
  checks=$((checks + 1))
  [ "$rc" = 1 ] || fail "memlock 0: exit $rc, want 1"
  checks=$((checks + 1))
  grep -q 'not enough locked memory.*RLIMIT_MEMLOCK = 0.*Fix: raise it' "$work/memlock.log" ||
    fail "memlock 0: message lacks cause and fix: $(cat "$work/memlock.log")"
else
  echo "skip: memlock check needs root and setpriv"
fi

# 5. A full direct-descriptor table: event 30020, and the server keeps serving.
check start_server "$work/full.log" --engine uring --shards 1 --connections-per-shard 16 || fail "server did not start"
"$client" --target "127.0.0.1:$port" --connections 40 --depth 1 --size 64 --warmup 0 --duration 1 \
  >"$work/full-client.log" 2>&1
checks=$((checks + 1))
grep -q '"event":30020,"name":"connection_table_full"' "$work/full.log" || fail "table full: no event 30020"
checks=$((checks + 1))
grep -q '"messages":[1-9]' "$work/full-client.log" || fail "table full: the 16 admitted connections did not flow"
kill -TERM "$server_pid"
wait_exit "$server_pid" 8
checks=$((checks + 1))
[ "$rc" = 0 ] || fail "table full: exit $rc after SIGTERM"

echo "runtime processes: $((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]

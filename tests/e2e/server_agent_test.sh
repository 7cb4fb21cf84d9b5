#!/usr/bin/env bash
# Agents straight to a server, as real processes: approvals granted live,
# exactly-once through kill -9 of the server and of an agent, Kerberos agents
# against a real KDC, full and failing disks. usage: server_agent_test.sh GATEHOUSE SOURCE_ROOT
set -u
gatehouse=$1
root=$2
work=$(mktemp -d /tmp/gatehouse-e2e-XXXXXX)
. "$root/tests/e2e/lib.sh"

# ASan runs every step about five times slower: the volume-only steps
# (resumable input, bounded memory) are smaller there; their assertions are
# the same. The bound on memory is checked in the build without ASan.
asan=0
ldd "$gatehouse" 2>/dev/null | grep -q libasan && asan=1
resumable_lines=$((asan ? 25000 : 100000))
bounded_lines=$((asan ? 10000 : 100000))

pki "$work/pki" server:ms1.example.test agent:web01.example.test agent:web02.example.test agent:web03.example.test \
  agent:web04.example.test
write_server_config() {  # write_server_config PORT APPROVAL
  server_config "$1" "$2" "recv_buffers = 64" >"$work/server.toml"
}
restart_server() {  # the server again on the same port (reject mode); sets server_pid
  write_server_config "$port" reject
  start server "$work/server.toml" "$work/server.log" || exit 1
  server_pid=$started_pid
}
agent_config() {  # agent_config NAME PORT
  cat >"$work/$1.toml" <<CONF
name = "$1"
queue_dir = "$work/queue-$1"
[[gateways]]
address = "127.0.0.1:$2"
name = "ms1.example.test"
[tls]
cert = "$work/pki/$1.crt"
key = "$work/pki/$1.key"
ca = "$work/pki/ca.crt"
CONF
}

# 1. Unapproved agent: refused with 20000 at the server and 20070 at the agent;
#    approved live, it flows without a restart of anything.
write_server_config 0 reject
start server "$work/server.toml" "$work/server.log" || exit 1
server_pid=$started_pid
agent_config web01.example.test "$port"
# Line 251 is longer than an event may be (65,536 bytes): refused whole (30043), never cut.
{ seq 1 250 | sed 's/^/web01 event /'; head -c 70000 /dev/zero | tr '\0' x; echo; seq 251 500 | sed 's/^/web01 event /'; } \
  >"$work/input-web01"
start agent "$work/web01.example.test.toml" "$work/web01.log" --file "$work/input-web01"
web01_pid=$started_pid
expect "server logs 20000 for the unapproved agent" wait_for 10 grep -q '"event":20000.*web01.example.test' "$work/server.log"
expect "agent logs 20070" wait_for 10 grep -q '"event":20070' "$work/web01.log"
expect "approve agent" quiet "$gatehouse" approve --config "$work/server.toml" agent web01.example.test --action create
expect "the agent finishes after the live approval" wait_exit "$web01_pid" 60
[ "$rc" = 0 ] || fail "agent exit $rc"
s=$(stats "$work/server.toml")
[ "$(json_field "$s" events)" = 500 ] || fail "after approval: want 500 events, have $s"
ok
expect "the oversized line is refused and said (30043)" grep -q '"event":30043.*"size_bytes":70000' "$work/web01.log"
expect "the agent's last line counts it" grep -q '"event":30002.*"refused":1' "$work/web01.log"
"$gatehouse" approve --config "$work/server.toml" list --json | grep -q '"name":"web01.example.test","state":"approved"' || fail "approve list: $("$gatehouse" approve --config "$work/server.toml" list --json)"
ok

# 2. kill -9 of the server mid-stream, restarted on the same port: nothing lost, nothing twice.
expect "approve web02" quiet "$gatehouse" approve --config "$work/server.toml" agent web02.example.test --action create
agent_config web02.example.test "$port"
start agent "$work/web02.example.test.toml" "$work/web02.log" --synthetic 4000 --count 20000
web02_pid=$started_pid
expect "web02 flows" wait_for 20 bash -c "grep -q '\"event\":30050' '$work/web02.log'"
sleep 1
kill -KILL "$server_pid"
wait "$server_pid" 2>/dev/null
before=$(json_field "$(stats "$work/server.toml")" events)
restart_server
expect "web02 finishes after the server's restart" wait_exit "$web02_pid" 90
[ "$rc" = 0 ] || fail "web02 exit $rc"
s=$(stats "$work/server.toml")
[ "$(json_field "$s" events)" = 20500 ] || fail "after kill -9 of the server: want 20,500 events, have $s (had $before at the kill)"
ok
dumped=$("$gatehouse" store --config "$work/server.toml" dump --agent web02.example.test | grep -o '"seq":[0-9]*' | cut -d: -f2 | sort -n | uniq | wc -l)
[ "$dumped" = 20000 ] || fail "web02: want seqs 1..20000 once each, have $dumped distinct"
ok
# Each record says when the server took it and through which gateways (none: direct).
dump_since() { "$gatehouse" store --config "$work/server.toml" dump --agent web02.example.test --since "$1" | grep -c '"seq"'; }
[ "$(dump_since "$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)")" = 20000 ] || fail "dump --since an hour ago: want all 20,000"
ok
[ "$(dump_since @4102444800)" = 0 ] || fail "dump --since 2100: want none"
ok
"$gatehouse" store --config "$work/server.toml" dump --agent web02.example.test | head -1 |
  grep -qE '"received_at":"20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:.]{15}Z","path":""' || fail "dump: no received_at/path in $("$gatehouse" store --config "$work/server.toml" dump --agent web02.example.test | head -1 | cut -c1-200)"
ok
expect "dump --since refuses a time it cannot read" \
  test "$("$gatehouse" store --config "$work/server.toml" dump --since yesterday 2>&1 >/dev/null; echo "rc=$?")" != rc=0
echo "server kill -9: $before events stored at the kill; after restart $(json_field "$s" events) stored, $(json_field "$s" duplicates_dropped) duplicates dropped"

# 3. kill -9 of an agent mid-stream; restarted on the same queue it resends what was not acknowledged.
expect "approve web03" quiet "$gatehouse" approve --config "$work/server.toml" agent web03.example.test --action create
agent_config web03.example.test "$port"
start agent "$work/web03.example.test.toml" "$work/web03.log" --synthetic 5000 --count 50000
web03_pid=$started_pid
expect "web03 flows" wait_for 20 bash -c "grep -q '\"event\":30050' '$work/web03.log'"
sleep 1.5
expect "web03 still running at the kill" kill -KILL "$web03_pid"
wait "$web03_pid" 2>/dev/null
start agent "$work/web03.example.test.toml" "$work/web03.log" --file /dev/null
web03_pid=$started_pid
expect "web03 drains its queue after the restart" wait_exit "$web03_pid" 60
[ "$rc" = 0 ] || fail "web03 exit $rc"
# What the killed agent had taken from its input is all there, once, in order.
queued=$(grep -o '"last_seq":[0-9]*' "$work/web03.log" | tail -1 | cut -d: -f2)
stored=$("$gatehouse" store --config "$work/server.toml" dump --agent web03.example.test | grep -o '"seq":[0-9]*' | cut -d: -f2)
[ "$(wc -l <<<"$stored")" = "$queued" ] && [ "$(sort -n <<<"$stored" | uniq | wc -l)" = "$queued" ] ||
  fail "web03: the queue held $queued events, the store has $(wc -l <<<"$stored") ($(sort -n <<<"$stored" | uniq | wc -l) distinct)"
ok
echo "agent kill -9: $queued events were in its queue; all stored once"

# 4. An agent whose queue overflows while the server is down (drop-oldest):
#    what it dropped is declared (a gap, 4506 at the agent and at the server),
#    counted in the store, never a silent jump; stored + declared lost = sent.
expect "approve web04" quiet "$gatehouse" approve --config "$work/server.toml" agent web04.example.test --action create
agent_config web04.example.test "$port"
printf 'queue_max_bytes = 65536\nqueue_full = "drop-oldest"\n' | cat - "$work/web04.example.test.toml" >"$work/web04.toml"
kill -TERM "$server_pid"
wait_exit "$server_pid" 10
seq 1 200000 | sed 's/^/web04 event padded to about one hundred bytes so that the queue overflows: /' >"$work/input-web04"
start agent "$work/web04.toml" "$work/web04.log" --file "$work/input-web04"
web04_pid=$started_pid
# The queue's folder, sampled while 20 MB go through a 64 KiB drop-oldest
# queue; the agent is stopped during each sample, so it is one state of it.
(while kill -STOP "$web04_pid" 2>/dev/null; do
   find "$work/queue-web04.example.test" -name 'queue-*.log' -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}'
   kill -CONT "$web04_pid" 2>/dev/null  # (it may have ended: a zombie takes the STOP)
   sleep 0.02
 done >"$work/web04-folder-sizes") &
sampler_pid=$!
expect "web04 drops its oldest (4506)" wait_for 20 grep -qs '"event":4506' "$work/web04.log"
restart_server  # while the input still runs: acknowledgements and drops at once
expect "web04 finishes once the server is back" wait_exit "$web04_pid" 60
[ "$rc" = 0 ] || fail "web04 exit $rc"
s=$(stats "$work/server.toml")
web04_stored=$("$gatehouse" store --config "$work/server.toml" dump --agent web04.example.test | grep -c '"seq"')
lost=$(json_field "$s" events_lost)
[ "$(json_field "$s" gaps)" -ge 1 ] && [ $((web04_stored + lost)) = 200000 ] ||
  fail "web04: want stored + declared lost = 200000, have $web04_stored stored, $lost lost ($s)"
ok
wait "$sampler_pid"
folder_max=$(sort -n "$work/web04-folder-sizes" | tail -1)
[ "$(wc -l <"$work/web04-folder-sizes")" -ge 20 ] && [ "$folder_max" -le 65536 ] ||
  fail "web04: the queue folder must stay within queue_max_bytes = 65536 bytes; it reached $folder_max ($(wc -l <"$work/web04-folder-sizes") samples)"
ok
drop_lines=$(grep -c '"event":4506' "$work/web04.log")
[ "$drop_lines" -le 4 ] || fail "web04: 4506 is said once per 10 s with the count, not per batch: $drop_lines lines"
ok
expect "the server logs the declared gaps (4506 with the count)" grep -q '"event":4506.*web04.example.test.*"dropped":' "$work/server.log"
expect "no DATA out of order" bash -c "! grep -q '\"event\":30063' '$work/server.log'"
echo "drop-oldest: web04 sent 200000, $web04_stored stored, $lost declared dropped; its folder peaked at $folder_max bytes (bound 65536, $(wc -l <"$work/web04-folder-sizes") samples); $drop_lines lines of 4506"

# 4b. A reinstalled agent: web01's queue folder wiped (the server holds its
#     500), then `seq 1 300 | gatehouse agent`: its queue is a new incarnation,
#     so its seqs 1..300 are stored as new (not taken for duplicates), and the
#     server notes it (30065). Then web03's queue restored from an older copy
#     after 200 more were stored: the 100 it then takes are stored too.
rm -rf "$work/queue-web01.example.test"
seq 1 300 | sed 's/^/web01 after the reinstall /' |
  timeout 60 "$gatehouse" agent --config "$work/web01.example.test.toml" 2>>"$work/web01-reinstalled.log"
rc=$?
[ "$rc" = 0 ] || fail "reinstalled web01 exit $rc: $(tail -3 "$work/web01-reinstalled.log")"
web01_dump=$("$gatehouse" store --config "$work/server.toml" dump --agent web01.example.test)
[ "$(grep -c 'web01 after the reinstall' <<<"$web01_dump")" = 300 ] && [ "$(grep -c '"seq"' <<<"$web01_dump")" = 800 ] ||
  fail "reinstalled web01: want its 300 new events stored beside its 500, have $(grep -c 'web01 after the reinstall' <<<"$web01_dump") new of $(grep -c '"seq"' <<<"$web01_dump")"
ok
expect "the server notes the reinstalled queue (30065, below seq 500)" \
  grep -q '"event":30065.*web01.example.test.*after seq 0; its queue starts below seq 500 stored' "$work/server.log"
cp -a "$work/queue-web03.example.test" "$work/queue-web03.example.test.backup"
web03_before=$("$gatehouse" store --config "$work/server.toml" dump --agent web03.example.test | grep -c '"seq"')
for batch in newer restored; do
  [ "$batch" = restored ] && { rm -rf "$work/queue-web03.example.test"; mv "$work/queue-web03.example.test.backup" "$work/queue-web03.example.test"; }
  count=$([ "$batch" = newer ] && echo 200 || echo 100)
  seq 1 "$count" | sed "s/^/web03 $batch /" >"$work/input-web03-$batch"
  start agent "$work/web03.example.test.toml" "$work/web03-$batch.log" --file "$work/input-web03-$batch"
  expect "web03 ($batch) finishes" wait_exit "$started_pid" 60
  [ "$rc" = 0 ] || fail "web03 ($batch) exit $rc"
done
web03_dump=$("$gatehouse" store --config "$work/server.toml" dump --agent web03.example.test)
[ "$(grep -c 'web03 newer' <<<"$web03_dump")" = 200 ] && [ "$(grep -c 'web03 restored' <<<"$web03_dump")" = 100 ] &&
  [ "$(grep -c '"seq"' <<<"$web03_dump")" = $((web03_before + 300)) ] ||
  fail "web03 restored from an older copy: want 200 + 100 new beside $web03_before, have $(grep -c 'web03 newer' <<<"$web03_dump") + $(grep -c 'web03 restored' <<<"$web03_dump") of $(grep -c '"seq"' <<<"$web03_dump")"
ok
expect "the server notes the restored queue (30065)" \
  grep -q '"event":30065.*web03.example.test.*after seq '"$web03_before"'; its queue starts below seq '"$((web03_before + 200))"' stored' "$work/server.log"
echo "reinstall: web01 stored 300 more beside its 500; web03 restored from an older copy stored 200 + 100 beside $web03_before"

# 4c. The queue's file system fills (a 2 MiB tmpfs, in a mount namespace of
#     the agent's own) while the server is down: input pauses (30044), the
#     agent neither exits nor drops a line; when the server is back and ACKs
#     free segments it resumes (30045) and all 40,000 lines are stored once.
if unshare -m true 2>/dev/null; then
  sed "s|queue_dir = .*|queue_dir = \"$work/small/queue\"|" "$work/web02.example.test.toml" >"$work/web02-small.toml"
  mkdir -p "$work/small"
  seq 1 40000 | sed 's/^/web02 on a small disk, a line of about a hundred bytes to fill two mebibytes quickly: /' \
    >"$work/input-small"
  kill -TERM "$server_pid"
  wait_exit "$server_pid" 10
  unshare -m bash -c "mount -t tmpfs -o size=2m tmpfs '$work/small' &&
    exec '$gatehouse' agent --config '$work/web02-small.toml' --file '$work/input-small'" 2>"$work/small.log" &
  small_pid=$!
  expect "input pauses on the full file system (30044)" wait_for 30 grep -q '"event":30044.*file system is full' "$work/small.log"
  kill -0 "$small_pid" 2>/dev/null || fail "the agent ended on a full file system: $(tail -2 "$work/small.log")"
  restart_server
  expect "the agent finishes once the server is back" wait_exit "$small_pid" 120
  [ "$rc" = 0 ] || fail "small-disk agent exit $rc: $(tail -3 "$work/small.log")"
  n=$("$gatehouse" store --config "$work/server.toml" dump --agent web02.example.test | grep -c 'web02 on a small disk')
  [ "$n" = 40000 ] || fail "small disk: want 40000 lines stored, have $n"
  ok
  expect "input resumed (30045)" grep -q '"event":30045' "$work/small.log"
  echo "full queue file system: $(grep -c '"event":30044' "$work/small.log") pause(s); 40000 of 40000 lines stored"
else
  echo "SKIP: no mount namespace here (unshare -m needs root): the full-file-system case"
fi

# 4d. Resumable inputs. kill -9 of `--file` mid-way, then the same command:
#     it goes on where it stopped, every line stored once. `--follow` follows
#     appends, a rotation by rename (the old file read to its end first) and a
#     truncation, like tail -F; a partial last line waits for its newline.
seq 1 "$resumable_lines" | sed 's/^/web03 resumable line /' >"$work/input-resumable"
# A small queue paces the reading by the ACKs, so the kill lands mid-file.
printf 'queue_max_bytes = 262144\n' | cat - "$work/web03.example.test.toml" >"$work/web03-paced.toml"
start agent "$work/web03-paced.toml" "$work/web03-resumable.log" --file "$work/input-resumable"
resumable_pid=$started_pid
resumable_stored() {
  [ "$("$gatehouse" store --config "$work/server.toml" dump --agent web03.example.test | grep -c 'resumable line')" -ge "$1" ]
}
# How far the agent has read: the byte after the last queued line (the
# position file: device, inode, offset, queue seq).
resumable_read_at_least() { [ "$(cut -d' ' -f3 "$work/queue-web03.example.test/input-position" 2>/dev/null)" -ge "$1" ] 2>/dev/null; }
expect "the resumable input is under way" wait_for 30 resumable_read_at_least $(($(stat -c %s "$work/input-resumable") / 5))
kill -KILL "$resumable_pid"
wait "$resumable_pid" 2>/dev/null
resumable_stored "$resumable_lines" && fail "the kill came too late: every line was stored already"
start agent "$work/web03-paced.toml" "$work/web03-resumable.log" --file "$work/input-resumable"
expect "the same command finishes" wait_exit "$started_pid" 60
[ "$rc" = 0 ] || fail "resumed --file exit $rc"
resumed=$("$gatehouse" store --config "$work/server.toml" dump --agent web03.example.test | grep -o 'resumable line [0-9]*')
[ "$(wc -l <<<"$resumed")" = "$resumable_lines" ] && [ "$(sort -u <<<"$resumed" | wc -l)" = "$resumable_lines" ] ||
  fail "kill -9 during --file: want $resumable_lines lines once each, have $(wc -l <<<"$resumed") ($(sort -u <<<"$resumed" | wc -l) distinct)"
ok
expect "the restart said where it resumed (30049)" grep -q '"event":30049.*resumes where the last run stopped' "$work/web03-resumable.log"
follow="$work/input-follow"
seq 1 1000 | sed 's/^/web03 follow first /' >"$follow"
start agent "$work/web03.example.test.toml" "$work/web03-follow.log" --file "$follow" --follow
follow_pid=$started_pid
followed() { "$gatehouse" store --config "$work/server.toml" dump --agent web03.example.test | grep -c "web03 follow $1"; }
stored_all() { [ "$(followed "$1")" = "$2" ]; }
expect "--follow: the first 1000" wait_for 20 stored_all first 1000
seq 1001 2000 | sed 's/^/web03 follow first /' >>"$follow"
printf 'web03 follow first 2001' >>"$follow"
expect "--follow: appends" wait_for 20 stored_all first 2000
printf '\n' >>"$follow"
seq 2002 2500 | sed 's/^/web03 follow first /' >>"$follow"
mv "$follow" "$follow.1"
seq 1 700 | sed 's/^/web03 follow rotated /' >"$follow"
expect "--follow: the rotated file to its end, then the new one" wait_for 20 stored_all rotated 700
: >"$follow"
seq 1 300 | sed 's/^/web03 follow truncated /' >"$follow.new"
cat "$follow.new" >>"$follow"
expect "--follow: the truncated file from its start" wait_for 20 stored_all truncated 300
kill -TERM "$follow_pid"
expect "--follow stops on SIGTERM" wait_exit "$follow_pid" 10
[ "$(followed first)" = 2500 ] && [ "$(followed rotated)" = 700 ] && [ "$(followed truncated)" = 300 ] ||
  fail "--follow: want 2500 + 700 + 300 lines once each, have $(followed first) + $(followed rotated) + $(followed truncated)"
ok
echo "resumable inputs: kill -9 during --file, then the same command: $resumable_lines of $resumable_lines lines once; --follow: 2500 + 700 + 300 through appends, a rotation and a truncation"

# 4f. The systemd journal as input: real journal files (systemd-journal-remote
#     from export format; journald need not run). kill -9 mid-way, and the
#     crash between the queue's write and the cursor's (an older cursor file
#     put back): the same command goes on, every entry stored once, the
#     oversized one refused (30043), never cut. --follow takes a new journal
#     file in the folder.
journal_remote=/lib/systemd/systemd-journal-remote
journal="$work/journal"
mkdir -p "$journal"
python3 "$root/tests/e2e/journal_export.py" 1 30000 web04 | "$journal_remote" -o "$journal/first.journal" - 2>/dev/null ||
  fail "systemd-journal-remote could not write the test journal (tools/bootstrap installs it)"
printf 'queue_max_bytes = 262144\n' | cat - "$work/web04.example.test.toml" >"$work/web04-paced.toml"
journal_stored() { "$gatehouse" store --config "$work/server.toml" dump --agent web04.example.test | grep -o "web04 entry [0-9]*"; }
journal_count_at_least() { [ "$(journal_stored | wc -l)" -ge "$1" ]; }
# How far the agent has queued: the journal's seqnum (hex) in its saved cursor.
journal_queued_at_least() {
  local i
  i=$(sed -n 's/.*;i=\([0-9a-f]*\);.*/\1/p' "$work/queue-web04.example.test/journal-cursor" 2>/dev/null)
  [ -n "$i" ] && [ $((16#$i)) -ge "$1" ]
}
mkdir -p "$work/journal-empty"
"$gatehouse" agent --config "$work/web04-paced.toml" --journal-dir "$work/journal-empty" 2>"$work/journal-empty.log"
[ $? = 0 ] && grep -q '"event":30049.*no journal files are readable' "$work/journal-empty.log" ||
  fail "an empty journal folder must be said (30049), not read as a quiet journal: $(tail -2 "$work/journal-empty.log")"
ok
start agent "$work/web04-paced.toml" "$work/web04-journal.log" --journal-dir "$journal"
journal_pid=$started_pid
expect "the journal input is under way" wait_for 30 journal_queued_at_least 5000
kill -STOP "$journal_pid"
cp "$work/queue-web04.example.test/journal-cursor" "$work/journal-cursor.older"
kill -CONT "$journal_pid"
expect "more of the journal queued after the cursor was copied" wait_for 30 journal_queued_at_least 12000
kill -KILL "$journal_pid"
wait "$journal_pid" 2>/dev/null
journal_queued_at_least 30000 && fail "the kill came too late: every entry was queued already"
cp "$work/journal-cursor.older" "$work/queue-web04.example.test/journal-cursor"
start agent "$work/web04-paced.toml" "$work/web04-journal.log" --journal-dir "$journal"
expect "the same --journal-dir command finishes" wait_exit "$started_pid" 90
[ "$rc" = 0 ] || fail "resumed --journal-dir exit $rc"
entries=$(journal_stored)
[ "$(wc -l <<<"$entries")" = 30000 ] && [ "$(sort -u <<<"$entries" | wc -l)" = 30000 ] ||
  fail "kill -9 during --journal-dir: want 30000 entries once each, have $(wc -l <<<"$entries") ($(sort -u <<<"$entries" | wc -l) distinct)"
ok
skipped=$(grep '"event":30049.*resumes after the saved cursor' "$work/web04-journal.log" | grep -o '"entries_already_queued":[0-9]*' | cut -d: -f2)
[ "${skipped:-0}" -gt 0 ] || fail "the restart on an older cursor must skip what the queue held (30049), saw '${skipped:-}'"
ok
expect "the oversized entry refused whole (30043)" grep -q '"event":30043.*refused, not cut' "$work/web04-journal.log"
# (The dump prints each payload as a JSON string: its quotes escaped.)
first=$("$gatehouse" store --config "$work/server.toml" dump --agent web04.example.test | grep -m1 -F 'web04 entry 1\"')
grep -qF '\"BLOB\":[255,254,0,98,105,110]' <<<"$first" && grep -qF '\"TWICE\":[\"one\",\"two\"]' <<<"$first" &&
  grep -qF '\"__CURSOR\":\"s=' <<<"$first" || fail "entry 1 as JSON (binary field as bytes, a repeated field as an array): $first"
ok
start agent "$work/web04.example.test.toml" "$work/web04-follow.log" --journal-dir "$journal" --follow
journal_follow_pid=$started_pid
python3 "$root/tests/e2e/journal_export.py" 30001 30500 web04 | "$journal_remote" -o "$journal/second.journal" - 2>/dev/null
expect "--journal-dir --follow takes a new journal file" wait_for 30 journal_count_at_least 30500
kill -TERM "$journal_follow_pid"
expect "--journal-dir --follow stops on SIGTERM" wait_exit "$journal_follow_pid" 10
entries=$(journal_stored)
[ "$(wc -l <<<"$entries")" = 30500 ] && [ "$(sort -u <<<"$entries" | wc -l)" = 30500 ] ||
  fail "--follow: want 30500 entries once each, have $(wc -l <<<"$entries")"
ok
# A cursor file that says the queue took more after it than the journal
# holds (a journal file removed): the agent says so and reads every entry
# after the journal's end, not skip new ones.
# (The cursor of entry 30,000: 500 entries follow it; the file says 600.)
last=$(grep '"event":30002' "$work/web04-follow.log" | tail -1 | grep -o '"last_seq":[0-9]*' | cut -d: -f2)
cursor_30000=$("$gatehouse" store --config "$work/server.toml" dump --agent web04.example.test |
  grep -m1 -F 'web04 entry 30000\"' | grep -o '__CURSOR\\":\\"[^\\]*' | sed 's/.*"//')
printf '%s %s\n' "$((last - 600))" "$cursor_30000" >"$work/queue-web04.example.test/journal-cursor"
start agent "$work/web04.example.test.toml" "$work/web04-gone.log" --journal-dir "$journal" --follow
journal_gone_pid=$started_pid
expect "the missing entries are said (30049)" wait_for 30 grep -q '"event":30049.*the journal ends before' "$work/web04-gone.log"
python3 "$root/tests/e2e/journal_export.py" 30501 30600 web04 | "$journal_remote" -o "$journal/third.journal" - 2>/dev/null
expect "entries after the journal's end are read, not skipped" wait_for 30 journal_count_at_least 30600
kill -TERM "$journal_gone_pid"
wait_exit "$journal_gone_pid" 10
entries=$(journal_stored)
[ "$(wc -l <<<"$entries")" = 30600 ] && [ "$(sort -u <<<"$entries" | wc -l)" = 30600 ] ||
  fail "after the missing entries: want 30600 entries once each, have $(wc -l <<<"$entries")"
ok
echo "journal input: kill -9 and an older cursor put back: 30000 of 30000 entries once ($skipped skipped as already queued), 1 oversized refused; --follow: 500 more from a new file"

# 4e. Bounded memory: 100 MB queued while the server is down; the agent's
#     peak RSS stays far below the queue (it holds a 4 MiB window and reads
#     ahead from disk), also when it is restarted on the full queue and while
#     it drains it; then every line is stored once.
kill -TERM "$server_pid"
wait_exit "$server_pid" 10
python3 -c "
import sys
with open(sys.argv[1], 'w') as f:
    for i in range(int(sys.argv[2])): f.write('web02 bounded %06d %s\\n' % (i, 'm' * 980))
" "$work/input-bounded" "$bounded_lines"
{ printf 'queue_max_bytes = 209715200\n'; sed "s|queue_dir = .*|queue_dir = \"$work/queue-bounded\"|" "$work/web02.example.test.toml"; } \
  >"$work/web02-bounded.toml"
start agent "$work/web02-bounded.toml" "$work/bounded.log" --file "$work/input-bounded"
bounded_pid=$started_pid
queued_all() { [ "$(cut -d' ' -f4 "$work/queue-bounded/input-position" 2>/dev/null)" = "$bounded_lines" ]; }
expect "$((bounded_lines / 1000)) MB queued" wait_for 60 queued_all
peak_kib() { grep VmHWM "/proc/$1/status" | awk '{print $2}'; }
peak_queued=$(peak_kib "$bounded_pid")
kill -TERM "$bounded_pid"
wait_exit "$bounded_pid" 10
restart_server
start agent "$work/web02-bounded.toml" "$work/bounded.log" --file "$work/input-bounded"
bounded_pid=$started_pid
peak_drain=0
while kill -0 "$bounded_pid" 2>/dev/null; do
  now=$(peak_kib "$bounded_pid" 2>/dev/null)
  [ -n "$now" ] && [ "$now" -gt "$peak_drain" ] && peak_drain=$now
  sleep 0.1
done
wait_exit "$bounded_pid" 1
[ "$rc" = 0 ] || fail "bounded agent exit $rc"
n=$("$gatehouse" store --config "$work/server.toml" dump --agent web02.example.test | grep -c 'web02 bounded')
[ "$n" = "$bounded_lines" ] || fail "bounded memory: want $bounded_lines lines stored, have $n"
ok
# ASan keeps freed memory in quarantine (256 MB): the bound is checked in
# the build without it (tools/test runs both).
if [ "$asan" = 1 ]; then
  echo "bounded memory: an ASan build, $((bounded_lines / 1000)) MB queued ($peak_queued / $peak_drain KiB, quarantine included): the bound is checked in the optimized build"
else
  [ "$peak_queued" -lt 49152 ] && [ "$peak_drain" -lt 49152 ] ||
    fail "the agent's RSS must stay bounded (< 48 MiB) with 100 MB queued: $peak_queued KiB queueing, $peak_drain KiB draining"
  ok
  echo "bounded memory: 100 MB queued; agent peak RSS $peak_queued KiB while queueing, $peak_drain KiB restarted on it and draining"
fi

# 5. A Kerberos agent (no certificate, no CA) against a real KDC; the server
#    takes cert and Kerberos agents on one port.
if command -v krb5kdc >/dev/null; then
  "$root/tests/krb/kdc" start "$work/kdc" gatehouse/ms1.example.test host/web05.example.test >/dev/null
  export KRB5_CONFIG="$work/kdc/krb5.conf" KRB5RCACHEDIR="$work/kdc"
  kill -TERM "$server_pid"
  wait_exit "$server_pid" 10
  write_server_config "$port" reject
  printf '[kerberos]\nkeytab = "%s"\n' "$work/kdc/ms1.keytab" >>"$work/server.toml"
  start server "$work/server.toml" "$work/server.log" || exit 1
  server_pid=$started_pid
  expect "approve web05" quiet "$gatehouse" approve --config "$work/server.toml" agent web05.example.test --action create
  cat >"$work/web05.toml" <<CONF
name = "web05.example.test"
auth = "kerberos"
queue_dir = "$work/queue-web05"
[[gateways]]
address = "127.0.0.1:$port"
name = "ms1.example.test"
[kerberos]
keytab = "$work/kdc/web05.keytab"
CONF
  seq 1 300 | sed 's/^/web05 event /' >"$work/input-web05"
  start agent "$work/web05.toml" "$work/web05.log" --file "$work/input-web05"
  expect "the Kerberos agent finishes" wait_exit "$started_pid" 30
  [ "$rc" = 0 ] || fail "web05 exit $rc: $(tail -3 "$work/web05.log")"
  n=$("$gatehouse" store --config "$work/server.toml" dump --agent web05.example.test | wc -l)
  [ "$n" = 300 ] || fail "Kerberos agent: want 300 events, have $n"
  ok
  "$root/tests/krb/kdc" stop "$work/kdc"
else
  echo "SKIP: no krb5kdc (tools/bootstrap installs it)"
fi

# 6. The store's disk fills (its events folder a 1 MiB tmpfs, in a mount
#    namespace of the server's own): 30046, nothing more is acknowledged, the
#    server keeps serving; the disk grows (remount) and it resumes by itself
#    (30047): all 30,000 events stored once, no restart.
if unshare -m true 2>/dev/null; then
  kill -TERM "$server_pid"
  wait_exit "$server_pid" 10
  sed "s|^data_dir = .*|data_dir = \"$work/data-small\"|; s|^listen = .*|listen = \"127.0.0.1:0\"|" "$work/server.toml" \
    >"$work/server-small.toml"
  mkdir -p "$work/data-small/events"
  cat >"$work/in-small-namespace" <<WRAP
#!/usr/bin/env bash
# gatehouse with its events folder on a 1 MiB tmpfs of its own
exec unshare -m bash -c 'mount -t tmpfs -o size=1m tmpfs "$work/data-small/events" && exec "$gatehouse" "\$@"' gatehouse "\$@"
WRAP
  chmod +x "$work/in-small-namespace"
  real_gatehouse=$gatehouse
  gatehouse="$work/in-small-namespace"
  start server "$work/server-small.toml" "$work/server-small.log"
  gatehouse=$real_gatehouse
  small_server=$started_pid
  expect "the small-disk server runs" kill -0 "$small_server"
  expect "approve web01 there" quiet "$gatehouse" approve --config "$work/server-small.toml" agent web01.example.test --action create
  agent_config web01.example.test "$port"
  seq 1 30000 | sed 's/^/web01 to a server whose disk fills, a line of about one hundred bytes: /' >"$work/input-disk-full"
  start agent "$work/web01.example.test.toml" "$work/web01-disk-full.log" --file "$work/input-disk-full"
  disk_full_agent=$started_pid
  expect "the server says its disk is full (30046)" wait_for 30 grep -q '"event":30046' "$work/server-small.log"
  sleep 2
  expect "the server is still running" kill -0 "$small_server"
  expect "the agent still runs, its events queued" kill -0 "$disk_full_agent"
  nsenter -t "$small_server" -m mount -o remount,size=64m "$work/data-small/events" || fail "cannot grow the tmpfs"
  expect "the server writes again by itself (30047)" wait_for 20 grep -q '"event":30047' "$work/server-small.log"
  expect "the agent finishes" wait_exit "$disk_full_agent" 60
  [ "$rc" = 0 ] || fail "disk-full agent exit $rc: $(tail -3 "$work/web01-disk-full.log")"
  dump=$(nsenter -t "$small_server" -m "$gatehouse" store --config "$work/server-small.toml" dump --agent web01.example.test)
  [ "$(grep -c 'whose disk fills' <<<"$dump")" = 30000 ] &&
    [ "$(grep -o '"seq":[0-9]*' <<<"$dump" | sort -u | wc -l)" = 30000 ] ||
    fail "disk full: want 30000 events once each, have $(grep -c 'whose disk fills' <<<"$dump")"
  ok
  echo "server disk full: $(grep -o '"full_ms":[0-9]*' "$work/server-small.log" | cut -d: -f2) ms without acknowledging; 30000 of 30000 stored once"
  server_pid=$small_server
else
  echo "SKIP: no mount namespace here (unshare -m needs root): the server's full disk"
fi

kill -TERM "$server_pid"
expect "server stops on SIGTERM" wait_exit "$server_pid" 10
[ "$rc" = 0 ] || fail "server exit $rc"

# 7. One flipped byte in the middle of the store's last segment (not a torn
#    tail): the server refuses to start (30048, file and byte), nothing is cut
#    off; `store verify` names the damage and the events it took; `store
#    salvage` copies every other record; moved into place, the server starts.
segment=$(ls "$work/data/events"/events-*.seg | tail -1)
before=$(json_field "$(stats "$work/server.toml")" events)
size=$(stat -c %s "$segment")
offset=$((size / 2))
byte=$(od -An -tu1 -j "$offset" -N1 "$segment" | tr -d ' ')
printf "\\$(printf '%03o' $((byte ^ 1)))" | dd of="$segment" bs=1 seek="$offset" conv=notrunc status=none
write_server_config "$port" reject
"$gatehouse" server --config "$work/server.toml" 2>"$work/damaged.log"
rc=$?
[ "$rc" != 0 ] && grep -q '"event":30048.*damaged record at byte' "$work/damaged.log" ||
  fail "a damaged store must refuse to start with 30048: exit $rc, $(tail -1 "$work/damaged.log")"
ok
[ "$(stat -c %s "$segment")" = "$size" ] || fail "the damaged segment was cut: $(stat -c %s "$segment") of $size bytes"
ok
verify=$("$gatehouse" store --config "$work/server.toml" verify)
rc=$?
[ "$rc" = 1 ] && grep -q '"damaged":{"file":"'"$segment"'"' <<<"$verify" || fail "store verify: exit $rc, $verify"
ok
"$gatehouse" store --config "$work/server.toml" salvage --to "$work/salvaged" >"$work/salvage.out"
lost=$(json_field "$(tail -1 "$work/salvage.out")" events_lost)
kept=$(json_field "$(tail -1 "$work/salvage.out")" records_kept)
mv "$work/data/events" "$work/data/events.damaged" && mv "$work/salvaged" "$work/data/events"
after=$(json_field "$(stats "$work/server.toml")" events)
[ "$lost" -ge 1 ] && [ "$after" = $((before - lost)) ] ||
  fail "salvage: $before events before, $lost named lost, $after after ($(cat "$work/salvage.out"))"
ok
start server "$work/server.toml" "$work/server.log" || exit 1
kill -TERM "$started_pid"
expect "the salvaged store's server stops on SIGTERM" wait_exit "$started_pid" 10
echo "store damage: one flipped byte at $offset of $size; refused to start; salvage kept $kept records, named $lost event(s) lost ($before -> $after)"

# 8. The store's disk fails under it: fdatasync returns EIO (its events folder
#    an ext4 on a loop device whose backing file sits on a 3 MiB tmpfs; the
#    file system outgrows it). The server stops (exit 1) with 30041 naming the
#    segment file, and acknowledges nothing it could not sync: every event the
#    agent saw acknowledged is in the store (read back from the image), every
#    other one is still in the agent's queue.
eio_ready() {
  mkdir -p "$work/eio-backing" "$work/data-eio/events" &&
    mount -t tmpfs -o size=3m tmpfs "$work/eio-backing" 2>/dev/null && mounts+=("$work/eio-backing") &&
    truncate -s 64M "$work/eio-backing/disk.img" && mkfs.ext4 -q -F "$work/eio-backing/disk.img" &&
    eio_dev=$(losetup -f --show "$work/eio-backing/disk.img" 2>/dev/null) && loops+=("$eio_dev")
}
if unshare -m true 2>/dev/null && eio_ready; then
  sed "s|^data_dir = .*|data_dir = \"$work/data-eio\"|; s|^listen = .*|listen = \"127.0.0.1:0\"|" "$work/server.toml" \
    >"$work/server-eio.toml"
  cat >"$work/in-eio-namespace" <<WRAP
#!/usr/bin/env bash
# gatehouse with its events folder on the failing disk, mounted in a namespace of its own
exec unshare -m bash -c 'mount "$eio_dev" "$work/data-eio/events" && exec "$gatehouse" "\$@"' gatehouse "\$@"
WRAP
  chmod +x "$work/in-eio-namespace"
  real_gatehouse=$gatehouse
  gatehouse="$work/in-eio-namespace"
  start server "$work/server-eio.toml" "$work/server-eio.log"
  gatehouse=$real_gatehouse
  eio_server=$started_pid
  expect "approve web02 at the failing-disk server" quiet "$gatehouse" approve --config "$work/server-eio.toml" agent web02.example.test --action create
  agent_config web02.example.test "$port"
  sed -i "s|queue_dir = .*|queue_dir = \"$work/queue-eio\"|" "$work/web02.example.test.toml"
  seq 1 60000 | sed 's/^/web02 to a server whose disk fails, a line of about one hundred bytes: /' >"$work/input-eio"
  start agent "$work/web02.example.test.toml" "$work/web02-eio.log" --file "$work/input-eio"
  eio_agent=$started_pid
  expect "the failing-disk server stops" wait_exit "$eio_server" 60
  [ "$rc" = 1 ] || fail "a failed fdatasync stops the server with exit 1, not $rc"
  grep '"event":30041' "$work/server-eio.log" | grep -q "$work/data-eio/events/events-.*Input/output error" ||
    fail "30041 must name the segment file and the error: $(grep '"event":30041' "$work/server-eio.log")"
  ok
  expect "the agent keeps its events (still running)" kill -0 "$eio_agent"
  kill -TERM "$eio_agent"
  wait_exit "$eio_agent" 10
  acked=$(cat "$work/queue-eio/acked")
  last=$(grep '"event":30002' "$work/web02-eio.log" | grep -o '"last_seq":[0-9]*' | cut -d: -f2)
  queued=$(grep '"event":30002' "$work/web02-eio.log" | grep -o '"queued":[0-9]*' | cut -d: -f2)
  # Read back as after a reboot: a copy of the image (on a disk with room),
  # its journal replayed by the mount.
  cp --sparse=always "$work/eio-backing/disk.img" "$work/eio-copy.img"
  eio_dump=$(unshare -m bash -c 'mount -o loop "$1" "$2/data-eio/events" && "$3" store --config "$2/server-eio.toml" dump --agent web02.example.test' \
    _ "$work/eio-copy.img" "$work" "$gatehouse" | grep -o '"seq":[0-9]*' | cut -d: -f2 | sort -n -u)
  in_store=$(awk -v a="$acked" '$1 <= a' <<<"$eio_dump" | grep -c .)
  [ "$acked" -ge 1 ] && [ "$in_store" = "$acked" ] && [ $((last - acked)) = "$queued" ] && [ "$queued" -ge 1 ] ||
    fail "EIO: $acked acknowledged, $in_store of them in the store; the agent holds $queued (last seq $last)"
  ok
  echo "store disk EIO: the server stopped (30041, exit 1); $acked acknowledged events all in the store, $queued still in the agent's queue"
else
  echo "SKIP: no mount namespace or loop device here: the store's failing disk (EIO)"
fi

# 9. Events out of the store: `store dump` of every agent is valid JSON line
#    by line, with the agent on each; a payload that is not UTF-8 (a raw
#    latin-1 byte) comes out unchanged as payload_base64. `store agents`
#    lists every agent with its counts, which add up to `store stats`.
write_server_config 0 reject
start server "$work/server.toml" "$work/server-out.log" || exit 1  # a log of its own: its port
server_pid=$started_pid
agent_config web02.example.test "$port"
printf 'caf\xe9 latin-1\nweb02 plain utf-8 caf\xc3\xa9\n' >"$work/input-encodings"
start agent "$work/web02.example.test.toml" "$work/web02-encodings.log" --file "$work/input-encodings"
expect "web02 sends a latin-1 and a UTF-8 line" wait_exit "$started_pid" 30
"$gatehouse" store --config "$work/server.toml" dump >"$work/dump-all.jsonl"
python3 - "$work/dump-all.jsonl" <<'PY' || fail "store dump: not valid JSON line by line, or a payload changed"
import base64, json, sys
lines = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8")]
assert all("agent" in line for line in lines)
raw = [l for l in lines if l["agent"] == "web02.example.test" and "payload_base64" in l]
assert [base64.b64decode(l["payload_base64"]) for l in raw] == [b"caf\xe9 latin-1"], raw
assert any(l.get("payload") == "web02 plain utf-8 caf\u00e9" for l in lines)
PY
ok
s=$(stats "$work/server.toml")
"$gatehouse" store --config "$work/server.toml" agents >"$work/agents.jsonl"
listed=$(wc -l <"$work/agents.jsonl")
listed_events=$(grep -o '"events":[0-9]*' "$work/agents.jsonl" | cut -d: -f2 | awk '{s += $1} END {print s}')
[ "$listed" = "$(json_field "$s" agents)" ] && [ "$listed_events" = "$(json_field "$s" events)" ] ||
  fail "store agents: $listed agents, $listed_events events; stats: $s"
ok
kill -TERM "$server_pid"
expect "server stops on SIGTERM" wait_exit "$server_pid" 10
echo "store out: $(wc -l <"$work/dump-all.jsonl") lines of valid JSON from dump, a latin-1 payload as base64; $listed agents listed, $listed_events events"

# 10. The store over time: `store dump --follow --cursor-file` takes each
#     event once as it comes and goes on after its own restart; retention by
#     size removes whole old segments (30075) while the index keeps every
#     agent's progress: held + removed = sent; a cursor whose segments were
#     removed is told so and goes on from the oldest kept; a restart reads
#     the index, not every record.
server_config 0 reject "[store]" "segment_max_bytes = 1048576" "retention_max_bytes = 3145728" |
  sed "s|^data_dir = .*|data_dir = \"$work/data-retention\"|" >"$work/server-retention.toml"
start server "$work/server-retention.toml" "$work/server-retention.log" || exit 1
retention_pid=$started_pid
expect "approve web02 on the retention server" quiet "$gatehouse" approve --config "$work/server-retention.toml" \
  agent web02.example.test --action create
agent_config web02.example.test "$port"
retention_lines() {  # retention_lines FIRST LAST: input lines of about 100 bytes
  seq "$1" "$2" | sed 's/^/web02 retention line /; s/$/ padded to about one hundred bytes of payload per event, each/'
}
followed() { grep -o 'retention line [0-9]*' "$@" 2>/dev/null; }
lines_in() { [ "$(followed "$1" | wc -l)" -ge "$2" ]; }
follow_from_cursor() {  # follow_from_cursor OUTPUT: sets follower_pid
  "$gatehouse" store --config "$work/server-retention.toml" dump --follow --cursor-file "$work/retention.cursor" \
    >"$1" 2>"$1.err" &
  follower_pid=$!
  pids+=("$follower_pid")
}
follow_from_cursor "$work/followed-1.jsonl"
retention_lines 1 5000 >"$work/input-retention-1"
start agent "$work/web02.example.test.toml" "$work/web02-retention.log" --file "$work/input-retention-1"
expect "the first 5000 sent" wait_exit "$started_pid" 60
expect "--follow takes them as they come" wait_for 30 lines_in "$work/followed-1.jsonl" 5000
kill -TERM "$follower_pid"
expect "--follow stops on SIGTERM" wait_exit "$follower_pid" 10
[ "$rc" = 0 ] || fail "--follow exit $rc after SIGTERM"
retention_lines 5001 10000 >"$work/input-retention-2"
start agent "$work/web02.example.test.toml" "$work/web02-retention.log" --file "$work/input-retention-2"
expect "the next 5000 sent while no one follows" wait_exit "$started_pid" 60
follow_from_cursor "$work/followed-2.jsonl"
expect "the cursor goes on where the last follower stopped" wait_for 30 lines_in "$work/followed-2.jsonl" 5000
kill -TERM "$follower_pid"
wait_exit "$follower_pid" 10
both=$(followed "$work/followed-1.jsonl" "$work/followed-2.jsonl" | cut -d: -f2)
[ "$(followed "$work/followed-1.jsonl" | wc -l)" = 5000 ] && [ "$(followed "$work/followed-2.jsonl" | wc -l)" = 5000 ] &&
  [ "$(sort -u <<<"$both" | wc -l)" = 10000 ] ||
  fail "follow + cursor: want 5000 then 5000 more, 10000 distinct; have $(followed "$work/followed-1.jsonl" | wc -l) + $(followed "$work/followed-2.jsonl" | wc -l), $(sort -u <<<"$both" | wc -l) distinct"
ok
retention_lines 10001 60000 >"$work/input-retention-3"
start agent "$work/web02.example.test.toml" "$work/web02-retention.log" --file "$work/input-retention-3"
expect "50000 more sent" wait_exit "$started_pid" 120
expect "retention removed old segments (30075)" wait_for 10 grep -q '"event":30075.*retention_max_bytes' "$work/server-retention.log"
s=$(stats "$work/server-retention.toml")
held=$(json_field "$s" events)
[ "$((held + $(json_field "$s" events_expired)))" = 60000 ] && [ "$(json_field "$s" segments_expired)" -ge 3 ] ||
  fail "retention: want held + removed = 60000 and at least 3 segments removed: $s"
ok
[ "$(find "$work/data-retention/events" -name '*.seg' -printf '%s\n' | awk '{s += $1} END {print s}')" -le 4194304 ] ||
  fail "retention: the segments hold more than retention_max_bytes + one segment"
ok
follow_from_cursor "$work/followed-3.jsonl"
expect "a cursor past removed segments: said, and it goes on from the oldest kept" \
  wait_for 30 grep -q 'removed by retention before this dump read them' "$work/followed-3.jsonl.err"
expect "... up to the last event" wait_for 30 grep -q 'retention line 60000 ' "$work/followed-3.jsonl"
kill -TERM "$follower_pid"
wait_exit "$follower_pid" 10
[ "$(followed "$work/followed-3.jsonl" | wc -l)" = "$held" ] ||
  fail "after removed segments: want the $held events held, have $(followed "$work/followed-3.jsonl" | wc -l)"
ok
kill -TERM "$retention_pid"
expect "the retention server stops" wait_exit "$retention_pid" 10
start server "$work/server-retention.toml" "$work/server-retention.log" || exit 1
retention_pid=$started_pid
grep -q '"event":30074' "$work/server-retention.log" && fail "the index must be used at a restart: $(grep '"event":30074' "$work/server-retention.log")"
ok
[ "$(stats "$work/server-retention.toml")" = "$s" ] || fail "stats after the restart: $(stats "$work/server-retention.toml"), before: $s"
ok
expect "store agents counts web02's removed events too" \
  grep -q '"agent":"web02.example.test","events":60000,' <("$gatehouse" store --config "$work/server-retention.toml" agents)
kill -TERM "$retention_pid"
wait_exit "$retention_pid" 10
echo "store over time: --follow with a cursor 5000 + 5000 once; retention removed $(json_field "$s" segments_expired) segments ($(json_field "$s" events_expired) events), $held held; the cursor past them went on from the oldest kept"

echo "server-agent: $((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]

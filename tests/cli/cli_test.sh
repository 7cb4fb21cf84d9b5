#!/usr/bin/env bash
# The gatehouse binary as a user runs it: subcommands, exit codes, messages.
# usage: cli_test.sh GATEHOUSE_BINARY SOURCE_ROOT
set -u
gatehouse=$1
source_root=$2
work=$(mktemp -d /tmp/gatehouse-cli-test-XXXXXX)
trap 'rm -rf "$work"' EXIT
failures=0
checks=0

fail() { printf 'FAIL: %s\n' "$*"; failures=$((failures + 1)); }
# expect_exit CODE DESCRIPTION -- COMMAND...: runs COMMAND, keeps its output in $work/out.
expect_exit() {
  local want=$1 what=$2; shift 3
  checks=$((checks + 1))
  "$@" >"$work/out" 2>&1
  local got=$?
  [ "$got" -eq "$want" ] || { fail "$what: exit $got, want $want"; sed 's/^/    /' "$work/out"; }
}
expect_output() {  # expect_output PATTERN DESCRIPTION: $work/out matches PATTERN
  checks=$((checks + 1))
  grep -qE -- "$1" "$work/out" || { fail "$2: output lacks /$1/"; sed 's/^/    /' "$work/out"; }
}

expect_exit 0 "--help" -- "$gatehouse" --help
for sub in gateway server agent approve certs status store check-config; do
  expect_output "^  $sub " "--help lists $sub"
done
expect_exit 64 "no subcommand" -- "$gatehouse"
expect_exit 64 "unknown subcommand" -- "$gatehouse" frobnicate
expect_output "unknown subcommand 'frobnicate'" "unknown subcommand message"
expect_output "^usage: " "unknown subcommand usage line"
expect_exit 64 "unknown flag" -- "$gatehouse" check-config --config x --frob
expect_output "unknown option '--frob'" "unknown flag message"
expect_output "^usage: gatehouse check-config" "unknown flag usage line"
expect_exit 64 "flag without its value" -- "$gatehouse" check-config --config
expect_exit 64 "check-config without --config" -- "$gatehouse" check-config
expect_exit 78 "a role with a missing config file (EX_CONFIG)" -- "$gatehouse" gateway --config "$work/absent.toml"
expect_output '"event":30003' "config problem logged as event 30003"
expect_exit 78 "a role without --config reads the installed default, absent here" -- "$gatehouse" server
expect_output '/etc/gatehouse/server.toml: cannot open config file' "the default path is named"
# Every subcommand's and verb's --help: exit 0, every flag listed.
for spec in "gateway:--config" "server:--config" "agent:--journal-dir" "approve:--pending" "certs:--valid-from" \
  "status:--timeout-ms" "agents:--state" "store:--cursor-file" "check-config:--role" "proto:--each" "version:-V"; do
  expect_exit 0 "${spec%%:*} --help" -- "$gatehouse" "${spec%%:*}" --help
  expect_output "^usage: gatehouse ${spec%%:*}" "${spec%%:*} --help: usage"
  expect_output "${spec#*:}" "${spec%%:*} --help lists ${spec#*:}"
done
expect_exit 0 "certs issue --help (a verb's)" -- "$gatehouse" certs issue --help
expect_output "--key-type ec\|rsa" "certs issue --help lists --key-type"
expect_exit 0 "approve list -h" -- "$gatehouse" approve list -h
expect_output "^  -c, --config FILE" "approve -h lists -c"
expect_exit 0 "--version" -- "$gatehouse" --version
expect_output "^gatehouse [0-9]+\.[0-9]+\.[0-9]+" "--version names the release"
expect_exit 0 "-V" -- "$gatehouse" -V
expect_output "^tls: BoringSSL" "-V names BoringSSL"
expect_exit 0 "version" -- "$gatehouse" version
expect_output "^tls: BoringSSL" "version names BoringSSL"

# check-config: a valid file, and an invalid one with file:line: key: reason.
"$gatehouse" certs init-ca --dir "$work/expki" >/dev/null
for name in gw1 gw2; do
  "$gatehouse" certs issue --ca-dir "$work/expki" --out "$work/expki" --role gateway --name "$name.example.test" >/dev/null
done
# The README's way: tools/examples makes every file the examples name.
expect_exit 0 "tools/examples" -- env GATEHOUSE="$gatehouse" "$source_root/tools/examples" "$work/examples"
for example in gateway server agent agent-kerberos; do
  expect_exit 0 "check-config on examples/$example.toml as tools/examples lays it out" -- \
    "$gatehouse" check-config -c "$work/examples/$example.toml"
done
cp "$work/examples/"{gw1.crt,gw1.key,gw1.keytab,ca.crt,gateway.toml} "$work/"
expect_exit 0 "check-config on the example gateway" -- "$gatehouse" check-config --config "$work/gateway.toml"
expect_output "valid gateway config for 'gw1.example.test', listen 0.0.0.0:5723, 2 parent" "check-config summary"
# What the role would refuse at start: another certificate's key, a server's name.
cp "$work/expki/gw2.example.test.key" "$work/gw1.key"
expect_exit 78 "check-config: a certificate and key that are not a pair" -- "$gatehouse" check-config --config "$work/gateway.toml"
expect_output "tls: key mismatch: .*gw1.key is not the private key of .*gw1.crt" "the mismatch named"
expect_output "the role would not start \(1 problem\)" "one problem"
cp "$work/examples/gw1.key" "$work/gw1.key"
sed 's/^name = "gw1.example.test"/name = "gw9.example.test"/' "$work/gateway.toml" >"$work/gw9.toml"
expect_exit 78 "check-config: a name its certificate does not carry" -- "$gatehouse" check-config --config "$work/gw9.toml"
expect_output "tls: name mismatch: expected gw9.example.test" "the name named"
sed -e 's/^shards = 0/shards = -1/' -e 's/^key = "gw1.key"/kee = "gw1.key"/' "$work/gateway.toml" >"$work/bad.toml"
expect_exit 78 "check-config on a broken file (EX_CONFIG)" -- "$gatehouse" check-config --config "$work/bad.toml"
expect_output "bad.toml:[0-9]+: tls.kee: unknown key" "unknown key reported with line"
expect_output "bad.toml:[0-9]+: runtime.shards: must be between 0 and 256, not -1" "range error reported"
expect_output "bad.toml:[0-9]+: tls.key: missing \(required\)" "missing key reported"
expect_output "invalid \(3 problems\)" "problem count"
expect_exit 78 "check-config role conflict" -- "$gatehouse" check-config --config "$work/gateway.toml" --role server
# A keytab that is not one: refused as the start would refuse it.
cp "$work/gw1.keytab" "$work/gw1.keytab.good"
echo x >"$work/gw1.keytab"
expect_exit 78 "check-config: an acceptor keytab that is not a keytab" -- "$gatehouse" check-config --config "$work/gateway.toml"
expect_output "kerberos: keytab .*gw1.keytab: " "the keytab named"
mv "$work/gw1.keytab.good" "$work/gw1.keytab"
# --dump: the effective config, defaults included, and it loads back.
expect_exit 0 "check-config --dump" -- "$gatehouse" check-config -c "$work/gateway.toml" --dump
expect_output "^handshake_timeout_ms = 5000$" "--dump prints a default (handshake_timeout_ms)"
expect_output "^name = 'gw1.example.test'$" "--dump prints the file's name"
grep -v '^#' "$work/out" >"$work/dumped.toml"
expect_exit 0 "the dump loads back as a valid config" -- "$gatehouse" check-config -c "$work/dumped.toml"

# store dump: a cursor file that is not one is refused, not read from the start.
for f in ms1.crt ms1.key; do echo x >"$work/$f"; done
sed "s|^data_dir = .*|data_dir = \"$work/data\"|" "$source_root/examples/server.toml" >"$work/server.toml"
mkdir -p "$work/data/events"
echo "hello" >"$work/bad.cursor"
expect_exit 1 "store dump with a bad cursor file" -- "$gatehouse" store --config "$work/server.toml" dump --cursor-file "$work/bad.cursor"
expect_output "bad.cursor: not a store cursor" "bad cursor named"

# A data folder another user owns (the service's): approve refuses, naming
# the owner, instead of leaving files the server could not write.
mkdir -p "$work/owned"
chown 65534 "$work/owned"
sed "s|^data_dir = .*|data_dir = \"$work/owned\"|" "$source_root/examples/server.toml" >"$work/owned.toml"
expect_exit 1 "approve in another user's data folder" -- "$gatehouse" approve --config "$work/owned.toml" gateway gw1.example.test --action create
expect_output "owned belongs to user [a-z0-9]+, not to root who runs this: run it as that user \(sudo -u" "the owner named"
[ -e "$work/owned/registry.db" ] && fail "a registry.db was left in another user's folder"

# status: a config it cannot load (78), an instance that is not running (69).
expect_exit 78 "status with a missing config" -- "$gatehouse" status --config "$work/absent.toml"
expect_output "cannot open config file" "status names the config problem"
closed_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed "s|^listen = \"127.0.0.1:9723\".*|listen = \"127.0.0.1:$closed_port\"|" "$work/gateway.toml" >"$work/gateway-closed.toml"
expect_exit 69 "status of an instance that is not running" -- "$gatehouse" status --config "$work/gateway-closed.toml"
expect_output "cannot ask gw1.example.test at 127.0.0.1:$closed_port: Connection refused \(is it running\?\)" "status says why"
expect_exit 64 "status without --config" -- "$gatehouse" status --json
expect_exit 69 "-c is --config" -- "$gatehouse" status -c "$work/gateway-closed.toml"
expect_output "cannot ask gw1.example.test" "status -c reads the config"

# proto: the sample stream decodes; a cut or corrupted stream is refused precisely.
"$gatehouse" proto sample >"$work/sample.bin"
expect_exit 0 "decode the sample stream" -- "$gatehouse" proto decode "$work/sample.bin"
expect_output "18 frames, 683 bytes" "every sample frame decoded"
expect_output '"type":"OPEN_DENY","channel":2,"reason":"not_approved","event_id":20000' "OPEN_DENY decoded"
head -c 300 "$work/sample.bin" >"$work/cut.bin"
expect_exit 1 "decode a cut stream" -- "$gatehouse" proto decode "$work/cut.bin"
expect_output "stream ends inside the frame at byte 281 \(truncated\)" "cut stream message"
printf '\002' | dd of="$work/sample.bin" bs=1 seek=49 conv=notrunc status=none
expect_exit 1 "decode a corrupted stream" -- "$gatehouse" proto decode - <"$work/sample.bin"
expect_output "frame at byte 49: bad_version" "corrupted stream message"

# certs: a dev PKI, checked by gatehouse and independently by the openssl CLI.
pki="$work/pki"
mkdir -p "$pki"
expect_exit 0 "certs init-ca" -- "$gatehouse" certs init-ca --dir "$pki"
expect_output "wrote .*/ca.crt and .*/ca.key \(CA \"gatehouse dev CA\", ECDSA P-256" "init-ca summary"
checks=$((checks + 1))
[ "$(stat -c %a "$pki/ca.key")" = 600 ] || fail "ca.key is not mode 0600"
expect_exit 1 "init-ca refuses to overwrite" -- "$gatehouse" certs init-ca --dir "$pki"
expect_output "ca.key exists; pass --force" "overwrite refusal message"
issue() { "$gatehouse" certs issue --ca-dir "$pki" --out "$pki" "$@" >"$work/out" 2>&1 || fail "certs issue $*: $(cat "$work/out")"; }
issue --role gateway --name gw1.example.test
issue --role server --name ms1.example.test --key-type rsa
issue --role agent --name web01.example.test
issue --role agent --name old.example.test --valid-from 2020-01-01 --days 30
issue --role agent --name future.example.test --valid-from 2099-01-01
if command -v openssl >/dev/null; then
  for name in gw1 ms1 web01; do
    expect_exit 0 "openssl verifies $name" -- openssl verify -CAfile "$pki/ca.crt" "$pki/$name.example.test.crt"
  done
  expect_exit 0 "openssl reads the gateway's extensions" -- openssl x509 -in "$pki/gw1.example.test.crt" -noout -ext subjectAltName,extendedKeyUsage,basicConstraints
  expect_output "DNS:gw1.example.test" "SAN as openssl sees it"
  expect_output "TLS Web Server Authentication, TLS Web Client Authentication" "EKU as openssl sees it"
  expect_output "CA:FALSE" "leaf is not a CA"
fi
check_cert() { "$gatehouse" certs check --ca "$pki/ca.crt" "$@"; }
c() { echo "--cert $pki/$1.example.test.crt --key $pki/${2:-$1}.example.test.key"; }
expect_exit 0 "check a good gateway cert" -- check_cert $(c gw1) --name gw1.example.test --role gateway
expect_output "usable: /CN=gw1.example.test, DNS:gw1.example.test, EKU serverAuth\+clientAuth" "usable summary"
expect_exit 0 "check a good RSA server cert" -- check_cert $(c ms1) --name ms1.example.test --role server
expect_exit 1 "expired" -- check_cert $(c old) --role agent
expect_output "certificate expired: notAfter Jan 31 00:00:00 2020 GMT" "expired line"
expect_exit 1 "not yet valid" -- check_cert $(c future)
expect_output "certificate not yet valid: notBefore Jan  1 00:00:00 2099 GMT \(check this host's clock\)" "not yet valid line"
expect_exit 1 "key mismatch" -- check_cert $(c web01 gw1)
expect_output "key mismatch: .*gw1.example.test.key is not the private key of .*web01.example.test.crt" "key mismatch line"
expect_exit 1 "agent cert used for a gateway" -- check_cert $(c web01) --role gateway
expect_output "wrong EKU: role gateway needs serverAuth\+clientAuth; this certificate has clientAuth" "EKU line"
expect_exit 1 "name mismatch" -- check_cert $(c gw1) --name gw2.example.test
expect_output "name mismatch: expected gw2.example.test, the certificate names gw1.example.test" "name line"
other="$work/other-ca"
mkdir -p "$other"
"$gatehouse" certs init-ca --dir "$other" --name "partner CA" >/dev/null
expect_exit 1 "chain to another CA (the DMZ agent without the root CA)" -- "$gatehouse" certs check $(c gw1) --ca "$other/ca.crt"
expect_output "chain broken: issuer /CN=gatehouse dev CA is not a CA in .*other-ca/ca.crt .*install the root CA that issued it" "chain line"
expect_exit 1 "several problems, one line each" -- check_cert $(c old web01) --role server --name x.example.test
expect_output "unusable \(4 problems\)" "problem count"
issue --role agent --name lost.example.test
expect_exit 0 "revoke a lost agent's certificate" -- "$gatehouse" certs revoke --ca-dir "$pki" --cert "$pki/lost.example.test.crt"
expect_output "revoked /CN=lost.example.test in .*ca.crl \(1 revoked" "revoke summary"
expect_exit 0 "revoke a second one keeps the first" -- "$gatehouse" certs revoke --ca-dir "$pki" --cert "$pki/old.example.test.crt"
expect_output "\(2 revoked" "CRL keeps earlier entries"
expect_exit 1 "revoke twice" -- "$gatehouse" certs revoke --ca-dir "$pki" --cert "$pki/lost.example.test.crt"
expect_output "already revoked" "double revoke message"
expect_exit 1 "revoke another CA's certificate" -- "$gatehouse" certs revoke --ca-dir "$other" --cert "$pki/gw1.example.test.crt"
expect_output "was issued by /CN=gatehouse dev CA, not by this CA" "foreign revoke message"
expect_exit 1 "check a revoked certificate" -- check_cert $(c lost) --crl "$pki/ca.crl"
expect_output "revoked: .*ca.crl lists this certificate" "revoked line"
expect_exit 0 "an unrevoked certificate passes the CRL check" -- check_cert $(c web01) --crl "$pki/ca.crl"
if command -v openssl >/dev/null; then
  expect_exit 2 "openssl sees the revocation too" -- openssl verify -crl_check -CAfile "$pki/ca.crt" -CRLfile "$pki/ca.crl" "$pki/lost.example.test.crt"
  expect_output "certificate revoked" "openssl's verdict"
fi
# certs crl: the same entries signed again with a new nextUpdate; one already past it is refused by check.
expect_exit 0 "crl renewal in the past" -- "$gatehouse" certs crl --ca-dir "$pki" --days 10 --valid-from 2020-01-01
expect_output "renewed .*ca.crl \(2 revoked, next update Jan 11 00:00:00 2020 GMT\)" "crl renewal summary"
expect_exit 1 "check with an expired CRL" -- check_cert $(c web01) --crl "$pki/ca.crl"
expect_output "CRL expired: .*ca.crl has nextUpdate" "expired CRL line"
expect_exit 0 "crl renewal" -- "$gatehouse" certs crl --ca-dir "$pki" --days 30
expect_output "renewed .*ca.crl \(2 revoked" "crl renewal keeps the entries"
expect_exit 0 "a fresh CRL passes the check again" -- check_cert $(c web01) --crl "$pki/ca.crl"
expect_exit 64 "issue without --role" -- "$gatehouse" certs issue --name a.example.test
expect_exit 1 "issue without a CA" -- "$gatehouse" certs issue --role agent --name a.example.test --ca-dir "$work/none" --out "$work"
expect_output "create a CA with: gatehouse certs init-ca" "missing CA hint"

# Ticket keys for a gateway tier: created 0600, rotated with the newest first.
keys="$work/ticket.keys"
expect_exit 0 "ticket-keys creates" -- "$gatehouse" certs ticket-keys --file "$keys"
checks=$((checks + 1))
[ "$(stat -c %a "$keys")" = 600 ] || fail "ticket key file mode $(stat -c %a "$keys")"
first=$(grep -v '^#' "$keys")
expect_exit 0 "ticket-keys rotates" -- "$gatehouse" certs ticket-keys --file "$keys" --keep 2
expect_exit 0 "ticket-keys rotates again" -- "$gatehouse" certs ticket-keys --file "$keys" --keep 2
checks=$((checks + 1))
[ "$(grep -vc '^#' "$keys")" = 2 ] && ! grep -q "$first" "$keys" || fail "rotation must keep the 2 newest keys"
expect_exit 64 "ticket-keys --keep out of range" -- "$gatehouse" certs ticket-keys --file "$keys" --keep 9
echo "not a key" >"$work/bad.keys"
expect_exit 1 "ticket-keys refuses a broken file" -- "$gatehouse" certs ticket-keys --file "$work/bad.keys"
expect_output "a ticket key is 160 hex digits" "broken ticket key file named"

# OpenSSL 3 must never share the process with BoringSSL.
checks=$((checks + 1))
if ldd "$gatehouse" | grep -qE 'libcrypto\.so\.3|libssl\.so\.3'; then fail "the binary links OpenSSL 3"; fi
openssl3=$(ls /usr/lib/*/libcrypto.so.3 /lib/*/libcrypto.so.3 2>/dev/null | head -1)
if [ -n "$openssl3" ]; then
  # Under ASan a preload trips ASan's own link-order check first; skip that so
  # our guard is what refuses.
  expect_exit 1 "refuse to run with OpenSSL 3 preloaded" -- \
    env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" LD_PRELOAD="$openssl3" "$gatehouse" version
  expect_output '"event":30004,"name":"forbidden_library_loaded"' "forbidden library event"
fi

echo "cli: $((checks - failures)) passed, $failures failed"
[ "$failures" -eq 0 ]

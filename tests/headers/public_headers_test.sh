#!/usr/bin/env bash
# Public headers (include/gatehouse) name no third-party TLS, io_uring, GSSAPI
# or Kerberos header and no private header of src/: every role that includes
# them stays free of those libraries' declarations. (The build target
# public_header_check compiles each one on its own.)
# usage: public_headers_test.sh SOURCE_ROOT
set -uo pipefail
root=$1
failed=0
while IFS= read -r line; do
  echo "FAIL: $line"
  failed=$((failed + 1))
done < <(grep -rnE '^\s*#\s*include\s*[<"](openssl/|liburing|gssapi|krb5|tls/|runtime/ring|krb/)' "$root/include")
checked=$(find "$root/include/gatehouse" -name '*.h' | wc -l)
echo "public headers: $checked checked, $failed forbidden includes"
[ "$failed" -eq 0 ]

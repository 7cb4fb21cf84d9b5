# Sourced by tools/demo, tools/test and tools/fuzz: a step that fails names
# itself and shows its own output, never a silent non-zero exit.

# quietly NAME CMD...: runs CMD with its output kept aside; on failure prints
# that output (its last 60 lines) and the step's name, and returns CMD's status.
quietly() {
  local name=$1; shift
  local log rc=0
  log=$(mktemp /tmp/gatehouse-step-XXXXXX)
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -60 "$log" | sed 's/^/  | /' >&2
    printf '%s: step "%s" failed (exit %d): %s\n' "${0##*/}" "$name" "$rc" "$*" >&2
  fi
  rm -f "$log"
  return "$rc"
}

// Invariants that stay checked in release builds, at the places where a bug
// would corrupt state (credit accounting, routes, queue indices, generations):
// a broken one logs event 30090 with the expression and aborts, instead of
// running on with corrupted state. `assert` is compiled out in release.
#pragma once

namespace gatehouse::log {
[[noreturn]] void invariant_failed(const char* expression, const char* file, int line);
}  // namespace gatehouse::log

#define GH_INVARIANT(condition) \
  ((condition) ? static_cast<void>(0) : ::gatehouse::log::invariant_failed(#condition, __FILE__, __LINE__))

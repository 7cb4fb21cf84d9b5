// Moving a TLS session's sealed bytes to its connection. Nothing may be
// dropped (a lost piece of a TLS stream corrupts everything after it): what
// the send queue refuses waits in `unsent` and goes first next time.
#pragma once

#include <array>
#include <span>
#include <vector>

#include "gatehouse/runtime/shard.h"

namespace gatehouse::net {

// `Source` has pull_ciphertext(span) -> size_t (tls::Session, ChildSession).
// True when everything went to the send queue.
template <class Source>
bool flush_ciphertext(runtime::Shard& shard, runtime::ConnId id, Source& source, std::vector<std::byte>& unsent) {
  if (!unsent.empty()) {
    if (!shard.send(id, unsent)) return false;
    unsent.clear();
  }
  std::array<std::byte, runtime::kSendChunkBytes> chunk;
  while (size_t n = source.pull_ciphertext(chunk)) {
    if (!shard.send(id, std::span(chunk).first(n))) {
      unsent.assign(chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
      return false;
    }
  }
  return true;
}

}  // namespace gatehouse::net

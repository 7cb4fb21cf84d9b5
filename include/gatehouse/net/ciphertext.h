// Moving a TLS session's sealed bytes to its connection. Nothing may be
// dropped (a lost piece of a TLS stream corrupts everything after it): what
// the send queue refuses stays in the session and goes first next time.
#pragma once

#include <algorithm>
#include <span>

#include "gatehouse/runtime/shard.h"

namespace gatehouse::net {

// `Source` has ciphertext() -> span and consume_ciphertext(n) (tls::Session,
// ChildSession): bytes go from its queue straight into the send queue. True
// when everything went; false when the send queue is full (on_send_space
// follows).
template <class Source>
bool flush_ciphertext(runtime::Shard& shard, runtime::ConnId id, Source& source) {
  for (;;) {
    const std::span<const std::byte> pending = source.ciphertext();
    if (pending.empty()) return true;
    const size_t take = std::min<size_t>(pending.size(), runtime::kSendChunkBytes);
    if (!shard.send(id, pending.first(take))) return false;
    source.consume_ciphertext(take);
  }
}

}  // namespace gatehouse::net

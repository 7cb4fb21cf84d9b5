// Parent addresses, resolved off the shards. getaddrinfo blocks (DNS), so a
// resolver thread looks up every named parent at start, again every
// refresh_interval_ms, and soon after a shard reports that connecting to one
// failed; shards only read the latest answer, which never blocks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gatehouse/config/config_types.h"
#include "gatehouse/runtime/runtime_types.h"

namespace gatehouse::net {

inline constexpr uint32_t kAddressRefreshIntervalMs = 30'000;  // DNS answers are re-read this often

class AddressBook {
 public:
  // `peers` in failover order; lookup(i) answers for peers[i]. The first
  // lookups run here, on the caller's thread (start-up, before the shards).
  AddressBook(const std::vector<config::Peer>& peers, uint32_t refresh_interval_ms);
  ~AddressBook();
  AddressBook(const AddressBook&) = delete;
  AddressBook& operator=(const AddressBook&) = delete;

  // Any thread, never blocks: the last good address of peers[peer], else
  // false and why (the name did not resolve yet).
  bool lookup(size_t peer, runtime::PeerAddress& address, std::string& why) const;
  // Any thread, never blocks: resolve peers[peer] again soon (its address
  // may have moved). Numeric addresses never change and are not looked up.
  void refresh_soon(size_t peer);
  // Any thread, never blocks: try a TCP connect to peers[peer] soon (off the
  // shards; failback asks whether the first parent is back). Each success
  // bumps reachable_count(peer).
  void probe_soon(size_t peer);
  uint64_t reachable_count(size_t peer) const { return reachable_[peer].load(std::memory_order_acquire); }

 private:
  struct Answer {
    bool resolved = false;
    runtime::PeerAddress address;
    std::string why;
  };
  void resolve(size_t peer);
  void probe(size_t peer);
  void run();

  const std::vector<config::Endpoint> endpoints_;
  const uint32_t refresh_interval_ms_;
  std::vector<std::atomic<std::shared_ptr<const Answer>>> answers_;  // by peer
  std::vector<bool> named_;  // needs DNS (not a numeric address)
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<bool> wanted_;  // refresh_soon() requests, under mutex_
  std::vector<bool> probe_wanted_;  // probe_soon() requests, under mutex_
  std::vector<std::atomic<uint64_t>> reachable_;  // successful probes, by peer
  bool stopping_ = false;
  std::thread thread_;  // only when a peer is named or there is a later parent to fail back from
};

// A failover list's address books across reloads, on the thread that
// reloads: the current one, and retired ones until no link holds them any
// more (their shards took the new list). They are released here, never on
// a shard: a book's destructor joins its resolver thread.
class AddressBooks {
 public:
  explicit AddressBooks(std::shared_ptr<AddressBook> first) { held_.push_back(std::move(first)); }
  const std::shared_ptr<AddressBook>& current() const { return held_.front(); }
  // A book for `peers` (looked up now, on this thread) becomes the current one.
  const std::shared_ptr<AddressBook>& replace(const std::vector<config::Peer>& peers, uint32_t refresh_interval_ms);

 private:
  std::vector<std::shared_ptr<AddressBook>> held_;  // [0] current; then retired ones, a few at most
};

}  // namespace gatehouse::net

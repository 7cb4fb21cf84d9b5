// Batches and a writer harness shared by the local store's and PostgreSQL
// store's tests: what a shard would submit, and what it gets back.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "gatehouse/store/backend.h"
#include "test_support.h"

namespace gatehouse::testing {

inline constexpr uint64_t kIncarnation = 0x1111'2222'3333'4444;

// `count` events of `agent` from `first_seq`, payload "AGENT event SEQ".
inline store::Batch* batch_of(const std::string& agent, uint64_t first_seq, uint64_t count,
                              uint64_t incarnation = kIncarnation, const std::string& path = "") {
  auto* batch = new store::Batch;
  for (uint64_t seq = first_seq; seq < first_seq + count; ++seq) {
    const std::string payload = agent + " event " + std::to_string(seq);
    batch->entries.push_back({seq, 0, agent, incarnation, seq, 0, static_cast<uint32_t>(batch->payloads.size()),
                              static_cast<uint32_t>(payload.size()), 0, path});
    const auto* bytes = reinterpret_cast<const std::byte*>(payload.data());
    batch->payloads.insert(batch->payloads.end(), bytes, bytes + payload.size());
  }
  return batch;
}

// Runs a store and records, per agent, the highest durable seq any delivered
// batch reported (what the ACKs would carry).
struct StoreWriter {
  void start(std::unique_ptr<store::Backend> started) {
    backend = std::move(started);
    backend->start([this](store::Batch* batch) {
      std::lock_guard lock(mutex);
      for (const store::Batch::Entry& entry : batch->entries) {
        acked[entry.agent] = std::max(acked[entry.agent], entry.durable_seq);
      }
      delete batch;
      delivered.fetch_add(1);
    });
  }
  void submit(store::Batch* batch) {
    while (!backend->submit(batch)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    submitted.fetch_add(1);
  }
  void wait(std::chrono::seconds limit = std::chrono::seconds(10)) {
    REQUIRE(wait_until([&] { return delivered.load() == submitted.load(); }, limit));
  }
  uint64_t acked_of(const std::string& agent) {
    std::lock_guard lock(mutex);
    return acked[agent];
  }
  std::unique_ptr<store::Backend> backend;
  std::mutex mutex;
  std::map<std::string, uint64_t> acked;
  std::atomic<uint64_t> submitted{0};
  std::atomic<uint64_t> delivered{0};
};

}  // namespace gatehouse::testing

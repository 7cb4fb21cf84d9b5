// The event store on a real file system: group commit, durable seqs, duplicates
// across restarts, recovery of a torn tail, refusal of damage elsewhere.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "gatehouse/store/crc32c.h"
#include "gatehouse/store/record_io.h"
#include "gatehouse/store/store.h"
#include "store_support.h"
#include "test_support.h"

using namespace gatehouse::store;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using gatehouse::testing::batch_of;
using gatehouse::testing::kIncarnation;

namespace {

struct TempDir : gatehouse::testing::TempDir {
  TempDir() : gatehouse::testing::TempDir("store-test") { REQUIRE(!path.empty()); }
};

// Runs a local store (the shared Writer of store_support.h).
struct Writer : gatehouse::testing::StoreWriter {
  explicit Writer(const std::string& dir) {
    std::string why;
    auto local = EventStore::open(dir, {}, why);
    REQUIRE_MESSAGE(local != nullptr, why);
    store = local.get();
    start(std::move(local));
  }
  EventStore* store = nullptr;
};

// Every record of `agent` (empty: all) from the oldest.
bool dump_all(const std::string& dir, const std::string& agent, const std::function<void(const StoredEvent&)>& on_event,
              std::string& why) {
  LogPosition position;
  DumpNotes notes;
  return EventStore::dump(dir, {agent, 0}, position, on_event, notes, why);
}

std::vector<uint64_t> dumped_seqs(const std::string& dir, const std::string& agent) {
  std::vector<uint64_t> seqs;
  std::string why;
  REQUIRE(dump_all(dir, agent, [&](const StoredEvent& event) {
    CHECK(std::string(reinterpret_cast<const char*>(event.payload.data()), event.payload.size()) ==
          agent + " event " + std::to_string(event.seq));
    seqs.push_back(event.seq);
  }, why));
  return seqs;
}

}  // namespace

TEST_CASE("crc32c: the known check value, and the hardware path equals the table at every length and alignment") {
  const std::string check = "123456789";
  CHECK(crc32c(reinterpret_cast<const std::byte*>(check.data()), check.size()) == 0xE3069283u);
  CHECK(crc32c_portable(reinterpret_cast<const std::byte*>(check.data()), check.size()) == 0xE3069283u);
  CHECK(crc32c(nullptr, 0) == 0);
  std::vector<std::byte> bytes(4'096 + 16);
  uint32_t x = 0x9E3779B9u;
  for (std::byte& b : bytes) b = static_cast<std::byte>((x = x * 1'664'525u + 1'013'904'223u) >> 24);
  for (size_t offset = 0; offset < 8; ++offset)
    for (size_t size : {0, 1, 7, 8, 9, 15, 16, 17, 63, 256, 1'000, 4'096}) {
      CAPTURE(offset);
      CAPTURE(size);
      REQUIRE(crc32c(bytes.data() + offset, size) == crc32c_portable(bytes.data() + offset, size));
    }
  const std::string path = crc32c_in_hardware() ? "the CPU instruction" : "the table";
  MESSAGE("crc32c uses " << path);
}

TEST_CASE("store: group commit acknowledges durable seqs; duplicates are dropped and counted across restarts") {
  TempDir dir;
  {
    Writer writer(dir.path);
    std::thread second([&] {
      for (uint64_t i = 0; i < 50; ++i) writer.submit(batch_of("web02", 1 + i * 20, 20));
    });
    for (uint64_t i = 0; i < 50; ++i) writer.submit(batch_of("web01", 1 + i * 10, 10));
    second.join();
    writer.submit(batch_of("web01", 495, 10));  // 495..500 again, 501..504 new
    writer.wait();
    CHECK(writer.acked["web01"] == 504);
    CHECK(writer.acked["web02"] == 1'000);
    const StoreStats stats = writer.store->stats();
    CHECK(stats.agents == 2);
    CHECK(stats.events == 1'504);
    CHECK(stats.duplicates_dropped == 6);
  }
  Writer reopened(dir.path);
  CHECK(reopened.store->resume_point("web01", kIncarnation).durable_seq == 504);
  CHECK(reopened.store->resume_point("web02", kIncarnation).durable_seq == 1'000);
  CHECK(reopened.store->resume_point("web03", kIncarnation).durable_seq == 0);
  reopened.submit(batch_of("web01", 1, 3));  // a resend after a restart: all duplicates
  reopened.wait();
  CHECK(reopened.acked["web01"] == 504);
  CHECK(reopened.store->stats().duplicates_dropped == 9);
  std::vector<uint64_t> expected(504);
  for (uint64_t i = 0; i < 504; ++i) expected[i] = i + 1;
  CHECK(dumped_seqs(dir.path, "web01") == expected);
  StoreStats stats;
  std::string why;
  REQUIRE(EventStore::read_stats(dir.path, stats, why));
  CHECK(stats.events == 1'504);
  CHECK(stats.duplicates_dropped == 9);
  uint64_t payload_bytes = 0;
  for (uint64_t seq = 1; seq <= 504; ++seq) payload_bytes += ("web01 event " + std::to_string(seq)).size();
  for (uint64_t seq = 1; seq <= 1'000; ++seq) payload_bytes += ("web02 event " + std::to_string(seq)).size();
  CHECK(stats.bytes == payload_bytes);
}

TEST_CASE("store: a declared gap is durable like an event: the agent's durable seq passes it, the stats count it, dump shows it") {
  TempDir dir;
  {
    Writer writer(dir.path);
    writer.submit(batch_of("web01", 1, 5));
    Batch* gap = batch_of("web01", 11, 1);  // the gap 6..10 first, then event 11
    gap->entries.insert(gap->entries.begin(), {10, 0, "web01", kIncarnation, 10, 6, 0, 0, 0, ""});
    writer.submit(gap);
    writer.wait();
    CHECK(writer.acked["web01"] == 11);
    CHECK(writer.store->stats().gaps == 1);
    CHECK(writer.store->stats().events_lost == 5);
    CHECK(writer.store->stats().events == 6);
  }
  Writer reopened(dir.path);
  CHECK(reopened.store->resume_point("web01", kIncarnation).durable_seq == 11);
  StoreStats stats;
  std::string why;
  REQUIRE(EventStore::read_stats(dir.path, stats, why));
  CHECK(stats.gaps == 1);
  CHECK(stats.events_lost == 5);
  std::vector<std::pair<uint64_t, uint64_t>> dumped;  // (gap first seq or 0, seq)
  REQUIRE(dump_all(dir.path, "web01", [&](const StoredEvent& event) {
    dumped.emplace_back(event.gap_first_seq, event.seq);
  }, why));
  CHECK(dumped == std::vector<std::pair<uint64_t, uint64_t>>{{0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5}, {6, 10}, {0, 11}});
}

TEST_CASE("store: seqs are unique per incarnation: a reinstalled agent's seq 1 is stored beside its old seq 1") {
  TempDir dir;
  constexpr uint64_t kReinstalled = 0x5555'6666'7777'8888;
  {
    Writer writer(dir.path);
    writer.submit(batch_of("web01", 1, 50));
    writer.submit(batch_of("web01", 1, 20, kReinstalled));  // its queue was wiped: seqs start again
    writer.submit(batch_of("web01", 15, 10, kReinstalled));  // 15..20 resent, 21..24 new
    writer.wait();
    CHECK(writer.store->stats().events == 74);
    CHECK(writer.store->stats().duplicates_dropped == 6);
  }
  Writer reopened(dir.path);
  const ResumePoint old_one = reopened.store->resume_point("web01", kIncarnation);
  CHECK(old_one.known);
  CHECK(old_one.durable_seq == 50);
  CHECK(old_one.latest_incarnation == kReinstalled);
  CHECK(old_one.latest_durable_seq == 24);
  const ResumePoint unknown = reopened.store->resume_point("web01", 0x9999);
  CHECK_FALSE(unknown.known);
  CHECK(unknown.durable_seq == 0);
  CHECK(unknown.latest_incarnation == kReinstalled);
  CHECK_FALSE(reopened.store->resume_point("web02", kIncarnation).known);
  std::map<uint64_t, uint64_t> events_by_incarnation;
  std::string why;
  REQUIRE(dump_all(dir.path, "web01", [&](const StoredEvent& event) {
    ++events_by_incarnation[event.incarnation];
  }, why));
  CHECK(events_by_incarnation == std::map<uint64_t, uint64_t>{{kIncarnation, 50}, {kReinstalled, 24}});
}

// Records carry when the server took each event and its gateway path; a
// store written before (type 4 records, neither) still opens and dumps.
TEST_CASE("store: events carry their received time and path; records of the earlier format still read") {
  TempDir dir;
  {
    std::vector<std::byte> legacy;  // one type-4 event record: web00, incarnation 1, seq 1, payload "old"
    const std::string name = "web00";
    const std::string payload = "old";
    append_record(legacy, static_cast<uint32_t>(1 + 1 + name.size() + 16 + payload.size()), [&](std::byte* body) {
      body[0] = std::byte{4};
      body[1] = static_cast<std::byte>(name.size());
      std::memcpy(body + 2, name.data(), name.size());
      put_u64(body + 2 + name.size(), 1);
      put_u64(body + 2 + name.size() + 8, 1);
      std::memcpy(body + 2 + name.size() + 16, payload.data(), payload.size());
    });
    std::ofstream segment(fs::path(dir.path) / "events-00000001.seg", std::ios::binary);
    segment.write(reinterpret_cast<const char*>(legacy.data()), static_cast<std::streamsize>(legacy.size()));
  }
  const int64_t before_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                std::chrono::system_clock::now().time_since_epoch()).count();
  {
    Writer writer(dir.path);
    CHECK(writer.store->resume_point("web00", 1).durable_seq == 1);
    writer.submit(batch_of("web01", 1, 3, kIncarnation, "gw2.example.test>gw1.example.test"));
    writer.wait();
  }
  std::vector<StoredEvent> events;
  std::string why;
  REQUIRE(dump_all(dir.path, "", [&](const StoredEvent& event) { events.push_back(event); }, why));
  REQUIRE(events.size() == 4);
  CHECK(events[0].agent == "web00");
  CHECK(events[0].received_unix_us == 0);  // the earlier format kept no time
  CHECK(std::string(reinterpret_cast<const char*>(events[0].payload.data()), events[0].payload.size()) == "old");
  for (size_t i = 1; i < 4; ++i) {
    CHECK(events[i].path == "gw2.example.test>gw1.example.test");
    CHECK(events[i].received_unix_us >= before_us);
    CHECK(events[i].received_unix_us < before_us + 60'000'000);
  }
  CHECK(std::string(reinterpret_cast<const char*>(events[3].payload.data()), events[3].payload.size()) == "web01 event 3");
}

TEST_CASE("store: a torn tail is truncated at open; nothing acknowledged is lost") {
  TempDir dir;
  {
    Writer writer(dir.path);
    writer.submit(batch_of("web01", 1, 100));
    writer.wait();
  }
  const fs::path segment = fs::path(dir.path) / "events-00000001.seg";
  const auto good_size = fs::file_size(segment);
  {
    std::ofstream torn(segment, std::ios::app | std::ios::binary);
    torn.write("\x40\x00\x00\x00\x12\x34", 6);  // a header cut short by the crash
  }
  Writer reopened(dir.path);
  CHECK(reopened.store->stats().torn_bytes_truncated == 6);
  CHECK(fs::file_size(segment) == good_size);
  CHECK(reopened.store->resume_point("web01", kIncarnation).durable_seq == 100);
  reopened.submit(batch_of("web01", 101, 5));
  reopened.wait();
  CHECK(dumped_seqs(dir.path, "web01").size() == 105);
}

TEST_CASE("store: damage in a sealed segment: dump and verify name it; without the index, open refuses") {
  TempDir dir;
  {
    std::string why;
    auto store = EventStore::open(dir.path, {.segment_max_bytes = 1'024}, why);
    REQUIRE(store != nullptr);
    std::atomic<int> delivered{0};
    store->start([&](Batch* batch) {
      delete batch;
      delivered.fetch_add(1);
    });
    for (uint64_t i = 0; i < 10; ++i) {
      REQUIRE(store->submit(batch_of("web01", 1 + i * 20, 20)));
      REQUIRE(gatehouse::testing::wait_until([&] { return delivered.load() == static_cast<int>(i + 1); }, 10s));
    }
  }
  const fs::path first = fs::path(dir.path) / "events-00000001.seg";
  REQUIRE(fs::exists(fs::path(dir.path) / "events-00000002.seg"));
  {
    std::fstream file(first, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(20);
    file.put('X');  // flips a payload byte: the checksum no longer matches
  }
  std::string why;
  // Start-up reads the index and the last segment (like Kafka's recovery
  // point): a sealed segment's damage is found by the readers and verify.
  CHECK(EventStore::open(dir.path, {}, why) != nullptr);
  CHECK(!dump_all(dir.path, "", [](const StoredEvent&) {}, why));
  CHECK(why.find(first.string() + ": damaged record at byte 0") == 0);
  DamageReport report;
  REQUIRE(EventStore::salvage(dir.path, "", report, why));
  REQUIRE(report.damaged.size() == 1);
  CHECK(report.damaged[0].file == first.string());
  fs::remove(fs::path(dir.path) / "index");  // rebuilt from every segment: the damage refuses
  CHECK(EventStore::open(dir.path, {}, why) == nullptr);
  CHECK(why.find(first.string() + ": damaged record at byte 0, with ") == 0);
}

TEST_CASE("store: one flipped byte in the middle of the last segment refuses to open (not a torn tail); salvage keeps every other record and names the lost seq") {
  TempDir dir;
  {
    Writer writer(dir.path);
    for (uint64_t i = 0; i < 10; ++i) writer.submit(batch_of("web01", 1 + i * 100, 100));
    writer.wait();
  }
  const fs::path segment = fs::path(dir.path) / "events-00000001.seg";
  const auto size = fs::file_size(segment);
  {
    std::fstream file(segment, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(size / 2));
    const int byte = file.peek();
    file.put(static_cast<char>(byte ^ 0x01));
  }
  std::string why;
  CHECK(EventStore::open(dir.path, {}, why) == nullptr);
  CHECK(why.find(segment.string() + ": damaged record at byte ") == 0);
  CHECK(fs::file_size(segment) == size);  // nothing truncated: acknowledged events are not cut off
  DamageReport report;
  const std::string salvaged = dir.path + "/salvaged";
  REQUIRE_MESSAGE(EventStore::salvage(dir.path, salvaged, report, why), why);
  REQUIRE(report.damaged.size() == 1);
  CHECK(report.damaged[0].file == segment.string());
  REQUIRE(report.lost.size() == 1);
  CHECK(report.lost[0].agent == "web01");
  CHECK(report.lost[0].incarnation == kIncarnation);
  CHECK(report.lost[0].first_seq == report.lost[0].last_seq);  // the one record the byte was in
  CHECK(report.records_kept == 999);
  Writer reopened(salvaged);
  CHECK(reopened.store->stats().events == 999);
  CHECK(reopened.store->resume_point("web01", kIncarnation).durable_seq == 1'000);
}

// The local store's index on a real file system: restarts read only what
// comes after it and still know everything; retention removes whole old
// segments and keeps the dedupe; a damaged or contradicted index is said.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "gatehouse/store/store.h"
#include "gatehouse/store/store_index.h"
#include "store_support.h"
#include "test_support.h"

using namespace gatehouse::store;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using gatehouse::testing::batch_of;
using gatehouse::testing::kIncarnation;

namespace {

struct TempDir : gatehouse::testing::TempDir {
  TempDir() : gatehouse::testing::TempDir("store-index-test") { REQUIRE(!path.empty()); }
};

constexpr StoreLimits kSmallSegments{.segment_max_bytes = 4'096};

struct Writer : gatehouse::testing::StoreWriter {
  Writer(const std::string& dir, const StoreLimits& limits) {
    std::string why;
    auto local = EventStore::open(dir, limits, why);
    REQUIRE_MESSAGE(local != nullptr, why);
    store = local.get();
    start(std::move(local));
  }
  // `batches` batches of 20 events of `agent` from seq `first`, one at a time.
  void write(const std::string& agent, uint64_t first, int batches) {
    for (int i = 0; i < batches; ++i) {
      submit(batch_of(agent, first + static_cast<uint64_t>(i) * 20, 20));
      wait();
    }
  }
  EventStore* store = nullptr;
};

std::vector<std::string> dumped(const std::string& dir, const std::string& agent, LogPosition& position,
                                bool& ok, std::string& why) {
  std::vector<std::string> payloads;
  DumpNotes notes;
  ok = EventStore::dump(dir, {agent, 0}, position, [&](const StoredEvent& event) {
    payloads.emplace_back(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
  }, notes, why);
  return payloads;
}

void flip_byte(const fs::path& file, std::streamoff at) {
  std::fstream out(file, std::ios::in | std::ios::out | std::ios::binary);
  out.seekg(at);
  const char was = static_cast<char>(out.get());
  out.seekp(at);
  out.put(static_cast<char>(was ^ 0x20));
}

fs::path segment_path(const std::string& dir, uint64_t number) {
  char name[64];
  std::snprintf(name, sizeof name, "events-%08llu.seg", static_cast<unsigned long long>(number));
  return fs::path(dir) / name;
}

size_t segment_files(const std::string& dir) {
  size_t count = 0;
  for (const auto& entry : fs::directory_iterator(dir)) count += entry.path().extension() == ".seg";
  return count;
}

}  // namespace

TEST_CASE("store index: a restart from an older index (a crash before its rewrite) knows exactly what a full read knows") {
  TempDir dir;
  const fs::path index_file = fs::path(index_path(dir.path));
  {
    Writer writer(dir.path, kSmallSegments);
    writer.write("web01", 1, 8);
    REQUIRE(fs::exists(index_file));  // written at the first new segment
    fs::copy_file(index_file, dir.path + "/index.older");
    writer.write("web02", 1, 8);
    writer.write("web01", 161, 4);
    writer.submit(batch_of("web02", 150, 20));  // 150..160 are duplicates
    writer.wait();
  }
  StoreIndex at_close;
  std::string why;
  REQUIRE(read_index(dir.path, at_close, why) == IndexRead::found);
  CHECK(at_close.covered.offset_bytes == fs::file_size(segment_path(dir.path, at_close.covered.segment)));
  CHECK(at_close.stats.events == 16 * 20 + 4 * 20 + 9);
  fs::rename(dir.path + "/index.older", index_file);
  const std::string full = dir.path + "-full";
  fs::copy(dir.path, full);
  fs::remove(fs::path(full) / "index");
  std::unique_ptr<EventStore> from_index = EventStore::open(dir.path, kSmallSegments, why);
  REQUIRE_MESSAGE(from_index != nullptr, why);
  std::unique_ptr<EventStore> from_all = EventStore::open(full, kSmallSegments, why);
  REQUIRE_MESSAGE(from_all != nullptr, why);
  const StoreStats a = from_index->stats();
  const StoreStats b = from_all->stats();
  CHECK(a.events == b.events);
  CHECK(a.events == 409);
  CHECK(a.bytes == b.bytes);
  CHECK(a.duplicates_dropped == b.duplicates_dropped);
  CHECK(a.duplicates_dropped == 11);
  CHECK(a.agents == 2);
  CHECK(a.segments == b.segments);
  for (const char* agent : {"web01", "web02"}) {
    const ResumePoint p = from_index->resume_point(agent, kIncarnation);
    const ResumePoint q = from_all->resume_point(agent, kIncarnation);
    CHECK(p.durable_seq == q.durable_seq);
    CHECK(p.base_seq == q.base_seq);
  }
  CHECK(from_index->resume_point("web01", kIncarnation).durable_seq == 240);
  CHECK(from_index->resume_point("web02", kIncarnation).durable_seq == 169);
  std::vector<AgentSummary> listed;
  REQUIRE(EventStore::agent_summaries(dir.path, listed, why));
  REQUIRE(listed.size() == 2);
  CHECK(listed[0].events == 240);
  CHECK(listed[1].events == 169);
  from_index.reset();
  from_all.reset();
  fs::remove_all(full);
}

TEST_CASE("store index: retention by size removes whole old segments; a resend of a removed seq is still a duplicate") {
  TempDir dir;
  const StoreLimits limits{.segment_max_bytes = 4'096, .retention_max_bytes = 12'288};
  {
    Writer writer(dir.path, limits);
    writer.write("web01", 1, 30);
    CHECK(segment_files(dir.path) <= 4);
    const StoreStats stats = writer.store->stats();
    CHECK(stats.segments_expired > 0);
    CHECK(stats.events + stats.events_expired == 600);
    writer.submit(batch_of("web01", 1, 20));  // long gone from the disk, still known as stored
    writer.wait();
    CHECK(writer.acked_of("web01") == 600);
    CHECK(writer.store->stats().duplicates_dropped == 20);
  }
  std::string why;
  auto reopened = EventStore::open(dir.path, limits, why);
  REQUIRE_MESSAGE(reopened != nullptr, why);
  const StoreStats stats = reopened->stats();
  CHECK(stats.events + stats.events_expired == 600);
  CHECK(stats.duplicates_dropped == 20);
  CHECK(reopened->resume_point("web01", kIncarnation).durable_seq == 600);
  LogPosition position;
  bool ok = false;
  const auto kept = dumped(dir.path, "web01", position, ok, why);
  REQUIRE(ok);
  CHECK(kept.size() == stats.events);
  CHECK(kept.back() == "web01 event 600");
  StoreStats read;
  REQUIRE(EventStore::read_stats(dir.path, read, why));
  CHECK(read.events == stats.events);
  CHECK(read.events_expired == stats.events_expired);
}

TEST_CASE("store index: retention by age removes the segments whose newest event is older than retention_days") {
  TempDir dir;
  {
    Writer writer(dir.path, kSmallSegments);
    writer.write("web01", 1, 12);
  }
  // The first segment's events said to be ten days old (the index is what
  // retention reads; the records keep their real times).
  StoreIndex index;
  std::string why;
  REQUIRE(read_index(dir.path, index, why) == IndexRead::found);
  REQUIRE(index.segments.size() >= 3);
  const uint64_t first = index.segments[0].number;
  const uint64_t first_events = index.segments[0].events;
  index.segments[0].last_received_unix_us -= 10LL * 86'400'000'000;
  REQUIRE(write_index(dir.path, index.covered, index.stats, index.segments, index.agents, why));
  StoreLimits limits = kSmallSegments;
  limits.retention_days = 7;
  Writer writer(dir.path, limits);
  REQUIRE(gatehouse::testing::wait_until([&] { return writer.store->stats().segments_expired == 1; }, 10s));
  CHECK(!fs::exists(segment_path(dir.path, first)));
  CHECK(writer.store->stats().events_expired == first_events);
  CHECK(writer.store->stats().events == 240 - first_events);
}

TEST_CASE("store index: a damaged index is rebuilt from the segments; a segment it holds that is gone refuses to open") {
  TempDir dir;
  {
    Writer writer(dir.path, kSmallSegments);
    writer.write("web01", 1, 10);
  }
  flip_byte(index_path(dir.path), 30);
  std::string why;
  {
    auto store = EventStore::open(dir.path, kSmallSegments, why);
    REQUIRE_MESSAGE(store != nullptr, why);
    CHECK(store->stats().events == 200);
    CHECK(store->resume_point("web01", kIncarnation).durable_seq == 200);
  }
  StoreIndex index;
  REQUIRE(read_index(dir.path, index, why) == IndexRead::found);  // rewritten whole
  fs::remove(fs::path(dir.path) / "events-00000002.seg");
  CHECK(EventStore::open(dir.path, kSmallSegments, why) == nullptr);
  CHECK(why.find("events-00000002.seg is missing, but the store's index holds it with ") != std::string::npos);
}

TEST_CASE("store index: dump goes on from a position; an agent's dump skips segments that hold none of its events") {
  TempDir dir;
  Writer writer(dir.path, kSmallSegments);
  writer.write("web01", 1, 8);
  writer.write("web02", 1, 8);
  LogPosition position;
  bool ok = false;
  std::string why;
  CHECK(dumped(dir.path, "", position, ok, why).size() == 320);
  REQUIRE(ok);
  writer.write("web02", 161, 1);
  const auto after = dumped(dir.path, "", position, ok, why);
  REQUIRE(ok);
  REQUIRE(after.size() == 20);
  CHECK(after.front() == "web02 event 161");
  CHECK(dumped(dir.path, "", position, ok, why).empty());
  LogPosition elsewhere{999, 0};  // a cursor from another store
  CHECK(dumped(dir.path, "", elsewhere, ok, why).empty());
  CHECK(!ok);
  CHECK(why.find("is past the store's last segment") != std::string::npos);
  // Damage in the first segment (web01's only): web02's dump never reads it.
  flip_byte(fs::path(dir.path) / "events-00000001.seg", 40);
  LogPosition from_start;
  CHECK(dumped(dir.path, "web02", from_start, ok, why).size() == 180);
  CHECK(ok);
  from_start = {};
  dumped(dir.path, "web01", from_start, ok, why);
  CHECK(!ok);
  CHECK(why.find("events-00000001.seg: damaged record at byte 0") != std::string::npos);
}

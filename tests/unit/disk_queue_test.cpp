// The agent's disk queue on a real file system: events survive a restart until
// acknowledged, a torn append is cut off, and a full queue blocks or drops the
// oldest as configured.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "gatehouse/agent/disk_queue.h"
#include "gatehouse/proto/frame_types.h"
#include "test_support.h"

using namespace gatehouse::agent;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

struct QueueDir : gatehouse::testing::TempDir {
  QueueDir() : gatehouse::testing::TempDir("queue-test") { REQUIRE(!path.empty()); }
  std::unique_ptr<DiskQueue> open(uint64_t max_bytes = 1u << 20, FullPolicy policy = FullPolicy::block) const {
    std::string why;
    auto queue = DiskQueue::open(path, max_bytes, policy, why);
    REQUIRE_MESSAGE(queue != nullptr, why);
    return queue;
  }
};

std::vector<std::string> events(int first, int count) {
  std::vector<std::string> out;
  for (int i = first; i < first + count; ++i) out.push_back("event " + std::to_string(i));
  return out;
}

// Counts the queue's on_ready calls: a sender with nothing to take waits for
// the next one.
class ReadySignal {
 public:
  explicit ReadySignal(DiskQueue& queue) : queue_(queue) {
    queue_.set_on_ready([this] {
      std::lock_guard lock(mutex_);
      ++count_;
      changed_.notify_all();
    });
  }
  ~ReadySignal() { queue_.set_on_ready({}); }
  uint64_t count() {
    std::lock_guard lock(mutex_);
    return count_;
  }
  bool wait_past(uint64_t seen) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, 5s, [&] { return count_ != seen; });
  }

 private:
  DiskQueue& queue_;
  std::mutex mutex_;
  std::condition_variable changed_;
  uint64_t count_ = 0;
};

}  // namespace

TEST_CASE("disk queue: unacknowledged events survive a restart, acknowledged ones are gone") {
  QueueDir dir;
  uint64_t dropped = 0;
  {
    auto queue = dir.open();
    REQUIRE(queue->append(events(1, 100), dropped));
    queue->acknowledge(40);
    CHECK(queue->queued_events() == 60);
  }
  auto queue = dir.open();
  CHECK(queue->acked_seq() == 40);
  CHECK(queue->last_seq() == 100);
  CHECK(queue->queued_events() == 60);
  QueuedEvent event;
  REQUIRE(queue->next_after(0, event));
  CHECK(event.seq == 41);
  CHECK(event.payload == "event 41");
  REQUIRE(queue->next_after(99, event));
  CHECK(event.seq == 100);
  CHECK_FALSE(queue->next_after(100, event));
  REQUIRE(queue->append(events(101, 1), dropped));
  CHECK(queue->last_seq() == 101);  // numbering continues after the restart
  CHECK(dropped == 0);
}

TEST_CASE("disk queue: segments are deleted once acknowledged; a torn append is cut off at open") {
  QueueDir dir;
  uint64_t dropped = 0;
  const std::string big(60'000, 'x');
  {
    auto queue = dir.open(64u << 20);
    for (int i = 0; i < 40; ++i) REQUIRE(queue->append({big}, dropped));  // ~2.4 MB: three segments
    queue->acknowledge(35);
  }
  size_t segments = 0;
  std::string last;
  for (const auto& entry : fs::directory_iterator(dir.path)) {
    if (entry.path().filename().string().starts_with("queue-")) {
      ++segments;
      last = std::max(last, entry.path().string());
    }
  }
  CHECK(segments == 1);
  std::ofstream(last, std::ios::app | std::ios::binary).write("\x10\x00\x00", 3);
  auto queue = dir.open(64u << 20);
  CHECK(queue->last_seq() == 40);
  CHECK(queue->queued_events() == 5);
  REQUIRE(queue->append({"after the tear"}, dropped));
  queue.reset();
  auto reopened = dir.open(64u << 20);
  QueuedEvent event;
  REQUIRE(reopened->next_after(40, event));
  CHECK(event.payload == "after the tear");
}

TEST_CASE("disk queue: full with drop-oldest drops and counts; full with block waits for an ACK") {
  QueueDir dir;
  uint64_t dropped = 0;
  SUBCASE("drop-oldest") {
    auto queue = dir.open(100, FullPolicy::drop_oldest);
    REQUIRE(queue->append(events(1, 20), dropped));  // "event N" is 7-8 bytes: 100 holds about 13
    CHECK(dropped > 0);
    CHECK(queue->queued_bytes() <= 100);
    CHECK(queue->acked_seq() == 0);  // dropped, not acknowledged: the sender declares them as a gap
    QueuedEvent event;
    REQUIRE(queue->next_after(0, event));
    CHECK(event.seq == dropped + 1);
  }
  SUBCASE("block") {
    auto queue = dir.open(300, FullPolicy::block);  // "event N" records are 23-24 bytes on disk: 12 fit
    REQUIRE(queue->append(events(1, 12), dropped));
    std::atomic<bool> appended{false};
    std::thread input([&] {
      uint64_t ignored = 0;
      appended = queue->append(events(13, 5), ignored);
    });
    std::this_thread::sleep_for(100ms);
    CHECK_FALSE(appended.load());  // waiting for room
    CHECK(queue->last_seq() == 12);
    // The server acknowledges what is queued as it comes: the input goes on.
    for (int i = 0; i < 400 && !appended.load(); ++i) {
      queue->acknowledge(queue->last_seq());
      std::this_thread::sleep_for(5ms);
    }
    input.join();
    CHECK(appended.load());
    CHECK(dropped == 0);
    CHECK(queue->last_seq() == 17);
  }
}

TEST_CASE("disk queue: each run that numbers events begins a new incarnation, durable, after the last seq") {
  QueueDir dir;
  uint64_t dropped = 0;
  {
    auto queue = dir.open();
    CHECK(queue->session_incarnation().id == 0);  // no event yet
    REQUIRE(queue->append(events(1, 10), dropped));
    REQUIRE(queue->append(events(11, 10), dropped));  // the same run: the same incarnation
    const auto first = queue->session_incarnation();
    CHECK(first.id != 0);
    CHECK(first.base_seq == 0);
    gatehouse::proto::Incarnation next;
    CHECK_FALSE(queue->next_incarnation(first, next));
    CHECK(queue->next_incarnation({}, next));  // from "none yet": the first
    CHECK(next == first);
  }
  auto queue = dir.open();
  const auto first = queue->session_incarnation();
  CHECK(first.base_seq == 0);  // the oldest unacknowledged event's
  REQUIRE(queue->append(events(21, 5), dropped));
  gatehouse::proto::Incarnation second;
  REQUIRE(queue->next_incarnation(first, second));
  CHECK(second.id != first.id);
  CHECK(second.base_seq == 20);
  CHECK(queue->session_incarnation() == first);
  // The server holds the first through 12: resumed there, acknowledged.
  CHECK(queue->resume(first, 12) == 12);
  CHECK(queue->acked_seq() == 12);
  // A server ahead of the queue (it was restored from an older copy): never
  // past the incarnation's end, so the second's events are still sent.
  CHECK(queue->resume(first, 5'000) == 20);
  CHECK(queue->acked_seq() == 20);
  CHECK(queue->session_incarnation() == second);
  QueuedEvent event;
  REQUIRE(queue->next_after(20, event));
  CHECK(event.seq == 21);
  queue.reset();
  // Reopened: the first is forgotten (all acknowledged), the second stays.
  queue = dir.open();
  CHECK(queue->session_incarnation() == second);
  std::ifstream file(dir.path + "/incarnations");
  std::string id_hex;
  uint64_t base_seq = 0;
  REQUIRE(static_cast<bool>(file >> id_hex >> base_seq));
  CHECK(base_seq == 20);
  CHECK_FALSE(static_cast<bool>(file >> id_hex >> base_seq));
}

TEST_CASE("disk queue: a wiped queue starts a new incarnation from seq 1; the copy restored over a newer one starts another") {
  QueueDir dir;
  uint64_t dropped = 0;
  gatehouse::proto::Incarnation before;
  {
    auto queue = dir.open();
    REQUIRE(queue->append(events(1, 3), dropped));
    before = queue->session_incarnation();
  }
  fs::remove_all(dir.path);
  auto queue = dir.open();
  REQUIRE(queue->append(events(1, 3), dropped));
  const auto after = queue->session_incarnation();
  CHECK(after.base_seq == 0);
  CHECK(after.id != before.id);  // the server stores its seqs 1..3 beside the old ones
}

TEST_CASE("disk queue: only a window is in memory; the rest is read ahead from disk as the sender acknowledges, in order") {
  QueueDir dir;
  uint64_t dropped = 0;
  const std::string payload(1'000, 'p');
  {
    auto queue = dir.open(64u << 20);
    std::vector<std::string> batch(100, payload);
    for (int i = 0; i < 20; ++i) REQUIRE(queue->append(batch, dropped));  // 2,000 events, ~2 MB
  }
  std::string why;
  auto queue = DiskQueue::open(dir.path, 64u << 20, FullPolicy::block, why, 64u << 10);  // a 64 KiB window
  REQUIRE_MESSAGE(queue != nullptr, why);
  ReadySignal loaded(*queue);
  uint64_t sent_through = 0;
  QueuedEvent event;
  while (sent_through < 2'000) {
    const uint64_t loads_before = loaded.count();
    if (!queue->next_after(sent_through, event)) {
      REQUIRE(loaded.wait_past(loads_before));
      continue;
    }
    REQUIRE(event.seq == sent_through + 1);
    CHECK(event.payload == payload);
    sent_through = event.seq;
    if (sent_through % 50 == 0) {
      // A reconnect resends from the last acknowledgement: still in the window.
      REQUIRE(queue->next_after(sent_through - 50, event));
      CHECK(event.seq == sent_through - 49);
      queue->acknowledge(sent_through);
    }
  }
  CHECK(loaded.count() >= 20);  // read from disk a window at a time, not held whole
  CHECK(queue->queued_events() == 0);
}

// A batch larger than a block queue's room is written in parts: the sender
// hears of each part (on_ready), since only its ACKs make room for the rest.
// (It once heard of the batch only when all of it was in: the input waited
// for room, the sender for events, until a heartbeat woke it.)
TEST_CASE("disk queue: block with a batch past the bound: the sender is told of each part written") {
  QueueDir dir;
  auto queue = dir.open(300, FullPolicy::block);  // 12 "event N" records fit
  ReadySignal ready(*queue);
  std::atomic<bool> appended{false};
  std::thread input([&] {
    uint64_t ignored = 0;
    appended = queue->append(events(1, 100), ignored);
  });
  // The sender: takes what there is; the server acknowledges it once the
  // sender has run dry (so the room comes only from ACKs of all it had).
  uint64_t sent_through = 0;
  QueuedEvent event;
  while (sent_through < 100) {
    if (queue->next_after(sent_through, event)) {
      REQUIRE(event.seq == sent_through + 1);
      sent_through = event.seq;
      continue;
    }
    const uint64_t readies_before = ready.count();
    queue->acknowledge(sent_through);
    if (queue->next_after(sent_through, event)) continue;  // written meanwhile (and told)
    REQUIRE_MESSAGE(ready.wait_past(readies_before),
                    "the sender was not told of events written (sent through " << sent_through << ")");
  }
  input.join();
  CHECK(appended.load());
  CHECK(queue->last_seq() == 100);
}

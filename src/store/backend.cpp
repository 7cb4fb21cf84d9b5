#include "gatehouse/store/backend.h"

#include <algorithm>

#include "gatehouse/runtime/runtime.h"

namespace gatehouse::store {

ResumePoint resume_point_of(const ProgressIndex& index, std::string_view agent, uint64_t incarnation) {
  ResumePoint point;
  auto found = index.find(agent);
  if (found == index.end()) return point;
  const AgentProgress& state = found->second;
  if (auto seqs = state.incarnations.find(incarnation); seqs != state.incarnations.end()) {
    point.known = true;
    point.base_seq = seqs->second.base_seq;
    point.durable_seq = std::max(seqs->second.durable_seq, seqs->second.base_seq);
  }
  point.latest_incarnation = state.latest_incarnation;
  point.latest_durable_seq = state.incarnations.at(state.latest_incarnation).durable_seq;
  return point;
}

Backend::~Backend() { stop(); }

void Backend::start(std::function<void(Batch*)> deliver) {
  deliver_ = std::move(deliver);
  writer_ = std::thread([this] {
    if (limits_.writer_nice != 0) runtime::set_thread_nice(limits_.writer_nice);  // the shards warn if refused
    run();
  });
}

bool Backend::submit(Batch* batch) {
  {
    std::lock_guard lock(queue_mutex_);
    if (waiting_.size() >= limits_.batches_waiting_max || stopping_) return false;
    waiting_.push_back(batch);
  }
  work_ready_.notify_one();
  return true;
}

void Backend::stop() {
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
  }
  work_ready_.notify_one();
  if (writer_.joinable()) writer_.join();
}

std::string Backend::unavailable() const {
  std::lock_guard lock(unavailable_mutex_);
  return unavailable_;
}

void Backend::set_unavailable(std::string why) {
  std::lock_guard lock(unavailable_mutex_);
  unavailable_ = std::move(why);
}

size_t Backend::batches_waiting() const {
  std::lock_guard lock(queue_mutex_);
  return waiting_.size();
}

bool Backend::stopping() const {
  std::lock_guard lock(queue_mutex_);
  return stopping_;
}

bool Backend::wait_unless_stopping(std::chrono::milliseconds timeout) {
  std::unique_lock lock(queue_mutex_);
  return work_ready_.wait_for(lock, timeout, [this] { return stopping_; });
}

// Group commit: take what waits, keep taking until commit_interval_ms has
// passed since the first or commit_bytes wait, then one commit.
void Backend::run() {
  using clock = std::chrono::steady_clock;
  std::vector<Batch*> group;
  std::vector<Batch*> taken;
  for (;;) {
    clock::time_point first{};
    {
      std::unique_lock lock(queue_mutex_);
      for (;;) {
        taken.swap(waiting_);
        if (!taken.empty() && group.empty()) first = clock::now();
        lock.unlock();
        const int64_t taken_unix_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count();
        for (Batch* batch : taken) {
          batch->taken_unix_us = taken_unix_us;  // the events' received time
          take(*batch);
        }
        group.insert(group.end(), taken.begin(), taken.end());
        taken.clear();
        lock.lock();
        if (stopping_ && waiting_.empty()) break;
        if (!group.empty() && (group_bytes() >= limits_.commit_bytes ||
                               clock::now() - first >= std::chrono::milliseconds(limits_.commit_interval_ms))) {
          break;
        }
        wait_for_work(lock, group.empty(), first);
      }
    }
    if (!group.empty() || has_pending()) {
      const clock::time_point commit_start = clock::now();
      commit(group);
      commit_latency_.observe_us(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - commit_start).count()));
    }
    group.clear();
    chores_if_due();
    std::lock_guard lock(queue_mutex_);
    if (stopping_ && waiting_.empty()) return;
  }
}

// Until a batch comes (or the group's time is up); an idle backend's chores
// run every idle_interval_ms meanwhile.
void Backend::wait_for_work(std::unique_lock<std::mutex>& lock, bool group_empty,
                            std::chrono::steady_clock::time_point first) {
  const auto ready = [this] { return stopping_ || !waiting_.empty(); };
  if (!group_empty) {
    work_ready_.wait_until(lock, first + std::chrono::milliseconds(limits_.commit_interval_ms), ready);
    return;
  }
  if (idle_interval_ms() == 0) {
    work_ready_.wait(lock, ready);
    return;
  }
  if (work_ready_.wait_for(lock, std::chrono::milliseconds(idle_interval_ms()), ready)) return;
  lock.unlock();
  chores_if_due();
  lock.lock();
}

void Backend::chores_if_due() {
  if (idle_interval_ms() == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - chores_at_ < std::chrono::milliseconds(idle_interval_ms())) return;
  chores_at_ = now;
  on_idle();
}

}  // namespace gatehouse::store

#include "gatehouse/log/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "gatehouse/log/invariant.h"

namespace gatehouse::log {
namespace {

std::string g_role = "cli";
std::string g_instance;
std::atomic<Level> g_min_level{Level::info};  // SIGHUP may change it while other threads log
int g_output_fd = STDERR_FILENO;

// Lines of one event ID from one peer host in the current window; past
// kRepeatLinesMax they are only counted, and the count is said once the
// window is over.
struct Repeats {
  uint64_t window_start_ms = 0;
  uint32_t lines = 0;
  uint64_t suppressed = 0;
  Level level = Level::info;
};

// One event ID's windows: one per peer host (an attacker's flood of refusals
// does not hide another peer's), up to kRepeatPeersMax; lines without a peer,
// and peers beyond that, share `others`.
struct EventRepeats {
  Repeats others;
  std::unordered_map<std::string, Repeats> by_peer;  // at most kRepeatPeersMax
};
constexpr size_t kRepeatPeersMax = 16;

struct Writer {
  std::mutex mutex;
  std::condition_variable wake;
  std::string buffer;  // at most kBufferBytesMax (plus the writer's own lines)
  uint64_t dropped_lines = 0;
  std::unordered_map<uint32_t, EventRepeats> repeats;  // by event ID
  std::map<std::pair<uint32_t, Level>, uint64_t> tallies;  // bounded by the event IDs × levels
  std::thread thread;
  bool running = false;
  bool stopping = false;
};

// Never destroyed: a line logged from another static's destructor still works.
Writer& writer() {
  static Writer* const instance = new Writer;
  return *instance;
}

}  // namespace

const char* level_name(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warning: return "warning";
    case Level::error: return "error";
  }
  return "info";
}

namespace {

void append_timestamp(std::string& out) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  out += iso8601_utc(now.tv_sec, now.tv_nsec / 1'000, 3);
}

// $JOURNAL_STREAM names the journal's stream ("DEVICE:INODE"): lines go
// there when our output is that stream.
bool output_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  struct stat output {};
  if (stream == nullptr || fstat(g_output_fd, &output) != 0) return false;
  unsigned long long device = 0;
  unsigned long long inode = 0;
  if (std::sscanf(stream, "%llu:%llu", &device, &inode) != 2) return false;
  return device == output.st_dev && inode == output.st_ino;
}

const char* journal_prefix(Level level) {
  switch (level) {
    case Level::debug: return "<7>";
    case Level::info: return "<6>";
    case Level::warning: return "<4>";
    case Level::error: return "<3>";
  }
  return "<6>";
}

uint64_t monotonic_ms() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1'000 + static_cast<uint64_t>(now.tv_nsec) / 1'000'000;
}

void write_all(std::string_view text) {
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(g_output_fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    written += static_cast<size_t>(n);
  }
}

std::string coalesced_line(EventId id, std::string_view peer, const Repeats& repeats) {
  const std::string message = std::to_string(repeats.suppressed) + " more lines of this event" +
                              (peer.empty() ? std::string() : " from " + std::string(peer)) + " in the last " +
                              std::to_string(kRepeatWindowMs / 1'000) + " s, not written one by one";
  if (peer.empty()) return format(repeats.level, id, message, {{"coalesced", repeats.suppressed}});
  return format(repeats.level, id, message, {{"coalesced", repeats.suppressed}, {"peer", peer}});
}

// The host of a line's "peer" field (the port changes with every connection;
// through a relay, the relayed client), or "".
std::string_view peer_host(std::initializer_list<Field> fields) {
  for (const Field& field : fields) {
    if (field.key != "peer" || !field.is_text) continue;
    std::string_view text = field.text;
    if (const size_t via = text.find(" via "); via != std::string_view::npos) text = text.substr(0, via);
    if (const size_t colon = text.rfind(':'); colon != std::string_view::npos) text = text.substr(0, colon);
    return text;
  }
  return {};
}

// Under the writer's mutex: whether a line with this window is written; a
// window that is over adds its coalesced count to `summary` and starts again.
bool admit_to(Repeats& r, EventId id, std::string_view peer, Level level, uint64_t now_ms, std::string& summary) {
  if (now_ms - r.window_start_ms >= kRepeatWindowMs) {
    if (r.suppressed > 0) summary += coalesced_line(id, peer, r);
    r = Repeats{now_ms, 0, 0, level};
  }
  if (r.lines < kRepeatLinesMax) {
    ++r.lines;
    return true;
  }
  ++r.suppressed;
  r.level = std::max(r.level, level);
  return false;
}

// Under the writer's mutex: the window of this event and peer host (a new
// peer takes a free or ended slot, else shares `others`).
bool admit(Writer& w, EventId id, std::string_view peer, Level level, uint64_t now_ms, std::string& summary) {
  EventRepeats& event = w.repeats[static_cast<uint32_t>(id)];
  if (peer.empty()) return admit_to(event.others, id, peer, level, now_ms, summary);
  auto found = event.by_peer.find(std::string(peer));
  if (found == event.by_peer.end() && event.by_peer.size() >= kRepeatPeersMax) {
    std::erase_if(event.by_peer, [&](const auto& entry) {
      const Repeats& r = entry.second;
      if (now_ms - r.window_start_ms < kRepeatWindowMs) return false;
      if (r.suppressed > 0) summary += coalesced_line(id, entry.first, r);
      return true;
    });
    if (event.by_peer.size() >= kRepeatPeersMax) return admit_to(event.others, id, {}, level, now_ms, summary);
  }
  if (found == event.by_peer.end()) found = event.by_peer.try_emplace(std::string(peer), Repeats{now_ms, 0, 0, level}).first;
  return admit_to(found->second, id, peer, level, now_ms, summary);
}

// Under the mutex: the counts of windows that are over (all of them at stop).
void append_ended_windows(Writer& w, uint64_t now_ms, bool all) {
  auto say = [&](EventId id, std::string_view peer, Repeats& r) {
    if (r.suppressed == 0 || (!all && now_ms - r.window_start_ms < kRepeatWindowMs)) return;
    w.buffer += coalesced_line(id, peer, r);
    r.suppressed = 0;
  };
  for (auto& [id, event] : w.repeats) {
    say(static_cast<EventId>(id), {}, event.others);
    for (auto& [peer, r] : event.by_peer) say(static_cast<EventId>(id), peer, r);
  }
  if (w.dropped_lines > 0) {
    w.buffer += format(Level::error, EventId::log_lines_dropped,
                       "log lines lost: the log buffer was full (the output did not keep up)",
                       {{"dropped", w.dropped_lines}});
    w.dropped_lines = 0;
  }
}

void writer_loop() {
  Writer& w = writer();
  std::unique_lock lock(w.mutex);
  while (!w.stopping) {
    w.wake.wait_for(lock, std::chrono::seconds(1), [&] { return !w.buffer.empty() || w.stopping; });
    append_ended_windows(w, monotonic_ms(), false);
    if (w.buffer.empty()) continue;
    std::string out;
    out.swap(w.buffer);
    lock.unlock();
    write_all(out);
    lock.lock();
  }
}

}  // namespace

void set_output_fd(int fd) { g_output_fd = fd; }

void start_writer() {
  Writer& w = writer();
  std::lock_guard lock(w.mutex);
  if (w.running) return;
  w.running = true;
  w.stopping = false;
  w.thread = std::thread(writer_loop);
  static const bool registered = [] { return std::atexit(stop_writer) == 0; }();
  (void)registered;
}

void stop_writer() {
  Writer& w = writer();
  {
    std::lock_guard lock(w.mutex);
    if (!w.running) return;
    w.stopping = true;
  }
  w.wake.notify_one();
  w.thread.join();
  // What came after the thread's last pass, and every pending count.
  std::lock_guard lock(w.mutex);
  append_ended_windows(w, monotonic_ms(), true);
  write_all(w.buffer);
  w.buffer.clear();
  w.running = false;
}

void invariant_failed(const char* expression, const char* file, int line) {
  // Straight to the output: the process is about to abort and the logging
  // thread may never run again. What it had queued goes first, if it can.
  Writer& w = writer();
  if (w.mutex.try_lock()) {
    write_all(w.buffer);
    w.buffer.clear();
    w.mutex.unlock();
  }
  write_all(format(Level::error, EventId::invariant_broken, "internal invariant broken: aborting (a bug)",
                   {{"expression", expression}, {"file", file}, {"line", line}}));
  std::abort();
}

const char* event_name(EventId id) {
  switch (id) {
    case EventId::queue_overflow_dropped: return "queue_overflow_dropped";
    case EventId::peer_not_approved: return "peer_not_approved";
    case EventId::certificate_invalid: return "certificate_invalid";
    case EventId::certificate_loaded: return "certificate_loaded";
    case EventId::agent_not_approved: return "agent_not_approved";
    case EventId::parent_connect_failed: return "parent_connect_failed";
    case EventId::mutual_auth_failed: return "mutual_auth_failed";
    case EventId::no_parent_available: return "no_parent_available";
    case EventId::process_started: return "process_started";
    case EventId::process_stopping: return "process_stopping";
    case EventId::config_invalid: return "config_invalid";
    case EventId::forbidden_library_loaded: return "forbidden_library_loaded";
    case EventId::config_reloaded: return "config_reloaded";
    case EventId::protocol_violation: return "protocol_violation";
    case EventId::connection_table_full: return "connection_table_full";
    case EventId::shard_priority_refused: return "shard_priority_refused";
    case EventId::runtime_unavailable: return "runtime_unavailable";
    case EventId::handshake_queue_full: return "handshake_queue_full";
    case EventId::handshake_timeout: return "handshake_timeout";
    case EventId::store_tail_truncated: return "store_tail_truncated";
    case EventId::store_write_failed: return "store_write_failed";
    case EventId::queue_write_failed: return "queue_write_failed";
    case EventId::parent_connected: return "parent_connected";
    case EventId::gateway_not_approved: return "gateway_not_approved";
    case EventId::new_agents_throttled: return "new_agents_throttled";
    case EventId::agent_session_replaced: return "agent_session_replaced";
    case EventId::chain_hop_refused: return "chain_hop_refused";
    case EventId::input_line_refused: return "input_line_refused";
    case EventId::crl_expiring: return "crl_expiring";
    case EventId::session_idle_timeout: return "session_idle_timeout";
    case EventId::session_opened: return "session_opened";
    case EventId::session_closed: return "session_closed";
    case EventId::queue_input_paused: return "queue_input_paused";
    case EventId::queue_input_resumed: return "queue_input_resumed";
    case EventId::input_position: return "input_position";
    case EventId::store_disk_full: return "store_disk_full";
    case EventId::store_disk_room: return "store_disk_room";
    case EventId::store_damaged: return "store_damaged";
    case EventId::database_unavailable: return "database_unavailable";
    case EventId::parent_failback: return "parent_failback";
    case EventId::gateway_dialled: return "gateway_dialled";
    case EventId::gateway_dial_failed: return "gateway_dial_failed";
    case EventId::parent_dial_refused: return "parent_dial_refused";
    case EventId::database_available: return "database_available";
    case EventId::database_migrated: return "database_migrated";
    case EventId::database_retention: return "database_retention";
    case EventId::store_index: return "store_index";
    case EventId::store_retention: return "store_retention";
    case EventId::registry_write_failed: return "registry_write_failed";
    case EventId::data_out_of_order: return "data_out_of_order";
    case EventId::agent_incarnation_new: return "agent_incarnation_new";
    case EventId::approval_revoked: return "approval_revoked";
    case EventId::admin_unavailable: return "admin_unavailable";
    case EventId::admin_request_refused: return "admin_request_refused";
    case EventId::admin_request: return "admin_request";
    case EventId::invariant_broken: return "invariant_broken";
    case EventId::heartbeat_failed: return "heartbeat_failed";
    case EventId::heartbeat_restored: return "heartbeat_restored";
    case EventId::log_lines_dropped: return "log_lines_dropped";
  }
  return "unknown";
}

void set_identity(std::string_view role, std::string_view instance) {
  g_role = role;
  g_instance = instance;
}

void set_min_level(Level level) { g_min_level.store(level, std::memory_order_relaxed); }

bool parse_level(std::string_view text, Level& level) {
  for (Level candidate : {Level::debug, Level::info, Level::warning, Level::error}) {
    if (text == level_name(candidate)) {
      level = candidate;
      return true;
    }
  }
  return false;
}

// Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto lead = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    uint32_t point = 0;
    if (lead < 0x80) {
      ++i;
      continue;
    } else if ((lead & 0xE0) == 0xC0) {
      extra = 1;
      point = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      extra = 2;
      point = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      extra = 3;
      point = lead & 0x07;
    } else {
      return false;
    }
    if (extra >= text.size() - i) return false;  // cut short
    for (size_t k = 1; k <= extra; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80) return false;
      point = (point << 6) | (next & 0x3F);
    }
    static constexpr uint32_t kSmallest[] = {0, 0x80, 0x800, 0x10000};
    if (point < kSmallest[extra] || point > 0x10FFFF || (point >= 0xD800 && point <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

void append_json_string(std::string& out, std::string_view text) {
  out.push_back('"');
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof escaped, "\\u%04x", static_cast<unsigned>(c));
          out += escaped;
        } else {
          out.push_back(c);
        }
    }
  }
  out.push_back('"');
}

std::string format(Level level, EventId id, std::string_view message,
                   std::initializer_list<Field> fields) {
  std::string line;
  line.reserve(160 + message.size());
  // Under systemd the journal reads each line's priority from a "<N>" prefix
  // (sd-daemon(3)): `journalctl -p err` finds 21007 and 30051.
  static const bool journal = output_is_journal();
  if (journal) line += journal_prefix(level);
  line += "{\"ts\":\"";
  append_timestamp(line);
  line += "\",\"level\":\"";
  line += level_name(level);
  line += "\",\"event\":";
  line += std::to_string(static_cast<uint32_t>(id));
  line += ",\"name\":\"";
  line += event_name(id);
  line += "\",\"role\":";
  append_json_string(line, g_role);
  if (!g_instance.empty()) {
    line += ",\"instance\":";
    append_json_string(line, g_instance);
  }
  line += ",\"msg\":";
  append_json_string(line, message);
  for (const Field& field : fields) {
    line.push_back(',');
    append_json_string(line, field.key);
    line.push_back(':');
    if (field.is_text) {
      append_json_string(line, field.text);
    } else {
      line += std::to_string(field.number);
    }
  }
  line += "}\n";
  return line;
}

void emit(Level level, EventId id, std::string_view message, std::initializer_list<Field> fields) {
  if (level < g_min_level.load(std::memory_order_relaxed)) return;
  Writer& w = writer();
  std::string summary;
  {
    std::lock_guard lock(w.mutex);
    ++w.tallies[{static_cast<uint32_t>(id), level}];
    if (!admit(w, id, peer_host(fields), level, monotonic_ms(), summary)) return;
  }
  // The first line of a new window says first what the last one coalesced.
  std::string line = summary + format(level, id, message, fields);
  std::unique_lock lock(w.mutex);
  if (!w.running) {
    lock.unlock();
    write_all(line);  // one write per line: threads never interleave within one
    return;
  }
  if (w.buffer.size() + line.size() > kBufferBytesMax) {
    ++w.dropped_lines;
    return;
  }
  w.buffer += line;
  lock.unlock();
  w.wake.notify_one();
}

std::vector<EventTally> event_tallies() {
  Writer& w = writer();
  std::lock_guard lock(w.mutex);
  std::vector<EventTally> tallies;
  tallies.reserve(w.tallies.size());
  for (const auto& [key, count] : w.tallies) tallies.push_back({static_cast<EventId>(key.first), key.second, count});
  return tallies;
}

std::string iso8601_utc(int64_t unix_s, int64_t micros, int digits) {
  const auto seconds = static_cast<time_t>(unix_s);
  tm utc{};
  gmtime_r(&seconds, &utc);
  char text[48];
  const long fraction = digits == 6 ? static_cast<long>(micros) : static_cast<long>(micros / 1'000);
  const int size = std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%0*ldZ", utc.tm_year + 1900,
                                 utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, digits, fraction);
  return std::string(text, static_cast<size_t>(size));
}

}  // namespace gatehouse::log

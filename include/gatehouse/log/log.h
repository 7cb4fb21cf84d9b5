// Structured JSON-lines log on stderr (journald keeps each line as one entry).
// One line: {"ts","level","event","name","role","instance","msg", fields...}.
// Once start_writer() ran (the roles), emit() only queues the line in a
// bounded buffer and a logging thread writes it: no shard blocks on stderr.
// Past kRepeatLinesMax lines of one event ID in a kRepeatWindowMs window, the
// rest are counted and said in one line ("N more in the last 10 s").
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "gatehouse/log/events.h"

namespace gatehouse::log {

enum class Level : uint8_t { debug, info, warning, error };

// A key/value pair appended to a log line; the value is a string or an integer.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), text(v), is_text(true) {}
  Field(std::string_view k, const char* v) : Field(k, std::string_view(v)) {}
  Field(std::string_view k, const std::string& v) : Field(k, std::string_view(v)) {}
  template <class Int>
    requires std::is_integral_v<Int>
  Field(std::string_view k, Int v) : key(k), number(static_cast<int64_t>(v)), is_text(false) {}

  std::string_view key;
  std::string_view text;
  int64_t number = 0;
  bool is_text;
};

// Set once at start-up, before any other thread runs.
void set_identity(std::string_view role, std::string_view instance);
void set_min_level(Level level);
bool parse_level(std::string_view text, Level& level);

inline constexpr size_t kBufferBytesMax = 1u << 20;  // lines waiting for the logging thread
inline constexpr uint32_t kRepeatLinesMax = 100;      // lines of one event ID per window...
inline constexpr uint64_t kRepeatWindowMs = 10'000;   // ...then coalesced into one

// Formats one line (with the trailing newline).
std::string format(Level level, EventId id, std::string_view message,
                   std::initializer_list<Field> fields);
// Queues the line for the logging thread, or writes it with one write(2)
// when no writer runs (the CLI). A full buffer drops the line and counts it;
// the count is logged (30091) as soon as there is room.
void emit(Level level, EventId id, std::string_view message, std::initializer_list<Field> fields = {});

// Events emitted since start, per ID and level, coalesced lines included
// (the admin endpoint's counts of refusals and failures).
struct EventTally {
  EventId id;
  Level level;
  uint64_t count;
};
std::vector<EventTally> event_tallies();
const char* level_name(Level level);

// Where lines go (default stderr); set before start_writer(). For tests.
void set_output_fd(int fd);
// Starts the logging thread; stop_writer() (also run at exit) writes what is
// queued, the pending coalesced counts, and joins it.
void start_writer();
void stop_writer();

void append_json_string(std::string& out, std::string_view text);
// Well-formed UTF-8: a JSON string can hold it as it is.
bool valid_utf8(std::string_view text);
// "2026-12-02T02:40:00.123Z" (`digits` of the second's fraction: 3 or 6).
std::string iso8601_utc(int64_t unix_s, int64_t micros, int digits);
inline std::string iso8601_utc_us(int64_t unix_us) {
  return iso8601_utc(unix_us / 1'000'000, unix_us % 1'000'000, 6);
}

}  // namespace gatehouse::log

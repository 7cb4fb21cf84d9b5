// Structured JSON-lines log on stderr (journald keeps each line as one entry).
// One line: {"ts","level","event","name","role","instance","msg", fields...}.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

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

// Formats one line (with the trailing newline); emit() writes it with one write(2).
std::string format(Level level, EventId id, std::string_view message,
                   std::initializer_list<Field> fields);
void emit(Level level, EventId id, std::string_view message, std::initializer_list<Field> fields = {});

void append_json_string(std::string& out, std::string_view text);

}  // namespace gatehouse::log

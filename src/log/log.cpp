#include "gatehouse/log/log.h"

#include <unistd.h>

#include <cerrno>
#include <ctime>

namespace gatehouse::log {
namespace {

std::string g_role = "cli";
std::string g_instance;
Level g_min_level = Level::info;

const char* level_name(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warning: return "warning";
    case Level::error: return "error";
  }
  return "info";
}

void append_timestamp(std::string& out) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char text[40];
  const int size = std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
                                 utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                                 utc.tm_min, utc.tm_sec, now.tv_nsec / 1'000'000);
  out.append(text, static_cast<size_t>(size));
}

}  // namespace

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
    case EventId::protocol_violation: return "protocol_violation";
    case EventId::connection_table_full: return "connection_table_full";
    case EventId::shard_priority_refused: return "shard_priority_refused";
    case EventId::runtime_unavailable: return "runtime_unavailable";
    case EventId::handshake_queue_full: return "handshake_queue_full";
    case EventId::handshake_timeout: return "handshake_timeout";
    case EventId::store_tail_truncated: return "store_tail_truncated";
    case EventId::parent_connected: return "parent_connected";
    case EventId::gateway_not_approved: return "gateway_not_approved";
  }
  return "unknown";
}

void set_identity(std::string_view role, std::string_view instance) {
  g_role = role;
  g_instance = instance;
}

void set_min_level(Level level) { g_min_level = level; }

bool parse_level(std::string_view text, Level& level) {
  for (Level candidate : {Level::debug, Level::info, Level::warning, Level::error}) {
    if (text == level_name(candidate)) {
      level = candidate;
      return true;
    }
  }
  return false;
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
  if (level < g_min_level) return;
  const std::string line = format(level, id, message, fields);
  // One write per line so concurrent threads never interleave within a line.
  size_t written = 0;
  while (written < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + written, line.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    written += static_cast<size_t>(n);
  }
}

}  // namespace gatehouse::log

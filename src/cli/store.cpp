// `gatehouse store`: the server's events out (stats, dump, agents) and the
// local store's checks (verify, salvage), from the server's config.
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <span>

#include "gatehouse/cli/args.h"
#include "gatehouse/log/log.h"
#include "gatehouse/proto/codec.h"
#include "gatehouse/server/run.h"
#include "gatehouse/store/pg_store.h"
#include "gatehouse/store/segment_log.h"
#include "gatehouse/store/store.h"
#include "commands.h"
#include "role_start.h"

namespace gatehouse::cli {
namespace {

std::string base64(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t group = 0;
    for (size_t k = 0; k < 3; ++k) group = (group << 8) | (k < n ? std::to_integer<uint32_t>(bytes[i + k]) : 0);
    for (size_t k = 0; k < 4; ++k) out.push_back(k <= n ? kDigits[(group >> (18 - 6 * k)) & 0x3F] : '=');
  }
  return out;
}

// "2026-12-02T03:00:00Z", with a fraction of up to 6 digits, or "@1796180400" (unix seconds).
bool parse_time(std::string_view text, int64_t& unix_us) {
  if (text.starts_with('@')) {
    const std::string seconds(text.substr(1));
    char* end = nullptr;
    const long long value = std::strtoll(seconds.c_str(), &end, 10);
    if (seconds.empty() || *end != '\0' || value < 0) return false;
    unix_us = value * 1'000'000;
    return true;
  }
  std::tm utc{};
  const std::string copy(text);
  const char* rest = strptime(copy.c_str(), "%Y-%m-%dT%H:%M:%S", &utc);
  if (rest == nullptr) return false;
  int64_t micros = 0;
  if (*rest == '.') {
    int digits = 0;
    for (++rest; *rest >= '0' && *rest <= '9'; ++rest, ++digits) {
      if (digits < 6) micros = micros * 10 + (*rest - '0');
    }
    if (digits == 0) return false;
    for (; digits < 6; ++digits) micros *= 10;
  }
  if (std::string_view(rest) != "Z") return false;
  unix_us = static_cast<int64_t>(timegm(&utc)) * 1'000'000 + micros;
  return true;
}

// One stored event (or declared gap) as one JSON line. A payload that is not
// UTF-8 goes as `payload_base64`, so every line is valid JSON and nothing is
// changed on the way out.
void print_event(const store::StoredEvent& event) {
  std::printf("{\"agent\":");
  print_json_string(event.agent);
  std::printf(",\"incarnation\":\"%s\"", proto::incarnation_hex(event.incarnation).c_str());
  if (event.received_unix_us != 0) {  // when it came and through which gateways (records since received times)
    std::printf(",\"received_at\":\"%s\",\"path\":", log::iso8601_utc_us(event.received_unix_us).c_str());
    print_json_string(event.path);
  }
  if (!event.server.empty()) {  // a group's: which server stored it
    std::printf(",\"server\":");
    print_json_string(event.server);
  }
  if (event.gap_first_seq != 0) {  // the agent declared these dropped (its queue was full)
    std::printf(",\"gap\":{\"first_seq\":%llu,\"last_seq\":%llu}}\n",
                static_cast<unsigned long long>(event.gap_first_seq), static_cast<unsigned long long>(event.seq));
    return;
  }
  std::printf(",\"seq\":%llu", static_cast<unsigned long long>(event.seq));
  const std::string_view payload(reinterpret_cast<const char*>(event.payload.data()), event.payload.size());
  if (log::valid_utf8(payload)) {
    std::printf(",\"payload\":");
    print_json_string(payload);
  } else {
    std::printf(",\"payload_base64\":\"%s\"", base64(event.payload).c_str());
  }
  std::printf("}\n");
}

// `store verify` (exit 0: no damage, 1: damage) and `store salvage --to DIR`:
// every damaged stretch and the events it took, as JSON lines.
int check_store(const config::Config& config, const Args& args, bool salvage, std::string_view usage) {
  const auto to_dir = args.value("--to");
  if (salvage && !to_dir) return usage_error("gatehouse store", "salvage needs --to DIR (a new, empty folder)", usage);
  store::DamageReport report;
  std::string why;
  if (!store::EventStore::salvage(server::events_dir(config), salvage ? std::string(*to_dir) : "", report, why)) {
    std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
    return kExitFailure;
  }
  uint64_t events_lost = 0;
  for (const store::DamageReport::Stretch& stretch : report.damaged) {
    std::printf("{\"damaged\":{\"file\":");
    print_json_string(stretch.file);
    std::printf(",\"from_byte\":%llu,\"to_byte\":%llu}}\n", static_cast<unsigned long long>(stretch.from_byte),
                static_cast<unsigned long long>(stretch.to_byte));
  }
  for (const store::DamageReport::Lost& lost : report.lost) {
    std::printf("{\"lost\":{\"agent\":");
    print_json_string(lost.agent);
    std::printf(",\"incarnation\":\"%s\",\"first_seq\":%llu,\"last_seq\":%llu}}\n",
                proto::incarnation_hex(lost.incarnation).c_str(), static_cast<unsigned long long>(lost.first_seq),
                static_cast<unsigned long long>(lost.last_seq));
    events_lost += lost.last_seq - lost.first_seq + 1;
  }
  std::printf("{\"records_kept\":%llu,\"damaged_stretches\":%zu,\"events_lost\":%llu",
              static_cast<unsigned long long>(report.records_kept), report.damaged.size(),
              static_cast<unsigned long long>(events_lost));
  if (salvage) {
    std::printf(",\"salvaged_to\":");
    print_json_string(*to_dir);
  }
  std::printf("}\n");
  return report.damaged.empty() ? kExitOk : kExitFailure;
}

// Each agent the store holds events of, a JSON line each: how many events,
// the seqs declared dropped, its incarnations and the last seq stored.
int list_store_agents(const config::Config& config) {
  std::vector<store::AgentSummary> summaries;
  std::string why;
  const bool ok = config.store_backend == config::StoreBackend::postgresql
                      ? store::PgStore::agent_summaries(config.store_dsn, summaries, why)
                      : store::EventStore::agent_summaries(server::events_dir(config), summaries, why);
  if (!ok) {
    std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
    return kExitFailure;
  }
  for (const store::AgentSummary& summary : summaries) {
    std::printf("{\"agent\":");
    print_json_string(summary.agent);
    std::printf(",\"events\":%llu,\"declared_dropped\":%llu,\"incarnations\":%llu,\"last_seq\":%llu}\n",
                static_cast<unsigned long long>(summary.events),
                static_cast<unsigned long long>(summary.declared_dropped),
                static_cast<unsigned long long>(summary.incarnations),
                static_cast<unsigned long long>(summary.last_seq));
  }
  return kExitOk;
}

constexpr std::string_view kCursorWord = "gatehouse-store-cursor";
constexpr auto kFollowPoll = std::chrono::milliseconds(200);  // --follow looks for new records this often

volatile sig_atomic_t follow_stop = 0;
void stop_following(int) { follow_stop = 1; }

// A cursor file: "gatehouse-store-cursor SEGMENT OFFSET". Missing: from the oldest.
bool read_cursor(const std::string& path, store::LogPosition& position, std::string& why) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return true;
    why = path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  std::string word;
  if (!(in >> word >> position.segment >> position.offset_bytes) || word != kCursorWord || position.segment == 0) {
    why = path + ": not a store cursor (want \"" + std::string(kCursorWord) + " SEGMENT OFFSET\")";
    return false;
  }
  return true;
}

// `store dump` of the local store: from the cursor file's position (or the
// oldest record) to the end; with --follow, then every record as it comes
// until SIGINT/SIGTERM. The cursor file is replaced after each round's lines
// are flushed to stdout: a reader that stops (or is killed) goes on after
// the last round it saved, so at worst that round's lines come twice.
int dump_local(const config::Config& config, const store::DumpFilter& filter, const std::string& cursor_file,
               bool follow) {
  std::string why;
  store::LogPosition position;
  if (!cursor_file.empty() && !read_cursor(cursor_file, position, why)) {
    std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
    return kExitFailure;
  }
  if (follow) {
    struct sigaction action {};
    action.sa_handler = stop_following;
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
  }
  const std::string dir = server::events_dir(config);
  store::DumpNotes said;
  for (;;) {
    store::DumpNotes notes;
    if (!store::EventStore::dump(dir, filter, position, print_event, notes, why)) {
      std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
      return kExitFailure;
    }
    if (notes.expired_through_segment > said.expired_through_segment) {
      std::fprintf(stderr, "gatehouse store: segments up to %llu were removed by retention before this dump read "
                           "them; going on from the oldest kept\n",
                   static_cast<unsigned long long>(notes.expired_through_segment));
      said = notes;
    }
    if (std::fflush(stdout) != 0) return kExitFailure;  // the reader went away: the cursor stays at the last round
    if (!cursor_file.empty()) {
      const std::string text = std::string(kCursorWord) + " " + std::to_string(position.segment) + " " +
                               std::to_string(position.offset_bytes) + "\n";
      if (!store::replace_file(cursor_file, text, why)) {
        std::fprintf(stderr, "gatehouse store: cannot save the cursor: %s\n", why.c_str());
        return kExitFailure;
      }
    }
    if (!follow || follow_stop) return kExitOk;
    const timespec pause{0, std::chrono::nanoseconds(kFollowPoll).count()};
    nanosleep(&pause, nullptr);  // a signal ends it early
    if (follow_stop) return kExitOk;
  }
}

}  // namespace

int run_store(int argc, char** argv, int first) {
  static constexpr std::string_view kUsage =
      "gatehouse store --config FILE stats [--json]\n"
      "       gatehouse store --config FILE dump [--agent NAME] [--since TIME] [--cursor-file FILE] [--follow]\n"
      "       gatehouse store --config FILE agents\n"
      "       gatehouse store --config FILE verify\n"
      "       gatehouse store --config FILE salvage --to DIR";
  static constexpr FlagSpec kFlags[] = {{"--config", true}, {"--json", false},        {"--agent", true},
                                        {"--to", true},     {"--since", true},        {"--follow", false},
                                        {"--cursor-file", true}};
  Args args;
  std::string why;
  if (!parse_args(argc, argv, first, kFlags, args, why)) return usage_error("gatehouse store", why, kUsage);
  config::Config config;
  int exit_code = kExitOk;
  if (!load_server_config(args, config, exit_code)) return exit_code;
  if (args.positionals.size() != 1) {
    return usage_error("gatehouse store", "say stats, dump, agents, verify or salvage", kUsage);
  }
  const std::string_view action = args.positionals[0];
  const bool group = config.store_backend == config::StoreBackend::postgresql;
  if (action == "verify" || action == "salvage") {
    if (group) {
      std::fprintf(stderr, "gatehouse store: %s is for the local store; PostgreSQL checks its own pages "
                           "(pg_amcheck) and restores from its backups\n", std::string(action).c_str());
      return kExitFailure;
    }
    return check_store(config, args, action == "salvage", kUsage);
  }
  if (action == "stats") {
    store::StoreStats stats;
    if (!(group ? store::PgStore::read_stats(config.store_dsn, stats, why)
                : store::EventStore::read_stats(server::events_dir(config), stats, why))) {
      std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
      return kExitFailure;
    }
    const std::pair<const char*, uint64_t> fields[] = {{"agents", stats.agents},
                                                       {"events", stats.events},
                                                       {"bytes", stats.bytes},
                                                       {"duplicates_dropped", stats.duplicates_dropped},
                                                       {"gaps", stats.gaps},
                                                       {"events_lost", stats.events_lost},
                                                       {"segments", stats.segments},
                                                       {"events_expired", stats.events_expired},
                                                       {"segments_expired", stats.segments_expired}};
    const bool json = args.has("--json");
    for (size_t i = 0; i < std::size(fields); ++i) {
      const auto value = static_cast<unsigned long long>(fields[i].second);
      if (json) std::printf("%s\"%s\":%llu", i == 0 ? "{" : ",", fields[i].first, value);
      else std::printf("%s %llu\n", fields[i].first, value);
    }
    if (json) std::printf("}\n");
    return kExitOk;
  }
  if (action == "agents") return list_store_agents(config);
  if (action != "dump") return usage_error("gatehouse store", "unknown action '" + std::string(action) + "'", kUsage);
  const std::string agent(args.value("--agent").value_or(""));
  int64_t since_unix_us = 0;
  if (const auto since = args.value("--since"); since && !parse_time(*since, since_unix_us)) {
    return usage_error("gatehouse store", "--since " + std::string(*since) +
                                              ": want UTC as 2026-12-02T03:00:00Z (fraction allowed) or @UNIX_SECONDS",
                       kUsage);
  }
  if (group) {
    if (args.has("--follow") || args.has("--cursor-file")) {
      std::fprintf(stderr, "gatehouse store: --follow and --cursor-file are for the local store; a group's events are "
                           "in gatehouse.events: query them by received_at (docs/server.md)\n");
      return kExitFailure;
    }
    const bool ok = store::PgStore::dump(config.store_dsn, agent, print_event, why, since_unix_us);
    if (!ok) std::fprintf(stderr, "gatehouse store: %s\n", why.c_str());
    return ok ? kExitOk : kExitFailure;
  }
  return dump_local(config, {agent, since_unix_us}, std::string(args.value("--cursor-file").value_or("")),
                    args.has("--follow"));
}

}  // namespace gatehouse::cli

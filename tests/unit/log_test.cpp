#include <doctest/doctest.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "gatehouse/log/log.h"

using namespace gatehouse::log;

TEST_CASE("a log line is one JSON object with the stable event id and name") {
  set_identity("gateway", "gw1.example.test");
  const std::string line = format(Level::error, EventId::mutual_auth_failed, "peer \"x\"\nsent\tjunk\x01",
                                  {{"peer", "127.0.0.1:40000"}, {"bytes", 42}, {"seq", uint64_t{7}}});
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);  // exactly one line, whatever the message holds
  CHECK(line.find("\"level\":\"error\"") != std::string::npos);
  CHECK(line.find("\"event\":21007,\"name\":\"mutual_auth_failed\"") != std::string::npos);
  CHECK(line.find("\"role\":\"gateway\",\"instance\":\"gw1.example.test\"") != std::string::npos);
  CHECK(line.find(R"("msg":"peer \"x\"\nsent\tjunk\u0001")") != std::string::npos);
  CHECK(line.find(R"("peer":"127.0.0.1:40000","bytes":42,"seq":7})") != std::string::npos);
  CHECK(line.rfind("{\"ts\":\"20", 0) == 0);
  set_identity("cli", "");
}

TEST_CASE("levels parse by name") {
  Level level = Level::info;
  CHECK(parse_level("warning", level));
  CHECK(level == Level::warning);
  CHECK_FALSE(parse_level("loud", level));
}

TEST_CASE("SCOM event numbers are kept where the meaning matches") {
  CHECK(static_cast<uint32_t>(EventId::peer_not_approved) == 20000);
  CHECK(static_cast<uint32_t>(EventId::agent_not_approved) == 20070);
  CHECK(static_cast<uint32_t>(EventId::mutual_auth_failed) == 21007);
  CHECK(static_cast<uint32_t>(EventId::queue_overflow_dropped) == 4506);
  CHECK(std::string(event_name(EventId::certificate_loaded)) == "certificate_loaded");
}

namespace {

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// What the logging thread writes while `emit_lines` runs (started before, stopped after).
std::string through_the_writer(const std::function<void()>& emit_lines) {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  std::string out;
  std::thread reader([&] {
    char chunk[65'536];
    ssize_t n;
    while ((n = ::read(pipe_fds[0], chunk, sizeof chunk)) > 0) out.append(chunk, static_cast<size_t>(n));
  });
  set_output_fd(pipe_fds[1]);
  start_writer();
  emit_lines();
  stop_writer();
  set_output_fd(STDERR_FILENO);
  ::close(pipe_fds[1]);
  reader.join();
  ::close(pipe_fds[0]);
  return out;
}

}  // namespace

TEST_CASE("the logging thread writes every line of four threads whole; a flood of one event is coalesced") {
  const std::string out = through_the_writer([] {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([t] {
        // 40 lines of one event per thread: 160 in all, 100 pass the window's
        // budget. (An event no other test logs: the windows are per process.)
        for (int i = 0; i < 40; ++i) emit(Level::error, EventId::invariant_broken, "a flood", {{"thread", t}, {"i", i}});
        emit(Level::info, EventId::parent_connected, "another event is not held back", {{"thread", t}});
      });
    }
    for (std::thread& thread : threads) thread.join();
  });
  CHECK(count_of(out, "\"event\":30090,") == kRepeatLinesMax + 1);  // the lines, then one count
  CHECK(count_of(out, "\"coalesced\":60}") == 1);
  CHECK(count_of(out, "\"event\":30050,") == 4);
  CHECK(count_of(out, "\n") == kRepeatLinesMax + 1 + 4);
  size_t line_start = 0;
  for (size_t end = out.find('\n'); end != std::string::npos; end = out.find('\n', line_start)) {
    const std::string line = out.substr(line_start, end - line_start);
    REQUIRE(line.rfind("{\"ts\":", 0) == 0);  // never two lines interleaved
    REQUIRE(line.back() == '}');
    line_start = end + 1;
  }
}

TEST_CASE("refusals coalesce per event and peer host: one peer's flood does not hide another's lines") {
  const std::string out = through_the_writer([] {
    // An attacker from one host, a new port each time, then a bystander from another (TEST-NET addresses no other test uses).
    for (int i = 0; i < 150; ++i) {
      const std::string peer = "198.51.100.7:" + std::to_string(40'000 + i);
      emit(Level::warning, EventId::mutual_auth_failed, "refused", {{"peer", peer}});
    }
    for (int i = 0; i < 5; ++i) emit(Level::warning, EventId::mutual_auth_failed, "refused", {{"peer", "203.0.113.9:443 via 127.0.0.1:1"}});
  });
  CHECK(count_of(out, R"("peer":"198.51.100.7:)") == kRepeatLinesMax);
  CHECK(count_of(out, R"("peer":"203.0.113.9:443 via)") == 5);
  CHECK(count_of(out, R"(50 more lines of this event from 198.51.100.7 in the last 10 s)") == 1);
  CHECK(count_of(out, R"("coalesced":50,"peer":"198.51.100.7"})") == 1);
}

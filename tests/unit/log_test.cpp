#include <doctest/doctest.h>

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

// A journal entry as one event: the JSON journalctl -o json writes, with its
// conventions for repeated fields and values that are not UTF-8. (Reading real
// journal files, resuming at the cursor and following them: the e2e suite,
// with files systemd-journal-remote writes.)
#include <doctest/doctest.h>

#include "gatehouse/agent/input_journal.h"

using gatehouse::agent::journal_entry_json;
using Fields = std::vector<std::pair<std::string, std::string>>;

TEST_CASE("journal entry: cursor and timestamps first, then each field; a repeated field is an array") {
  const Fields fields{{"MESSAGE", "disk \"sda\" full\n"}, {"TAG", "a"}, {"PRIORITY", "3"}, {"TAG", "b"}};
  CHECK(journal_entry_json(fields, "s=1;i=2", 1700000000000001, 42) ==
        "{\"__CURSOR\":\"s=1;i=2\",\"__REALTIME_TIMESTAMP\":\"1700000000000001\",\"__MONOTONIC_TIMESTAMP\":\"42\","
        "\"MESSAGE\":\"disk \\\"sda\\\" full\\n\",\"TAG\":[\"a\",\"b\"],\"PRIORITY\":\"3\"}");
}

TEST_CASE("journal entry: UTF-8 stays a string; anything else is an array of byte values") {
  const auto value_of = [](const std::string& value) {
    const std::string line = journal_entry_json({{"F", value}}, "c", 0, 0);
    const std::string head = "\"F\":";
    return line.substr(line.find(head) + head.size(), line.size() - line.find(head) - head.size() - 1);
  };
  CHECK(value_of("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") == "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  CHECK(value_of(std::string("a\0b", 3)) == "\"a\\u0000b\"");  // NUL is UTF-8: escaped
  CHECK(value_of("\xff") == "[255]");
  CHECK(value_of("\xc0\x80") == "[192,128]");          // overlong
  CHECK(value_of("\xed\xa0\x80") == "[237,160,128]");  // a surrogate
  CHECK(value_of("\xf4\x90\x80\x80") == "[244,144,128,128]");  // past U+10FFFF
  CHECK(value_of("ok\xe2\x82") == "[111,107,226,130]");  // cut short
}

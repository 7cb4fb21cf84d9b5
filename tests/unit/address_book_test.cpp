// Parent addresses resolved off the shards: numeric ones at once, names on
// the resolver thread; lookups never block. Loopback names only (/etc/hosts):
// tests send nothing to a DNS server.
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "gatehouse/net/address_book.h"

using namespace gatehouse;

namespace {

// "localhost" resolves from /etc/hosts without any DNS query only where that
// file names it (a debootstrap minbase root has no /etc/hosts at all).
bool hosts_file_names_localhost() {
  std::ifstream hosts("/etc/hosts");
  std::stringstream text;
  text << hosts.rdbuf();
  return text.str().find("localhost") != std::string::npos;
}

}  // namespace

TEST_CASE("address book: numeric addresses answer at once, with no resolver thread") {
  std::vector<config::Peer> peers(2);
  peers[0].address = {"127.0.0.1", 5723, "127.0.0.1:5723"};
  peers[1].address = {"::1", 5724, "[::1]:5724"};
  net::AddressBook book(peers, 50);
  runtime::PeerAddress address;
  std::string why;
  REQUIRE(book.lookup(0, address, why));
  CHECK(address.to_string() == "127.0.0.1:5723");
  book.refresh_soon(1);  // numeric: nothing to do, and nothing waits
  REQUIRE(book.lookup(1, address, why));
  CHECK(address.to_string() == "[::1]:5724");
}

TEST_CASE("address book: a named peer resolves off the caller; refresh_soon never blocks; readers always get an answer") {
  if (!hosts_file_names_localhost()) {
    MESSAGE("/etc/hosts does not name localhost: skipped (tests send no DNS queries)");
    return;
  }
  std::vector<config::Peer> peers(1);
  peers[0].address = {"localhost", 5725, "localhost:5725"};
  net::AddressBook book(peers, 50);
  runtime::PeerAddress address;
  std::string why;
  REQUIRE_MESSAGE(book.lookup(0, address, why), why);
  const std::string localhost = address.to_string();
  CHECK((localhost == "127.0.0.1:5725" || localhost == "[::1]:5725"));
  // Refreshes run on the resolver thread, with periodic ones (50 ms) besides.
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  uint64_t lookups = 0;
  while (std::chrono::steady_clock::now() < until) {
    book.refresh_soon(0);
    REQUIRE(book.lookup(0, address, why));
    CHECK(address.to_string() == localhost);
    ++lookups;
  }
  CHECK(lookups > 100);
}

// Parent addresses resolved off the shards: numeric ones at once, names on
// the resolver thread; lookups never block. Loopback names only (/etc/hosts):
// tests send nothing to a DNS server.
#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "gatehouse/net/address_book.h"

using namespace gatehouse;

TEST_CASE("address book: numeric and loopback names answer at once; refresh_soon never blocks") {
  std::vector<config::Peer> peers(3);
  peers[0].address = {"127.0.0.1", 5723, "127.0.0.1:5723"};
  peers[1].address = {"::1", 5724, "[::1]:5724"};
  peers[2].address = {"localhost", 5725, "localhost:5725"};
  net::AddressBook book(peers, 50);
  runtime::PeerAddress address;
  std::string why;
  REQUIRE(book.lookup(0, address, why));
  CHECK(address.to_string() == "127.0.0.1:5723");
  REQUIRE(book.lookup(1, address, why));
  CHECK(address.to_string() == "[::1]:5724");
  REQUIRE(book.lookup(2, address, why));
  const std::string localhost = address.to_string();
  CHECK((localhost == "127.0.0.1:5725" || localhost == "[::1]:5725"));
  // Refreshes run on the resolver thread, with periodic ones (50 ms) besides;
  // readers keep getting an answer throughout.
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  uint64_t lookups = 0;
  while (std::chrono::steady_clock::now() < until) {
    book.refresh_soon(2);
    book.refresh_soon(0);  // numeric: nothing to do
    REQUIRE(book.lookup(2, address, why));
    CHECK(address.to_string() == localhost);
    ++lookups;
  }
  CHECK(lookups > 100);
}

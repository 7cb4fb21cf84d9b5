// The failover order every child follows (agents, uplinks): the next parent
// at once after a failure, a jittered backoff only after a whole round
// failed, doubling to its bound; success resets it; a refusal that takes a
// human ends the round at once.
#include <doctest/doctest.h>

#include "gatehouse/net/failover.h"

using gatehouse::net::Failover;

TEST_CASE("failover: parents in order, backoff after a full round, doubling to the bound, reset by success") {
  Failover failover(3, 200, 1'000);
  CHECK(failover.current() == 0);
  CHECK(failover.failed() == 0);  // the next parent, now
  CHECK(failover.current() == 1);
  CHECK(failover.failed() == 0);
  CHECK(failover.current() == 2);
  const uint32_t first = failover.failed();  // the whole list failed
  CHECK(failover.current() == 0);
  CHECK(first >= 100);
  CHECK(first <= 200);
  uint32_t delay = 0;
  for (int round = 0; round < 6; ++round) {
    CHECK(failover.failed() == 0);
    CHECK(failover.failed() == 0);
    delay = failover.failed();
  }
  CHECK(delay >= 500);  // 200 → 400 → 800 → 1,000 (bound), jittered down to half
  CHECK(delay <= 1'000);
  failover.succeeded();
  CHECK(failover.failed() == 0);
  CHECK(failover.failed() == 0);
  const uint32_t after_success = failover.failed();
  CHECK(after_success <= 200);
}

TEST_CASE("failover: a refusal that takes a human ends the round at once; jitter stays within its base") {
  Failover failover(4, 300, 30'000);
  failover.end_round();
  const uint32_t delay = failover.failed();
  CHECK(delay >= 150);
  CHECK(delay <= 300);
  for (int i = 0; i < 100; ++i) {
    const uint32_t jitter = failover.jitter_ms(100);
    CHECK(jitter >= 100);
    CHECK(jitter < 200);
  }
  CHECK(failover.jitter_ms(0) == 0);
}

TEST_CASE("failover: a reload's backoff bounds apply from the next round") {
  Failover failover(1, 200, 60'000);
  for (int round = 0; round < 10; ++round) failover.failed();  // backed off to the 60 s bound
  failover.retime(100, 1'000);  // SIGHUP: a lower bound
  const uint32_t capped = failover.failed();
  CHECK(capped >= 500);
  CHECK(capped <= 1'000);
  failover.succeeded();
  const uint32_t fresh = failover.failed();
  CHECK(fresh >= 50);  // the new initial backoff
  CHECK(fresh <= 100);
}

// Expiry on a clock the test moves: wall-clock jumps either way neither
// expire a message early nor revive it; only time that passed counts,
// across restarts and reboots.

#include "durable_support.hpp"
#include "test_clock.hpp"

using namespace courier::durable;
using namespace courier::durable::testing;

namespace {

store_options clocked(const std::string& dir,
                      std::shared_ptr<test_clock> clock) {
  auto o = small_options(dir);
  o.clock = std::move(clock);
  o.expiry_interval = std::chrono::hours{1}; // the test calls expire_due()
  return o;
}

message_options ttl(std::chrono::seconds reach, std::chrono::seconds receive) {
  message_options o;
  o.time_to_reach_queue = reach;
  o.time_to_be_received = receive;
  return o;
}

} // namespace

TEST_CASE("wall-clock jumps neither expire a message early nor revive it",
          "[durable]") {
  temp_dir dir;
  auto clock = std::make_shared<test_clock>();
  auto s = open_or_fail(clocked(dir.path(), clock));
  REQUIRE(s->append_and_wait("q", "m", ttl(0s, 10s)));
  clock->jump_wall(std::chrono::hours{24 * 365});
  CHECK(s->expire_due() == 0);
  clock->jump_wall(-std::chrono::hours{2 * 24 * 365});
  CHECK(s->expire_due() == 0);
  clock->advance(9s);
  CHECK(s->expire_due() == 0);
  clock->advance(1s);
  CHECK(s->expire_due() == 1);
  REQUIRE(s->flush());
  auto dead = s->dead_letters();
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].reason == dead_reason::time_to_be_received);
  // The wall clock going back does not bring it back, restart or not.
  clock->jump_wall(-std::chrono::hours{24});
  s.reset();
  s = open_or_fail(clocked(dir.path(), clock));
  CHECK(s->dead_letters().size() == 1);
  CHECK(s->claim("q", 1)->empty());
}

TEST_CASE("each timer expires into the dead letters with its own reason",
          "[durable]") {
  temp_dir dir;
  auto clock = std::make_shared<test_clock>();
  auto s = open_or_fail(clocked(dir.path(), clock));
  REQUIRE(s->append_and_wait("q", "reach", ttl(5s, 60s)));
  REQUIRE(s->append_and_wait("q", "receive", ttl(0s, 8s)));
  REQUIRE(s->append_and_wait("q", "forever", ttl(0s, 0s)));
  clock->advance(6s);
  // A claim meets the expired one first and skips it.
  auto got = s->claim("q", 1);
  REQUIRE(got->size() == 1);
  CHECK(got->at(0).payload == "receive");
  CHECK(got->at(0).age == 6s);
  clock->advance(3s);
  // A claimed message is its handler's; failing it after its deadline
  // sends it to the dead letters.
  CHECK(s->expire_due() == 0);
  REQUIRE(s->fail_and_wait(got->at(0).id, "slow"));
  REQUIRE(s->flush());
  auto dead = s->dead_letters();
  REQUIRE(dead.size() == 2);
  CHECK(dead[0].message.payload == "reach");
  CHECK(dead[0].reason == dead_reason::time_to_reach_queue);
  CHECK(dead[1].message.payload == "receive");
  CHECK(dead[1].reason == dead_reason::time_to_be_received);
  CHECK_THAT(dead[1].detail, Catch::Contains("time_to_be_received"));
  clock->advance(std::chrono::hours{1000});
  CHECK(s->expire_due() == 0);
  CHECK(s->peek("q").size() == 1);
}

TEST_CASE("the age of a message survives restarts and reboots", "[durable]") {
  temp_dir dir;
  auto clock = std::make_shared<test_clock>();
  {
    auto s = open_or_fail(clocked(dir.path(), clock));
    REQUIRE(s->append_and_wait("q", "m", ttl(0s, 20s)));
    clock->advance(4s);
  }
  // A restart in the same boot: BOOTTIME goes on; a wall jump is ignored.
  clock->jump_wall(std::chrono::hours{-3});
  {
    auto s = open_or_fail(clocked(dir.path(), clock));
    auto m = s->peek("q");
    REQUIRE(m.size() == 1);
    CHECK(m[0].age == 4s);
    clock->advance(2s);
    REQUIRE(s->flush());
  }
  // A reboot after 5 s down: the downtime is measured on the wall clock
  // from the last record (the restart's own records count).
  clock->reboot(5s);
  {
    auto s = open_or_fail(clocked(dir.path(), clock));
    auto m = s->peek("q");
    REQUIRE(m.size() == 1);
    CHECK(m[0].age >= 4s + 5s);
    CHECK(m[0].age <= 6s + 5s + 2s);
    clock->advance(5s);
    CHECK(s->expire_due() == 0);
  }
  // Another reboot whose wall clock went backwards: the downtime counts as
  // zero, never negative; the message neither expires nor gets younger.
  clock->reboot(-std::chrono::hours{10});
  auto s = open_or_fail(clocked(dir.path(), clock));
  auto m = s->peek("q");
  REQUIRE(m.size() == 1);
  auto age = m[0].age;
  CHECK(age >= 9s + 5s);
  CHECK(s->expire_due() == 0);
  clock->advance(20s - age + 1s);
  CHECK(s->expire_due() == 1);
}

// The node's deadline timer: order, early deadlines, liveness tokens, stop.

#include <atomic>
#include <memory>

#include "deadline_timer.hpp"
#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;
using courier::detail::deadline_timer;

namespace {

deadline_timer::time_point in(std::chrono::milliseconds d) {
  return deadline::clock::now() + d;
}

} // namespace

TEST_CASE("the timer runs callbacks in deadline order, never early",
          "[unit][timer]") {
  deadline_timer timer;
  probe<int> fired;
  std::vector<deadline_timer::time_point> due(3);
  due[0] = in(60ms);
  due[1] = in(20ms);
  due[2] = in(40ms);
  std::vector<deadline_timer::time_point> ran(3);
  for (int i = 0; i < 3; ++i)
    timer.at(due[i], [&, i] {
      ran[i] = deadline::clock::now();
      fired.push(i);
    });
  REQUIRE(fired.wait_for_count(3));
  CHECK(fired.items() == std::vector<int>{1, 2, 0});
  for (int i = 0; i < 3; ++i)
    CHECK(ran[i] >= due[i]);
}

TEST_CASE("a sooner deadline wakes a timer that sleeps for a later one",
          "[unit][timer]") {
  deadline_timer timer;
  probe<int> fired;
  timer.at(in(10s), [&] { fired.push(1); });
  auto start = deadline::clock::now();
  timer.at(in(10ms), [&] { fired.push(2); });
  REQUIRE(fired.wait_for_count(1, 5s));
  CHECK(fired.items().front() == 2);
  CHECK(deadline::clock::now() - start < 2s);
}

TEST_CASE("a callback whose token is gone never runs, and is tidied away",
          "[unit][timer]") {
  deadline_timer timer;
  std::atomic<int> ran{0};
  {
    auto token = std::make_shared<int>(0);
    for (int i = 0; i < 10000; ++i)
      timer.at(in(1h), token, [&] { ++ran; });
  }
  auto live = std::make_shared<int>(0);
  // Growing to twice the size of the last tidy-up (8192 live, at the
  // 8192nd entry above) tidies again, and drops the dead entries. The
  // deadlines are distant, so nothing leaves the heap by coming due
  // while it grows (a slow, sanitized build takes its time here).
  constexpr int more = 7000;
  for (int i = 0; i < more; ++i)
    timer.at(in(1h), live, [&] { ++ran; });
  CHECK(timer.pending() <= more);
  // A live entry due soon runs; a dead one, due sooner, does not.
  std::weak_ptr<int> gone = std::make_shared<int>(0);
  timer.at(in(1ms), gone, [&] { ++ran; });
  std::atomic<bool> fired{false};
  timer.at(in(20ms), live, [&] { fired = true; });
  REQUIRE(eventually([&] { return fired.load(); }));
  CHECK(ran.load() == 0);
}

TEST_CASE("a stopped timer drops what is due and what comes", "[unit][timer]") {
  std::atomic<int> ran{0};
  deadline_timer timer;
  timer.at(in(50ms), [&] { ++ran; });
  timer.stop();
  timer.at(in(0ms), [&] { ++ran; });
  CHECK(timer.pending() == 0);
  CHECK(ran.load() == 0);
}

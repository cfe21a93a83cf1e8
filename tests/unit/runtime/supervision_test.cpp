#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// Counts Pings in state that a restart resets; Crash fails it.
behavior counter(context& ctx) {
  auto count = std::make_shared<std::int64_t>(0);
  return {
    [count](const tpb::Ping&) {
      tpb::Pong out;
      out.set_seq(++*count);
      return out;
    },
    [&ctx](const tpb::Crash& c) { ctx.fail(c.reason()); },
  };
}

spawn_options supervised(std::size_t max_restarts,
                         std::chrono::milliseconds backoff = 1ms) {
  spawn_options options;
  options.restart = restart_policy{};
  options.restart->max_restarts = max_restarts;
  options.restart->window = std::chrono::minutes{1};
  options.restart->initial_backoff = backoff;
  options.restart->max_backoff = backoff * 4;
  return options;
}

std::int64_t count_of(node& n) {
  auto pong = n.send<tpb::Pong>("counter", ping(0), 5s);
  REQUIRE(pong);
  return (*pong)->seq();
}

} // namespace

TEST_CASE("a supervised actor that fails comes back under its name with "
          "fresh state",
          "[runtime]") {
  quiet_node n;
  auto ref = n->spawn("counter", counter, supervised(3));
  REQUIRE(ref);
  CHECK(count_of(*n) == 1);
  CHECK(count_of(*n) == 2);
  probe<down_notice> downs;
  REQUIRE(n->monitor("counter", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->post("counter", tpb::Crash{}));
  REQUIRE(downs.wait_for_count(1));
  CHECK(downs.items().front().reason == down_reason::failed);
  CHECK(downs.items().front().restarting);
  // Back under the same name, through the same ref, with fresh state.
  REQUIRE(eventually([&] { return n->send("counter", ping(0), 5s).has_value(); }));
  CHECK(count_of(*n) == 2);
  CHECK(ref->bound());
  auto again = n->send<tpb::Pong>(*ref, ping(0), 5s);
  REQUIRE(again);
  CHECK((*again)->seq() == 3);
  CHECK(n.lines->size() >= 1); // "restarting 'counter'" was logged
}

TEST_CASE("a supervisor gives up after the intensity limit and releases the "
          "name",
          "[runtime]") {
  quiet_node n;
  auto ref = n->spawn("counter", counter, supervised(2));
  REQUIRE(ref);
  probe<down_notice> downs;
  for (int round = 1; round <= 3; ++round) {
    REQUIRE(eventually(
      [&] { return n->send("counter", ping(0), 5s).has_value(); }));
    REQUIRE(n->monitor("counter", [&](const down_notice& d) { downs.push(d); }));
    REQUIRE(n->post("counter", tpb::Crash{}));
    REQUIRE(downs.wait_for_count(round));
  }
  auto notices = downs.items();
  CHECK(notices[0].restarting);
  CHECK(notices[1].restarting);
  CHECK_FALSE(notices[2].restarting);
  CHECK_FALSE(ref->bound());
  CHECK(n->find("counter").code() == errc::not_found);
  auto log = n.lines->items();
  CHECK(std::any_of(log.begin(), log.end(), [](const std::string& line) {
    return line.find("gives up") != std::string::npos;
  }));
}

TEST_CASE("messages to a restarting actor fail with unavailable",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("counter", counter, supervised(3, std::chrono::minutes{1})));
  probe<down_notice> downs;
  REQUIRE(n->monitor("counter", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->post("counter", tpb::Crash{}));
  REQUIRE(downs.wait_for_count(1));
  CHECK(n->send("counter", ping(0), 5s).code() == errc::unavailable);
  CHECK(n->post("counter", ping(0)).code() == errc::unavailable);
  CHECK(n->dead_letters(dead_letter_reason::restarting) == 2);
  // Still bound: nobody else may take the name meanwhile.
  CHECK(n->find("counter"));
  CHECK(n->spawn("counter", adder).code() == errc::already_exists);
  // Stopping it while it waits releases the name.
  REQUIRE(n->stop("counter"));
  CHECK(n->find("counter").code() == errc::not_found);
}

TEST_CASE("an actor stopped on purpose is not restarted", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("counter", counter, supervised(3)));
  probe<down_notice> downs;
  REQUIRE(n->monitor("counter", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->stop("counter"));
  REQUIRE(downs.wait_for_count(1));
  CHECK(downs.items().front().reason == down_reason::stopped);
  CHECK_FALSE(downs.items().front().restarting);
  CHECK(n->find("counter").code() == errc::not_found);
}

TEST_CASE("a supervised actor whose handler throws is restarted",
          "[runtime]") {
  quiet_node n;
  // Shared by all incarnations: only the very first call throws.
  auto calls = std::make_shared<std::atomic<int>>(0);
  REQUIRE(n->spawn("thrower", [calls](context&) {
    return behavior{[calls](const tpb::Ping&) -> tpb::Pong {
      if (++*calls == 1)
        throw std::logic_error("the first call fails");
      return tpb::Pong{};
    }};
  }, supervised(3)));
  auto first = n->send("thrower", ping(1), 5s);
  CHECK(first.code() == errc::internal);
  CHECK(first.error().message().find("the first call fails")
        != std::string::npos);
  REQUIRE(eventually([&] { return n->send("thrower", ping(1), 5s).has_value(); }));
}

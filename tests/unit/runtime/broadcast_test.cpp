#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// Four kinds of crew: one answers, one refuses, one never answers, one is
/// down (restarting after a crash, with a long backoff).
void spawn_crew(node& n) {
  REQUIRE(n.spawn("crew.able", adder));
  REQUIRE(n.spawn("crew.baker", [](context&) {
    return behavior{[](const tpb::Ping&) -> expected<tpb::Pong> {
      return error{errc::permission_denied, "not today"};
    }};
  }));
  REQUIRE(n.spawn("crew.charlie", sloth));
  spawn_options restart_later;
  restart_later.restart = restart_policy{};
  restart_later.restart->initial_backoff = std::chrono::minutes{10};
  restart_later.restart->max_backoff = std::chrono::minutes{10};
  REQUIRE(n.spawn("crew.dog", [](context& ctx) {
    return behavior{[&ctx](const tpb::Crash&) { ctx.fail("bitten"); }};
  }, restart_later));
  probe<down_notice> downs;
  REQUIRE(n.monitor("crew.dog", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n.post("crew.dog", tpb::Crash{}));
  REQUIRE(downs.wait_for_count(1));
  REQUIRE(downs.items().front().restarting);
  REQUIRE(n.spawn("other", adder));
}

void check_crew(const broadcast_result& result) {
  REQUIRE(result.replied.size() == 1);
  CHECK(result.replied[0].name == "crew.able");
  CHECK(result.replied[0].payload->GetDescriptor() == tpb::Pong::descriptor());
  for (auto& f : result.failed)
    UNSCOPED_INFO(f.name << ": " << f.reason.to_string());
  REQUIRE(result.failed.size() == 1);
  CHECK(result.failed[0].name == "crew.baker");
  CHECK(result.failed[0].reason.code() == errc::permission_denied);
  CHECK(result.timed_out == std::vector<std::string>{"crew.charlie"});
  CHECK(result.dead == std::vector<std::string>{"crew.dog"});
  CHECK(result.size() == 4);
}

} // namespace

TEST_CASE("broadcast reports who replied, failed, timed out and was dead",
          "[runtime]") {
  quiet_node n;
  spawn_crew(*n);
  auto started = std::chrono::steady_clock::now();
  auto result = n->broadcast("crew.*", ping(1), 200ms);
  auto took = std::chrono::steady_clock::now() - started;
  check_crew(result);
  CHECK(took >= 200ms);
  CHECK(took < 5s);
}

TEST_CASE("broadcast from inside an actor collects the same result",
          "[runtime]") {
  quiet_node n;
  spawn_crew(*n);
  probe<broadcast_result> results;
  REQUIRE(n->spawn("captain", [&](context& ctx) {
    return behavior{[&](const tpb::Add&) {
      ctx.broadcast("crew.*", ping(1), 200ms).then([&](broadcast_result r) {
        results.push(std::move(r));
      });
    }};
  }));
  REQUIRE(n->post("captain", add(0, 0)));
  REQUIRE(results.wait_for_count(1));
  check_crew(results.items().front());
}

TEST_CASE("broadcast to a pattern nobody matches returns at once empty",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("solo", adder));
  auto result = n->broadcast("crew.*", ping(1), 10s);
  CHECK(result.size() == 0);
  probe<std::size_t> sizes;
  REQUIRE(n->spawn("asker", [&](context& ctx) {
    return behavior{[&](const tpb::Add&) {
      // The asker matches "*" but never asks itself.
      ctx.broadcast("*", ping(1), 10s).then([&](broadcast_result r) {
        sizes.push(r.replied.size() * 10 + r.size());
      });
    }};
  }));
  REQUIRE(n->post("asker", add(0, 0)));
  REQUIRE(sizes.wait_for_count(1));
  CHECK(sizes.items().front() == 11); // only "solo", which replied
}

// Lifecycle edge cases: races between spawn, stop, restart and shutdown,
// refs that outlive or cross nodes, and user callbacks that misbehave.

#include <thread>

#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

spawn_options supervised(std::chrono::milliseconds backoff) {
  spawn_options options;
  options.restart = restart_policy{};
  options.restart->max_restarts = 100;
  options.restart->initial_backoff = backoff;
  options.restart->max_backoff = backoff;
  return options;
}

behavior crashable(context& ctx) {
  return {[&ctx](const tpb::Crash& c) { ctx.fail(c.reason()); },
          [](const tpb::Ping&) { return tpb::Pong{}; }};
}

} // namespace

TEST_CASE("stop racing spawn never leaves a nameless actor behind",
          "[runtime]") {
  std::atomic<int> spawned{0};
  {
    quiet_node n;
    std::atomic<bool> done{false};
    std::thread stopper{[&] {
      while (!done)
        (void)n->stop("contested");
    }};
    for (int i = 0; i < 300; ++i) {
      if (n->spawn("contested", adder))
        ++spawned;
      (void)n->stop("contested");
    }
    done = true;
    stopper.join();
    REQUIRE(eventually([&] { return n->names().empty(); }));
    // A nameless actor would keep the node's destructor waiting forever.
  }
  CHECK(spawned > 0);
}

TEST_CASE("stop racing a restart releases the name for good", "[runtime]") {
  quiet_node n;
  for (int round = 0; round < 50; ++round) {
    REQUIRE(n->spawn("phoenix", crashable, supervised(1ms)));
    REQUIRE(n->post("phoenix", tpb::Crash{}));
    // Stop at a random point of the crash/restart cycle.
    REQUIRE(eventually([&] {
      auto stopped = n->stop("phoenix");
      return stopped || stopped.code() == errc::not_found;
    }));
    REQUIRE(eventually([&] { return n->names().empty(); }));
  }
}

TEST_CASE("stop and monitor by name@node work while the actor restarts",
          "[runtime]") {
  quiet_node n{"island"};
  REQUIRE(n->spawn("phoenix", crashable, supervised(std::chrono::minutes{1})));
  probe<down_notice> downs;
  REQUIRE(n->monitor("phoenix", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->post("phoenix", tpb::Crash{}));
  REQUIRE(downs.wait_for_count(1));
  REQUIRE(n->monitor("phoenix@island",
                     [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->stop("phoenix@island"));
  REQUIRE(downs.wait_for_count(2));
  CHECK(downs.items()[1].reason == down_reason::stopped);
  CHECK(n->find("phoenix").code() == errc::not_found);
}

TEST_CASE("a ref from another node object is refused with not_found",
          "[runtime]") {
  quiet_node a{"node-a"};
  quiet_node b{"node-b"};
  auto ref = a->spawn("adder", adder);
  REQUIRE(ref);
  REQUIRE(b->spawn("adder", adder));
  CHECK(b->send(*ref, add(1, 1), 5s).code() == errc::not_found);
  CHECK(b->stop(*ref).code() == errc::not_found);
  CHECK(b->find("adder")); // b's own actor of that name is untouched
}

TEST_CASE("a ref that outlives its node reports unbound", "[runtime]") {
  actor_ref kept;
  {
    quiet_node n;
    auto ref = n->spawn("ephemeral", adder);
    REQUIRE(ref);
    kept = *ref;
    CHECK(kept.bound());
  }
  CHECK_FALSE(kept.bound());
  CHECK(kept.name() == "ephemeral");
}

TEST_CASE("a blocking send inside a handler fails with failed_precondition",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  probe<errc> codes;
  REQUIRE(n->spawn("impatient", [&](context&) {
    return behavior{[&](const tpb::Ping&) {
      codes.push(n->send("adder", add(1, 1), 1s).code());
      auto roll = n->broadcast("*", ping(1), 1s);
      codes.push(roll.failed.empty() ? errc::ok : roll.failed[0].reason.code());
    }};
  }));
  REQUIRE(n->post("impatient", ping(1)));
  REQUIRE(codes.wait_for_count(2));
  CHECK(codes.items()[0] == errc::failed_precondition);
  CHECK(codes.items()[1] == errc::failed_precondition);
}

TEST_CASE("a broadcast of a null message from an actor fails every target",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  probe<broadcast_result> results;
  REQUIRE(n->spawn("caller", [&](context& ctx) {
    return behavior{[&](const tpb::Ping&) {
      ctx.broadcast("*", message{}, 1s).then([&](broadcast_result r) {
        results.push(std::move(r));
      });
    }};
  }));
  REQUIRE(n->post("caller", ping(1)));
  REQUIRE(results.wait_for_count(1));
  auto r = results.items().front();
  REQUIRE(r.failed.size() == 1);
  CHECK(r.failed[0].name == "adder");
  CHECK(r.failed[0].reason.code() == errc::invalid_argument);
}

TEST_CASE("shutdown tells monitors of a restarting actor node_down",
          "[runtime]") {
  probe<down_notice> downs;
  {
    quiet_node n;
    REQUIRE(n->spawn("phoenix", crashable,
                     supervised(std::chrono::minutes{1})));
    REQUIRE(n->monitor("phoenix", [&](const down_notice& d) { downs.push(d); }));
    REQUIRE(n->post("phoenix", tpb::Crash{}));
    REQUIRE(downs.wait_for_count(1));
    REQUIRE(n->monitor("phoenix", [&](const down_notice& d) { downs.push(d); }));
  }
  REQUIRE(downs.size() == 2);
  CHECK(downs.items()[1].reason == down_reason::node_down);
}

TEST_CASE("a log sink that throws does not break supervision", "[runtime]") {
  node_config config;
  config.join_directory = false;
  config.log = [](log_level, std::string_view) {
    throw std::runtime_error("log sink broken");
  };
  auto n = node::start(config);
  REQUIRE(n);
  REQUIRE(n->spawn("phoenix", crashable, supervised(1ms)));
  probe<down_notice> downs;
  REQUIRE(n->monitor("phoenix", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->post("phoenix", tpb::Crash{}));
  REQUIRE(downs.wait_for_count(1));
  REQUIRE(eventually([&] { return n->send("phoenix", ping(1), 5s).has_value(); }));
}

TEST_CASE("a handler that takes the reply and then throws answers internal",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("liar", [](context& ctx) {
    return behavior{[&ctx](const tpb::Hold&) {
      auto r = ctx.take_reply();
      throw std::runtime_error("promised, then fell over");
    }};
  }));
  auto reply = n->send("liar", tpb::Hold{}, 5s);
  CHECK(reply.code() == errc::internal);
  CHECK(reply.error().message().find("fell over") != std::string::npos);
}

TEST_CASE("monitors of watchers that are gone do not pile up", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("db", adder));
  probe<bool> seen;
  // Short-lived actors each watch "db" once, then stop.
  for (int i = 0; i < 50; ++i) {
    auto name = "client" + std::to_string(i);
    REQUIRE(n->spawn(name, [&](context& ctx) {
      return behavior{[&](const tpb::Ping&) {
        (void)ctx.monitor("db", [](const down_notice&) {});
        ctx.stop();
      }};
    }));
    REQUIRE(n->send(name, ping(1), 5s).code() != errc::internal);
  }
  probe<down_notice> downs;
  REQUIRE(n->monitor("db", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->stop("db"));
  REQUIRE(downs.wait_for_count(1));
}

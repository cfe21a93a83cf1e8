#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

TEST_CASE("a monitor gets one notice with reason stopped", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("quitter", [](context& ctx) {
    return behavior{[&ctx](const tpb::Quit&) { ctx.stop(); }};
  }));
  probe<down_notice> downs;
  REQUIRE(n->monitor("quitter", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->monitor("quitter", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->post("quitter", tpb::Quit{}));
  REQUIRE(downs.wait_for_count(2));
  for (auto& d : downs.items()) {
    CHECK(d.name == "quitter");
    CHECK(d.reason == down_reason::stopped);
    CHECK_FALSE(d.restarting);
  }
}

TEST_CASE("a monitor gets reason failed with the cause", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("fragile", [](context& ctx) {
    return behavior{[&ctx](const tpb::Crash& c) {
      if (c.via_fail())
        ctx.fail(c.reason());
      else
        throw std::runtime_error(c.reason());
    }};
  }));
  probe<down_notice> downs;
  REQUIRE(n->monitor("fragile", [&](const down_notice& d) { downs.push(d); }));
  tpb::Crash crash;
  crash.set_reason("out of coffee");
  crash.set_via_fail(true);
  REQUIRE(n->post("fragile", crash));
  REQUIRE(downs.wait_for_count(1));
  auto notice = downs.items().front();
  CHECK(notice.reason == down_reason::failed);
  CHECK(notice.detail == "out of coffee");
}

TEST_CASE("monitoring a free name fails with not_found", "[runtime]") {
  quiet_node n;
  auto watched = n->monitor("nobody", [](const down_notice&) {});
  CHECK(watched.code() == errc::not_found);
}

TEST_CASE("a monitor sees node_down when the node shuts down", "[runtime]") {
  probe<down_notice> downs;
  {
    quiet_node n;
    REQUIRE(n->spawn("worker", adder));
    REQUIRE(n->monitor("worker", [&](const down_notice& d) { downs.push(d); }));
  }
  REQUIRE(downs.size() == 1);
  CHECK(downs.items().front().reason == down_reason::node_down);
}

TEST_CASE("a monitor set by an actor runs inside that actor", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("target", [](context& ctx) {
    return behavior{[&ctx](const tpb::Quit&) { ctx.stop(); }};
  }));
  probe<std::string> notices;
  REQUIRE(n->spawn("watcher", [&](context& ctx) {
    // State owned by the actor: touched only inside it.
    auto seen = std::make_shared<int>(0);
    return behavior{[&, seen](const tpb::Ping&) {
      auto watched = ctx.monitor("target", [&, seen](const down_notice& d) {
        ++*seen;
        notices.push(ctx.name() + " saw " + d.name + " "
                     + std::string{to_string(d.reason)} + " "
                     + std::to_string(*seen));
      });
      if (!watched)
        notices.push("monitor failed");
    }};
  }));
  REQUIRE(n->send("watcher", ping(1), 5s));
  REQUIRE(n->post("target", tpb::Quit{}));
  REQUIRE(notices.wait_for_count(1));
  CHECK(notices.items().front() == "watcher saw target stopped 1");
}

TEST_CASE("a cancelled monitor gets no notice, and the others still do",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("quitter", [](context& ctx) {
    return behavior{[&ctx](const tpb::Quit&) { ctx.stop(); }};
  }));
  probe<down_notice> cancelled;
  probe<down_notice> kept;
  auto first = n->monitor("quitter",
                          [&](const down_notice& d) { cancelled.push(d); });
  REQUIRE(first);
  REQUIRE(*first);
  REQUIRE(n->monitor("quitter", [&](const down_notice& d) { kept.push(d); }));
  n->demonitor(*first);
  n->demonitor(*first);          // idempotent
  n->demonitor(monitor_handle{}); // an empty handle is ignored
  REQUIRE(n->post("quitter", tpb::Quit{}));
  REQUIRE(kept.wait_for_count(1));
  // Both would have run in the same pass, the cancelled one first.
  CHECK(cancelled.items().empty());
}

TEST_CASE("an actor cancels its monitor with demonitor", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("quitter", [](context& ctx) {
    return behavior{[&ctx](const tpb::Quit&) { ctx.stop(); }};
  }));
  probe<std::string> notices;
  REQUIRE(n->spawn("watcher", [&](context& ctx) {
    auto dropped = ctx.monitor("quitter", [&](const down_notice&) {
      notices.push("cancelled one");
    });
    if (dropped)
      ctx.demonitor(*dropped);
    (void)ctx.monitor("quitter",
                      [&](const down_notice&) { notices.push("kept one"); });
    return behavior{[](const tpb::Ping&) {}};
  }));
  REQUIRE(n->post("quitter", tpb::Quit{}));
  REQUIRE(notices.wait_for_count(1));
  // The watcher handles its notices in order: had the cancelled one come,
  // it would have come first.
  CHECK(notices.items() == std::vector<std::string>{"kept one"});
}

// node::request_here: a request from any thread whose outcome goes to a
// callback (a reply_to sink), and the calling thread lent to an idle actor.

#include <atomic>
#include <optional>
#include <thread>

#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// The outcomes one request_here call got, and where the first came from.
struct outcomes {
  probe<expected<message>> got;
  std::atomic<int> calls{0};
  std::thread::id on;

  std::function<void(expected<message>)> callback() {
    return [this](expected<message> outcome) {
      if (calls.fetch_add(1) == 0)
        on = std::this_thread::get_id();
      got.push(std::move(outcome));
    };
  }

  expected<message> first() {
    REQUIRE(got.wait_for_count(1));
    return got.items().front();
  }
};

} // namespace

TEST_CASE("request_here runs an idle actor on the calling thread and calls "
          "back before it returns",
          "[runtime]") {
  quiet_node n;
  std::atomic<std::thread::id> handled_on{};
  REQUIRE(n->spawn("adder", [&](context&) {
    return behavior{[&](const tpb::Add& x) {
      handled_on = std::this_thread::get_id();
      tpb::Sum out;
      out.set_value(x.a() + x.b());
      return out;
    }};
  }));
  // Idle once its start and any request before are done with (the
  // scheduler's thread may still be leaving it): then the request runs
  // here, answered before request_here returns.
  std::optional<expected<message>> reply;
  REQUIRE(eventually([&] {
    outcomes seen;
    auto sent = n->request_here("adder", make_message(add(2, 3)), 5s,
                                seen.callback());
    REQUIRE(sent);
    REQUIRE(*sent);
    const bool here = seen.calls == 1;
    reply = seen.first();
    CHECK(seen.calls == 1);
    if (!here)
      return false;
    CHECK(handled_on.load() == std::this_thread::get_id());
    CHECK(seen.on == std::this_thread::get_id());
    return true;
  }));
  REQUIRE(*reply);
  auto sum = std::dynamic_pointer_cast<const tpb::Sum>(**reply);
  REQUIRE(sum);
  CHECK(sum->value() == 5);
  // The actor goes on serving from the scheduler.
  auto again = n->send<tpb::Sum>("adder", add(1, 1), 5s);
  REQUIRE(again);
  CHECK((*again)->value() == 2);
}

TEST_CASE("request_here from inside an actor does not run the target in "
          "its handler",
          "[runtime]") {
  quiet_node n;
  std::atomic<std::thread::id> asker_thread{};
  std::atomic<bool> asking{false};
  std::atomic<bool> nested{false};
  REQUIRE(n->spawn("adder", [&](context&) {
    return behavior{[&](const tpb::Add& x) {
      if (asking && asker_thread.load() == std::this_thread::get_id())
        nested = true;
      tpb::Sum out;
      out.set_value(x.a() + x.b());
      return out;
    }};
  }));
  outcomes seen;
  REQUIRE(n->spawn("asker", [&](context&) {
    return behavior{[&](const tpb::Ping&) {
      asker_thread = std::this_thread::get_id();
      asking = true;
      auto sent = n->request_here("adder", make_message(add(4, 5)), 5s,
                                  seen.callback());
      asking = false;
      if (!sent || !*sent)
        seen.got.push(error{errc::internal, "not sent"});
    }};
  }));
  REQUIRE(n->post("asker", ping(1)));
  auto reply = seen.first();
  REQUIRE(reply);
  CHECK_FALSE(nested);
  CHECK(seen.calls == 1);
}

TEST_CASE("request_here ends a request nobody answers with "
          "deadline_exceeded at its deadline",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("sloth", sloth));
  outcomes seen;
  auto began = std::chrono::steady_clock::now();
  REQUIRE(n->request_here("sloth", make_message(tpb::Hold{}), 200ms,
                          seen.callback()));
  auto outcome = seen.first();
  auto took = std::chrono::steady_clock::now() - began;
  REQUIRE_FALSE(outcome);
  CHECK(outcome.code() == errc::deadline_exceeded);
  CHECK(took >= 200ms);
  CHECK(took < 200ms + 50ms + 100ms); // the bound, and a busy VM's slack
  // Once: the sloth's parked request, dropped when the node stops, no
  // longer calls back.
  n.instance.reset();
  CHECK(seen.calls == 1);
}

TEST_CASE("request_here answers aborted for a request its actor drops, and "
          "passes the handler's errors",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("forgetful", [](context& ctx) {
    return behavior{[&ctx](const tpb::Hold&) { auto r = ctx.take_reply(); }};
  }));
  REQUIRE(n->spawn("adder", adder));
  outcomes dropped;
  REQUIRE(n->request_here("forgetful", make_message(tpb::Hold{}), 5s,
                          dropped.callback()));
  CHECK(dropped.first().code() == errc::aborted);
  outcomes stray;
  REQUIRE(n->request_here("adder", make_message(tpb::Stray{}), 5s,
                          stray.callback()));
  CHECK(stray.first().code() == errc::unimplemented);
  CHECK(dropped.calls == 1);
  CHECK(stray.calls == 1);
}

TEST_CASE("request_here fails at once for an unknown name or a null message "
          "and never calls back",
          "[runtime]") {
  quiet_node n;
  outcomes seen;
  auto nobody = n->request_here("nobody", make_message(ping(1)), 5s,
                                seen.callback());
  REQUIRE_FALSE(nobody);
  CHECK(nobody.code() == errc::not_found);
  auto null = n->request_here("nobody", message{}, 5s, seen.callback());
  REQUIRE_FALSE(null);
  CHECK(null.code() == errc::invalid_argument);
  REQUIRE(n->spawn("adder", adder));
  auto late = n->request_here("adder", make_message(add(1, 1)),
                              deadline::clock::now() - 1ms, seen.callback());
  REQUIRE_FALSE(late);
  CHECK(late.code() == errc::deadline_exceeded);
  CHECK(seen.calls == 0);
}

namespace {
thread_local bool in_relay = false; // inside the relay's handler
} // namespace

TEST_CASE("a post with lend_thread runs an idle actor on the posting thread, "
          "and an actor's post never lends its own",
          "[runtime]") {
  quiet_node n;
  probe<std::thread::id> handled_on;
  std::atomic<int> nested{0};
  REQUIRE(n->spawn("counter", [&](context&) {
    return behavior{[&](const tpb::Ping&) {
      if (in_relay)
        ++nested;
      handled_on.push(std::this_thread::get_id());
    }};
  }));
  post_options lend;
  lend.lend_thread = true;
  // Idle once its start and the posts before are done with: then the post
  // has run the handler here by the time it returns.
  std::size_t posted = 0;
  REQUIRE(eventually([&] {
    REQUIRE(n->post("counter", ping(static_cast<int>(posted)), lend));
    ++posted;
    auto seen = handled_on.items();
    return seen.size() == posted
           && seen.back() == std::this_thread::get_id();
  }));
  // From an actor the option is ignored: the target never runs inside the
  // poster's handler.
  std::atomic<int> forwarded{0};
  REQUIRE(n->spawn("relay", [&](context& ctx) {
    return behavior{[&](const tpb::Ping& p) {
      in_relay = true;
      if (ctx.post("counter", p, lend))
        ++forwarded;
      in_relay = false;
    }};
  }));
  for (int i = 0; i < 20; ++i)
    REQUIRE(n->post("relay", ping(1000 + i)));
  REQUIRE(handled_on.wait_for_count(posted + 20));
  CHECK(forwarded == 20);
  CHECK(nested == 0);
}

#include <atomic>
#include <future>

#include <google/protobuf/empty.pb.h>

#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

TEST_CASE("an actor answers a send with its typed reply", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  auto sum = n->send<tpb::Sum>("adder", add(2, 3), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 5);
  auto untyped = n->send("adder", add(4, 4), 5s);
  REQUIRE(untyped);
  CHECK((*untyped)->GetDescriptor() == tpb::Sum::descriptor());
}

TEST_CASE("posts are delivered once each and in order", "[runtime]") {
  quiet_node n;
  probe<std::int64_t> seen;
  REQUIRE(n->spawn("sink", [&](context&) {
    return behavior{[&](const tpb::Ping& p) { seen.push(p.seq()); }};
  }));
  constexpr int count = 1000;
  for (int i = 0; i < count; ++i)
    REQUIRE(n->post("sink", ping(i)));
  REQUIRE(seen.wait_for_count(count));
  auto items = seen.items();
  REQUIRE(items.size() == count);
  for (int i = 0; i < count; ++i)
    CHECK(items[i] == i);
}

TEST_CASE("in-process delivery hands over the very same object",
          "[runtime]") {
  quiet_node n;
  probe<const void*> seen;
  REQUIRE(n->spawn("sink", [&](context&) {
    return behavior{[&](std::shared_ptr<const tpb::Ping> p) {
      seen.push(p.get());
    }};
  }));
  auto msg = std::make_shared<const tpb::Ping>(ping(7, "payload"));
  REQUIRE(n->post("sink", msg));
  REQUIRE(seen.wait_for_count(1));
  CHECK(seen.items().front() == msg.get());
}

TEST_CASE("a send to an unknown name fails with not_found", "[runtime]") {
  quiet_node n;
  auto reply = n->send("nobody", ping(1), 5s);
  REQUIRE_FALSE(reply);
  CHECK(reply.code() == errc::not_found);
  CHECK(reply.error().message().find("nobody") != std::string::npos);
  CHECK(n->post("nobody", ping(1)).code() == errc::not_found);
}

TEST_CASE("a send with no reply before the deadline fails with "
          "deadline_exceeded",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("sloth", sloth));
  auto started = std::chrono::steady_clock::now();
  auto reply = n->send("sloth", tpb::Hold{}, 100ms);
  auto waited = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(reply);
  CHECK(reply.code() == errc::deadline_exceeded);
  CHECK(waited >= 100ms);
  CHECK(waited < 5s);
}

TEST_CASE("a send whose deadline has already passed fails at once",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  auto reply = n->send("adder", add(1, 1), deadline::clock::now() - 1ms);
  CHECK(reply.code() == errc::deadline_exceeded);
}

TEST_CASE("a send of a type the actor does not handle fails with "
          "unimplemented",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  auto reply = n->send("adder", tpb::Stray{}, 5s);
  REQUIRE_FALSE(reply);
  CHECK(reply.code() == errc::unimplemented);
  CHECK(reply.error().message().find("courier_test.v1.Stray")
        != std::string::npos);
}

TEST_CASE("a send to an actor that stops before replying fails with aborted",
          "[runtime]") {
  quiet_node n;
  probe<bool> parked;
  REQUIRE(n->spawn("quitter", [&](context& ctx) {
    auto held = std::make_shared<std::vector<responder>>();
    return behavior{
      [&, held](const tpb::Hold&) {
        held->push_back(ctx.take_reply());
        parked.push(true);
      },
      [&ctx](const tpb::Quit&) { ctx.stop(); },
    };
  }));
  auto pending = std::async(std::launch::async, [&] {
    return n->send("quitter", tpb::Hold{}, 10s);
  });
  REQUIRE(parked.wait_for_count(1));
  REQUIRE(n->post("quitter", tpb::Quit{}));
  auto reply = pending.get();
  REQUIRE_FALSE(reply);
  CHECK(reply.code() == errc::aborted);
}

TEST_CASE("a responder dropped unanswered answers aborted", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("forgetful", [](context& ctx) {
    return behavior{[&ctx](const tpb::Hold&) { auto r = ctx.take_reply(); }};
  }));
  auto reply = n->send("forgetful", tpb::Hold{}, 5s);
  CHECK(reply.code() == errc::aborted);
}

TEST_CASE("a handler can answer later through its responder", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("later", [](context& ctx) {
    auto parked = std::make_shared<std::vector<responder>>();
    return behavior{
      [&ctx, parked](const tpb::Hold&) { parked->push_back(ctx.take_reply()); },
      [parked](const tpb::Ping& p) {
        for (auto& r : *parked) {
          tpb::Pong out;
          out.set_seq(p.seq());
          r.deliver(out);
        }
        parked->clear();
      },
    };
  }));
  auto pending = std::async(std::launch::async, [&] {
    return n->send<tpb::Pong>("later", tpb::Hold{}, 10s);
  });
  // Keep nudging until the parked request has been answered.
  while (pending.wait_for(10ms) != std::future_status::ready)
    REQUIRE(n->post("later", ping(99)));
  auto reply = pending.get();
  REQUIRE(reply);
  CHECK((*reply)->seq() == 99);
}

TEST_CASE("a handler that returns an error fails the send with it",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("picky", [](context&) {
    return behavior{[](const tpb::Add& x) -> expected<tpb::Sum> {
      if (x.b() == 0)
        return error{errc::invalid_argument, "b must not be zero"};
      tpb::Sum out;
      out.set_value(x.a() / x.b());
      return out;
    }};
  }));
  auto bad = n->send("picky", add(1, 0), 5s);
  CHECK(bad.code() == errc::invalid_argument);
  CHECK(bad.error().message() == "b must not be zero");
  auto good = n->send<tpb::Sum>("picky", add(9, 3), 5s);
  REQUIRE(good);
  CHECK((*good)->value() == 3);
}

TEST_CASE("a handler returning void answers a send with Empty", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("void", [](context&) {
    return behavior{[](const tpb::Ping&) {}};
  }));
  auto reply = n->send<google::protobuf::Empty>("void", ping(1), 5s);
  REQUIRE(reply);
}

TEST_CASE("a reply of an unexpected type fails a typed send with internal",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  auto reply = n->send<tpb::Pong>("adder", add(1, 1), 5s);
  REQUIRE_FALSE(reply);
  CHECK(reply.code() == errc::internal);
  CHECK(reply.error().message().find("courier_test.v1.Sum")
        != std::string::npos);
}

TEST_CASE("a handler that throws yields internal and the node keeps serving",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("fragile", [](context&) {
    return behavior{[](const tpb::Crash& c) -> tpb::Pong {
      throw std::runtime_error(c.reason());
    }};
  }));
  REQUIRE(n->spawn("adder", adder));
  probe<down_notice> downs;
  REQUIRE(n->monitor("fragile", [&](const down_notice& d) { downs.push(d); }));
  tpb::Crash crash;
  crash.set_reason("disk on fire");
  auto reply = n->send("fragile", crash, 5s);
  REQUIRE_FALSE(reply);
  CHECK(reply.code() == errc::internal);
  CHECK(reply.error().message().find("disk on fire") != std::string::npos);
  REQUIRE(downs.wait_for_count(1));
  CHECK(downs.items().front().reason == down_reason::failed);
  auto sum = n->send<tpb::Sum>("adder", add(1, 1), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 2);
}

TEST_CASE("a behavior factory that throws fails its actor", "[runtime]") {
  quiet_node n;
  probe<down_notice> downs;
  auto ref = n->spawn("broken", [](context&) -> behavior {
    throw std::runtime_error("no config");
  });
  REQUIRE(ref);
  // The factory runs on the actor's first turn; by then it may be gone.
  auto watched = n->monitor(*ref, [&](const down_notice& d) { downs.push(d); });
  if (watched) {
    REQUIRE(downs.wait_for_count(1));
    CHECK(downs.items().front().reason == down_reason::failed);
    CHECK(downs.items().front().detail.find("no config") != std::string::npos);
  }
  REQUIRE(eventually([&] { return !ref->bound(); }));
}

TEST_CASE("a request from inside an actor continues with the typed reply",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  // "doubler" asks the adder for x + x and answers its own caller later.
  REQUIRE(n->spawn("doubler", [](context& ctx) {
    return behavior{[&ctx](const tpb::Ping& p) {
      auto reply = std::make_shared<responder>(ctx.take_reply());
      ctx.request("adder", add(p.seq(), p.seq()), 5s)
        .then(
          [reply](const tpb::Sum& sum) {
            tpb::Pong out;
            out.set_seq(sum.value());
            reply->deliver(out);
          },
          [reply](const error& err) { reply->deliver(err); });
    }};
  }));
  auto reply = n->send<tpb::Pong>("doubler", ping(21), 5s);
  REQUIRE(reply);
  CHECK((*reply)->seq() == 42);
}

TEST_CASE("a request from inside an actor reports errors to its continuation",
          "[runtime]") {
  quiet_node n;
  probe<errc> outcomes;
  REQUIRE(n->spawn("asker", [&](context& ctx) {
    return behavior{[&](const tpb::Ping&) {
      ctx.request("nobody", ping(1), 5s)
        .then([&](const message&) { outcomes.push(errc::ok); },
              [&](const error& e) { outcomes.push(e.code()); });
      ctx.request("self-less", ping(1), deadline::clock::now() - 1ms)
        .then([&](const message&) { outcomes.push(errc::ok); },
              [&](const error& e) { outcomes.push(e.code()); });
    }};
  }));
  REQUIRE(n->post("asker", ping(0)));
  REQUIRE(outcomes.wait_for_count(2));
  auto codes = outcomes.items();
  CHECK(codes[0] == errc::not_found);
  CHECK(codes[1] == errc::not_found);
}

TEST_CASE("a request from inside an actor times out with deadline_exceeded",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("sloth", sloth));
  probe<errc> outcomes;
  REQUIRE(n->spawn("asker", [&](context& ctx) {
    return behavior{[&](const tpb::Ping&) {
      ctx.request("sloth", tpb::Hold{}, 50ms)
        .then([&](std::shared_ptr<const google::protobuf::Empty>) {
          outcomes.push(errc::ok);
        },
              [&](const error& e) { outcomes.push(e.code()); });
    }};
  }));
  REQUIRE(n->post("asker", ping(0)));
  REQUIRE(outcomes.wait_for_count(1));
  CHECK(outcomes.items().front() == errc::deadline_exceeded);
}

TEST_CASE("the receiver sees the sending actor's name", "[runtime]") {
  quiet_node n;
  probe<std::string> senders;
  REQUIRE(n->spawn("echo", [&](context& ctx) {
    return behavior{[&](const tpb::Ping&) { senders.push(ctx.sender()); }};
  }));
  REQUIRE(n->spawn("talker", [](context& ctx) {
    return behavior{[&ctx](const tpb::Pong&) {
      return ctx.post("echo", ping(1));
    }};
  }));
  REQUIRE(n->post("talker", tpb::Pong{}));
  REQUIRE(n->post("echo", ping(2)));
  REQUIRE(senders.wait_for_count(2));
  auto items = senders.items();
  std::sort(items.begin(), items.end());
  CHECK(items == std::vector<std::string>{"", "talker"});
}

TEST_CASE("ping-pong between two actors by name keeps going", "[runtime]") {
  quiet_node n;
  probe<std::int64_t> done;
  constexpr std::int64_t rounds = 500;
  auto player = [&](std::string other) {
    return [&, other](context& ctx) {
      return behavior{[&, other](const tpb::Ping& p) {
        if (p.seq() == rounds) {
          done.push(p.seq());
          return;
        }
        if (!ctx.post(other, ping(p.seq() + 1)))
          done.push(-1);
      }};
    };
  };
  REQUIRE(n->spawn("ping", player("pong")));
  REQUIRE(n->spawn("pong", player("ping")));
  REQUIRE(n->post("ping", ping(0)));
  REQUIRE(done.wait_for_count(1));
  CHECK(done.items().front() == rounds);
}

TEST_CASE("a null message is refused with invalid_argument", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  CHECK(n->post("adder", message{}).code() == errc::invalid_argument);
  CHECK(n->send("adder", message{}, 1s).code() == errc::invalid_argument);
}

TEST_CASE("an actor's cached route follows a name to its next holder",
          "[runtime]") {
  quiet_node n;
  probe<std::string> answers;
  // "relay" forwards every Ping to "target" by name, reusing its cache.
  REQUIRE(n->spawn("relay", [&](context& ctx) {
    return behavior{[&](const tpb::Ping& p) {
      ctx.request("target", p, 5s)
        .then([&](const tpb::Pong& pong) { answers.push(pong.from()); },
              [&](const error& e) { answers.push(e.to_string()); });
    }};
  }));
  auto holder = [](std::string tag) {
    return [tag](context&) {
      return behavior{[tag](const tpb::Ping&) {
        tpb::Pong out;
        out.set_from(tag);
        return out;
      }};
    };
  };
  REQUIRE(n->spawn("target", holder("first")));
  REQUIRE(n->post("relay", ping(1)));
  REQUIRE(answers.wait_for_count(1));
  probe<down_notice> downs;
  REQUIRE(n->monitor("target", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->stop("target"));
  REQUIRE(downs.wait_for_count(1));
  REQUIRE(n->post("relay", ping(2)));
  REQUIRE(answers.wait_for_count(2));
  REQUIRE(n->spawn("target", holder("second")));
  REQUIRE(n->post("relay", ping(3)));
  REQUIRE(answers.wait_for_count(3));
  auto items = answers.items();
  CHECK(items[0] == "first");
  CHECK(items[1].rfind("not_found", 0) == 0);
  CHECK(items[2] == "second");
}

namespace {

/// A node with "slow", which takes 10 posts at most, holds its first Ping
/// until release(), and records each Ping it handles in `seen`; its
/// mailbox is full (ten posts: the one held and nine waiting).
struct full_mailbox {
  full_mailbox() {
    spawn_options options;
    options.max_mailbox = 10;
    REQUIRE(n->spawn("slow",
                     [this](context&) {
                       return behavior{[this](const tpb::Ping& p) {
                         if (p.seq() == 0)
                           released.wait(); // holds its first post
                         seen.push(p.seq());
                       }};
                     },
                     options));
    for (int i = 0; i < 10; ++i)
      REQUIRE(n->post("slow", ping(i)));
  }

  // A test that fails before release() must not leave the node waiting on
  // its held actor.
  ~full_mailbox() {
    release();
  }

  void release() {
    if (!let_go.exchange(true))
      opened.set_value();
  }

  // Before the node: its actor uses them until the node is gone.
  std::promise<void> opened;
  std::shared_future<void> released = opened.get_future().share();
  std::atomic<bool> let_go{false};
  probe<std::int64_t> seen;
  quiet_node n;
};

} // namespace

TEST_CASE("a post to an actor whose mailbox is full is refused, and goes "
          "through once the actor catches up",
          "[runtime]") {
  full_mailbox held;
  auto& n = held.n;
  auto& seen = held.seen;
  auto refused = n->post("slow", ping(10));
  REQUIRE_FALSE(refused);
  CHECK(refused.code() == errc::resource_exhausted);
  CHECK(refused.error().message().find("'slow' has 10 posts waiting")
        != std::string::npos);
  // From inside an actor, the same.
  probe<errc> from_actor;
  REQUIRE(n->spawn("poster", [&](context& ctx) {
    return behavior{[&](const tpb::Add&) {
      auto posted = ctx.post("slow", ping(11));
      from_actor.push(posted ? errc::ok : posted.code());
    }};
  }));
  REQUIRE(n->post("poster", add(0, 0)));
  REQUIRE(from_actor.wait_for_count(1));
  CHECK(from_actor.items().front() == errc::resource_exhausted);
  // Nothing accepted is lost; once the actor caught up, posts go again.
  held.release();
  REQUIRE(seen.wait_for_count(10));
  REQUIRE(eventually([&] { return bool(n->post("slow", ping(12))); }));
  REQUIRE(seen.wait_for_count(11));
  auto items = seen.items();
  for (int i = 0; i < 10; ++i)
    CHECK(items[i] == i);
  CHECK(items[10] == 12);
  CHECK(n->dead_letters() == 0);
}

TEST_CASE("a post that may wait for room blocks while the mailbox is full, "
          "goes through once it has drained, and gives up after its wait",
          "[runtime]") {
  using namespace std::chrono_literals;
  full_mailbox held;
  auto& n = held.n;
  auto& seen = held.seen;
  post_options patient;
  patient.wait_for_room = 150ms;
  // No room within the wait: refused once it has passed, not before.
  auto start = std::chrono::steady_clock::now();
  auto refused = n->post("slow", ping(100), patient);
  auto waited = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(refused);
  CHECK(refused.code() == errc::resource_exhausted);
  CHECK(waited >= 150ms);
  CHECK(waited < 5s);
  // An actor's post never waits: it holds a scheduler thread.
  probe<errc> from_actor;
  REQUIRE(n->spawn("poster", [&](context& ctx) {
    return behavior{[&](const tpb::Add&) {
      post_options forever;
      forever.wait_for_room = 1h;
      auto posted = ctx.post("slow", ping(101), forever);
      from_actor.push(posted ? errc::ok : posted.code());
    }};
  }));
  REQUIRE(n->post("poster", add(0, 0)));
  REQUIRE(from_actor.wait_for_count(1));
  CHECK(from_actor.items().front() == errc::resource_exhausted);
  // A plain thread's post waits while the actor is held...
  patient.wait_for_room = 30s;
  auto blocked = std::async(std::launch::async, [&] {
    return n->post("slow", ping(10), patient);
  });
  CHECK(blocked.wait_for(200ms) == std::future_status::timeout);
  // ...and goes through once it has caught up, after the ten before it.
  held.release();
  REQUIRE(blocked.wait_for(10s) == std::future_status::ready);
  CHECK(blocked.get());
  REQUIRE(seen.wait_for_count(11));
  auto items = seen.items();
  for (int i = 0; i <= 10; ++i)
    CHECK(items[i] == i);
  CHECK(n->dead_letters() == 0);
}

TEST_CASE("the node's mailbox limit applies to actors without their own, "
          "and 0 lifts it",
          "[runtime]") {
  for (std::size_t limit : {std::size_t{3}, std::size_t{0}}) {
    node_config config;
    config.join_directory = false;
    config.max_mailbox = limit;
    auto n = node::start(config);
    REQUIRE(n);
    std::promise<void> release;
    auto released = release.get_future().share();
    REQUIRE(n->spawn("slow", [released](context&) {
      return behavior{[released](const tpb::Ping&) { released.wait(); }};
    }));
    int accepted = 0;
    while (accepted < 50 && n->post("slow", ping(accepted)))
      ++accepted;
    CHECK(accepted == (limit == 0 ? 50 : 3));
    release.set_value();
  }
}

// The verbs give the same outcome from a plain thread and from an actor
// (runtime/src/verbs.hpp): these pin what had drifted between the two.

#include <future>
#include <string>

#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// Posts from a plain thread, or from inside an actor ("poster") that posts
/// on command and hands back the outcome.
class poster {
public:
  poster(node& n, bool from_actor) : node_(n), from_actor_(from_actor) {
    if (!from_actor_)
      return;
    REQUIRE(node_.spawn("poster", [this](context& ctx) {
      return behavior{[this, &ctx](const tpb::Ping&) {
        auto job = std::move(job_);
        auto posted = ctx.post(job.to, job.msg, job.options);
        outcomes_.push(posted ? errc::ok : posted.code());
      }};
    }));
  }

  errc post(std::string to, tpb::Ping msg, post_options options = {}) {
    if (!from_actor_) {
      auto posted = node_.post(to, msg, options);
      return posted ? errc::ok : posted.code();
    }
    job_ = {std::move(to), make_message(std::move(msg)), std::move(options)};
    auto before = outcomes_.size();
    REQUIRE(node_.post("poster", ping(0)));
    REQUIRE(outcomes_.wait_for_count(before + 1));
    return outcomes_.items()[before];
  }

private:
  struct job {
    std::string to;
    message msg;
    post_options options;
  };

  node& node_;
  bool from_actor_;
  job job_; // handed over under the probe's ordering: one post at a time
  probe<errc> outcomes_;
};

/// A sink that holds its first Ping until released, then records the
/// sequence numbers of what it handles.
struct held_sink {
  explicit held_sink(node& n, spawn_options options = {}) {
    auto gate = released.get_future().share();
    REQUIRE(n.spawn(
      "sink",
      [this, gate](context&) {
        return behavior{[this, gate](const tpb::Ping& p) {
          if (seen.size() == 0 && !holding.exchange(true)) {
            held.push(p.seq());
            gate.wait();
          }
          seen.push(p.seq());
        }};
      },
      options));
  }

  ~held_sink() {
    if (!done)
      released.set_value();
  }

  void release() {
    done = true;
    released.set_value();
  }

  std::promise<void> released;
  bool done = false;
  std::atomic<bool> holding{false};
  probe<std::int64_t> held;
  probe<std::int64_t> seen;
};

post_options with_priority(std::uint8_t priority) {
  post_options options;
  options.priority = priority;
  return options;
}

} // namespace

TEST_CASE("priorities 6 and 7 overtake queued posts, from a thread and "
          "from an actor",
          "[runtime]") {
  const bool from_actor = GENERATE(false, true);
  INFO((from_actor ? "from an actor" : "from a plain thread"));
  quiet_node n;
  held_sink sink{*n};
  poster from{*n, from_actor};
  REQUIRE(from.post("sink", ping(0)) == errc::ok);
  REQUIRE(sink.held.wait_for_count(1)); // the sink holds post 0
  REQUIRE(from.post("sink", ping(1), with_priority(3)) == errc::ok);
  REQUIRE(from.post("sink", ping(2), with_priority(5)) == errc::ok);
  REQUIRE(from.post("sink", ping(100), with_priority(6)) == errc::ok);
  REQUIRE(from.post("sink", ping(101), with_priority(7)) == errc::ok);
  REQUIRE(from.post("sink", ping(3), with_priority(0)) == errc::ok);
  sink.release();
  REQUIRE(sink.seen.wait_for_count(6));
  CHECK(sink.seen.items() == std::vector<std::int64_t>{0, 100, 101, 1, 2, 3});
}

TEST_CASE("an invalid priority or an unknown tier is invalid_argument, from "
          "a thread and from an actor",
          "[runtime]") {
  const bool from_actor = GENERATE(false, true);
  INFO((from_actor ? "from an actor" : "from a plain thread"));
  quiet_node n;
  held_sink sink{*n};
  sink.release();
  poster from{*n, from_actor};
  CHECK(from.post("sink", ping(1), with_priority(8)) == errc::invalid_argument);
  post_options pigeon;
  pigeon.tier = "carrier-pigeon";
  CHECK(from.post("sink", ping(2), pigeon) == errc::invalid_argument);
  // A bad name is refused the same way before any option is looked at.
  CHECK(from.post("bad!name", ping(3), with_priority(8))
        == errc::invalid_argument);
  CHECK(from.post("sink", ping(4), with_priority(7)) == errc::ok);
  REQUIRE(sink.seen.wait_for_count(1));
  CHECK(sink.seen.items() == std::vector<std::int64_t>{4});
}

TEST_CASE("a full mailbox is resource_exhausted, from a thread and from an "
          "actor",
          "[runtime]") {
  const bool from_actor = GENERATE(false, true);
  INFO((from_actor ? "from an actor" : "from a plain thread"));
  quiet_node n;
  spawn_options options;
  options.max_mailbox = 2;
  held_sink sink{*n, options};
  poster from{*n, from_actor};
  REQUIRE(from.post("sink", ping(0)) == errc::ok);
  REQUIRE(sink.held.wait_for_count(1));
  REQUIRE(from.post("sink", ping(1)) == errc::ok);
  CHECK(from.post("sink", ping(2)) == errc::resource_exhausted);
  // Urgent posts count against the same mailbox.
  CHECK(from.post("sink", ping(3), with_priority(7))
        == errc::resource_exhausted);
  sink.release();
  REQUIRE(sink.seen.wait_for_count(2));
  REQUIRE(eventually([&] { return from.post("sink", ping(4)) == errc::ok; }));
  REQUIRE(sink.seen.wait_for_count(3));
  CHECK(sink.seen.items() == std::vector<std::int64_t>{0, 1, 4});
}

TEST_CASE("a broadcast classifies its targets the same way from a thread "
          "and from an actor",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("t.adder", adder));
  REQUIRE(n->spawn("t.sloth", sloth));
  REQUIRE(n->spawn("t.mute", [](context&) { // no Ping handler
    return behavior{[](const tpb::Add&) {}};
  }));
  auto from_thread = n->broadcast("t.*", ping(1), 300ms);
  probe<broadcast_result> from_actor;
  REQUIRE(n->spawn("caller", [&](context& ctx) {
    return behavior{[&](const tpb::Add&) {
      ctx.broadcast("t.*", ping(1), 300ms).then([&](broadcast_result result) {
        from_actor.push(result);
      });
    }};
  }));
  REQUIRE(n->post("caller", add(0, 0)));
  REQUIRE(from_actor.wait_for_count(1));
  auto in_actor = from_actor.items().front();
  for (auto* result : {&from_thread, &in_actor}) {
    REQUIRE(result->replied.size() == 1);
    CHECK(result->replied[0].name == "t.adder");
    CHECK(result->timed_out == std::vector<std::string>{"t.sloth"});
    REQUIRE(result->failed.size() == 1);
    CHECK(result->failed[0].name == "t.mute");
    CHECK(result->failed[0].reason.code() == errc::unimplemented);
    CHECK(result->dead.empty());
  }
  // A deadline already passed: timed out from both, nobody asked.
  auto late = deadline::clock::now() - 1ms;
  auto thread_late = n->broadcast("t.adder", ping(2), late);
  CHECK(thread_late.timed_out == std::vector<std::string>{"t.adder"});
}

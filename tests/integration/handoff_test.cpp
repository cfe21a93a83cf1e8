// Frames handed to actors on the thread that reads them, and answers written
// to the link by whoever answers (runtime/src/remote.cpp, "what a proxy
// shares with other threads"): the promises that must survive the proxy
// being skipped. Two nodes in this one process, linked by shared memory or
// by the named pipe, so that the test can hold an actor's thread.

#include <future>

#include "local_node.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// Two nodes of this process over shared memory.
struct over_shm {
  static constexpr bool shared_memory = true;
  static constexpr const char* tier = "shm";
};

/// Two nodes of this process over the named pipe.
struct over_pipe {
  static constexpr bool shared_memory = false;
  static constexpr const char* tier = "pipe";
};

/// Two nodes of this process, "there" and "here", linked by `Tier`.
template <class Tier>
struct two_nodes {
  temp_dir dir;
  local_node there{dir, "there", {}, Tier::shared_memory};
  local_node here{dir, "here", {}, Tier::shared_memory};
};

std::uint64_t messages_in(local_node& node) {
  auto routes = node->routes();
  return routes.empty() ? 0 : routes[0].messages_in;
}

} // namespace

TEMPLATE_TEST_CASE_METHOD(two_nodes, "a request that dies unhandled in a mailbox is answered "
                   "aborted across the link",
                   "[integration][handoff]", over_shm, over_pipe) {
  std::promise<void> release;
  auto released = release.get_future().share();
  probe<std::int64_t> entered;
  // The first Ping holds the actor's thread until the test lets go, then
  // stops the actor; what came behind it dies in the mailbox.
  REQUIRE(this->there->spawn("gate", [&](context& ctx) {
    return behavior{[&, released](const tpb::Ping& p) {
      entered.push(p.seq());
      released.wait();
      ctx.stop();
      tpb::Pong out;
      out.set_seq(p.seq());
      return out;
    }};
  }));
  auto first = std::async(std::launch::async, [&] {
    return this->here->template send<tpb::Pong>("gate", ping(1), 10s);
  });
  REQUIRE(entered.wait_for_count(1));
  auto second = std::async(std::launch::async, [&] {
    return this->here->template send<tpb::Pong>("gate", ping(2), 10s);
  });
  // Counted once it is in the gate's mailbox.
  REQUIRE(eventually([&] { return messages_in(this->there) == 2; }));
  release.set_value();
  auto one = first.get();
  REQUIRE(one);
  CHECK((*one)->seq() == 1);
  auto two = second.get();
  REQUIRE(!two);
  CHECK(two.code() == errc::aborted);
  CHECK(two.error().message() == "'gate' stopped before replying");
  auto routes = this->here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == TestType::tier);
}

TEMPLATE_TEST_CASE_METHOD(two_nodes, "an answer never overtakes what its actor sent before it "
                   "to the same requester",
                   "[integration][handoff]", over_shm, over_pipe) {
  // For each request: a post to the requester, then a request to it, then
  // the answer; the requester must see them in that order. Every third
  // post asks for the pipe: over shm, it takes a side link, and what
  // follows waits for it (the route moves back behind a barrier).
  REQUIRE(this->there->spawn("talker", [](context& ctx) {
    return behavior{[&ctx](const tpb::Ping& p) {
      const auto& asker = ctx.sender(); // "asker@here"
      tpb::Ping note;
      note.set_seq(p.seq());
      post_options options;
      if (p.seq() % 3 == 2)
        options.tier = "pipe";
      (void)ctx.post(asker, note, options);
      tpb::Add question;
      question.set_a(p.seq());
      ctx.request(asker, question, 10s)
        .then([](const tpb::Sum&) {}, [](const error&) {});
      tpb::Pong out;
      out.set_seq(p.seq());
      return out;
    }};
  }));
  constexpr int rounds = 300;
  probe<std::string> outcome;
  REQUIRE(this->here->spawn("asker", [&](context& ctx) {
    struct state {
      std::int64_t notes = 0;     // posts seen
      std::int64_t questions = 0; // requests seen
      std::int64_t out_of_order = 0;
    };
    auto st = std::make_shared<state>();
    auto next = std::make_shared<std::function<void(std::int64_t)>>();
    // Weakly: the behavior holds it, and a function holding itself leaks.
    *next = [&, st, weak = std::weak_ptr{next}](std::int64_t seq) {
      if (seq == rounds) {
        outcome.push(std::to_string(st->out_of_order));
        return;
      }
      auto next = weak.lock();
      ctx.request("talker", ping(seq), 10s)
        .then(
          [st, next, seq](const tpb::Pong&) {
            // The post and the request came before the answer.
            if (st->notes != seq + 1 || st->questions != seq + 1)
              ++st->out_of_order;
            (*next)(seq + 1);
          },
          [&](const error& e) { outcome.push(e.to_string()); });
    };
    return behavior{
      [st, next](const tpb::Quit&) { (*next)(0); },
      [st](const tpb::Ping&) { ++st->notes; },
      [st](const tpb::Add& question) {
        // The post of the same round came before the request.
        if (st->notes != question.a() + 1)
          ++st->out_of_order;
        ++st->questions;
        return tpb::Sum{};
      },
    };
  }));
  REQUIRE(this->here->post("asker", tpb::Quit{}));
  REQUIRE(outcome.wait_for_count(1, 60s));
  CHECK(outcome.items().front() == "0");
}

TEMPLATE_TEST_CASE_METHOD(two_nodes, "a reply over the frame limit comes "
                                     "back as resource_exhausted",
                          "[integration][handoff]", over_shm, over_pipe) {
  // 5 MiB answers a small request; the frame limit is 4 MiB.
  REQUIRE(this->there->spawn("bloater", [](context&) {
    return behavior{[](const tpb::Ping&) {
      tpb::Blob out;
      out.set_data(std::string(5u << 20, 'x'));
      return out;
    }};
  }));
  auto big = this->here->template send<tpb::Blob>("bloater", ping(1), 10s);
  REQUIRE(!big);
  CHECK(big.code() == errc::resource_exhausted);
  CHECK(big.error().message().find("over the frame limit")
        != std::string::npos);
  // The link stays up for everyone else.
  REQUIRE(this->there->spawn("echo", [](context&) {
    return behavior{[](const tpb::Ping& p) {
      tpb::Pong out;
      out.set_seq(p.seq());
      return out;
    }};
  }));
  auto fine = this->here->template send<tpb::Pong>("echo", ping(2), 10s);
  REQUIRE(fine);
  CHECK((*fine)->seq() == 2);
}

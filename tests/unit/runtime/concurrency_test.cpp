#include <atomic>
#include <random>
#include <thread>

#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

TEST_CASE("many threads posting to one name lose nothing and keep each "
          "sender's order",
          "[runtime]") {
  quiet_node n;
  constexpr int senders = 4;
  constexpr int per_sender = 20000;
  struct tally {
    std::array<std::int64_t, senders> next{};
    std::int64_t out_of_order = 0;
    std::int64_t total = 0;
  };
  auto state = std::make_shared<tally>();
  probe<std::int64_t> finished;
  REQUIRE(n->spawn("sink", [&, state](context&) {
    return behavior{[&, state](const tpb::Ping& p) {
      auto& next = state->next[p.sender()];
      if (p.seq() != next)
        ++state->out_of_order;
      next = p.seq() + 1;
      if (++state->total == senders * per_sender)
        finished.push(state->out_of_order);
    }};
  }));
  std::vector<std::thread> threads;
  for (int s = 0; s < senders; ++s)
    threads.emplace_back([&, s] {
      for (int i = 0; i < per_sender; ++i) {
        auto msg = ping(i);
        msg.set_sender(s);
        if (!n->post("sink", std::move(msg)))
          finished.push(-1);
      }
    });
  for (auto& t : threads)
    t.join();
  REQUIRE(finished.wait_for_count(1, std::chrono::seconds{60}));
  CHECK(finished.items().front() == 0);
  CHECK(n->dead_letters() == 0);
}

TEST_CASE("many threads sending concurrently each get their own reply",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  constexpr int callers = 4;
  constexpr int calls = 500;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < callers; ++c)
    threads.emplace_back([&, c] {
      for (int i = 0; i < calls; ++i) {
        auto sum = n->send<tpb::Sum>("adder", add(c * 1000, i), 10s);
        if (!sum || (*sum)->value() != c * 1000 + i)
          ++wrong;
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(wrong == 0);
}

TEST_CASE("spawning and stopping names from many threads stays consistent",
          "[runtime]") {
  quiet_node n;
  constexpr int workers = 4;
  constexpr int rounds = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w)
    threads.emplace_back([&, w] {
      for (int r = 0; r < rounds; ++r) {
        auto name = "w" + std::to_string(w) + "." + std::to_string(r);
        if (!n->spawn(name, adder)) {
          ++failures;
          continue;
        }
        auto sum = n->send<tpb::Sum>(name, add(r, w), 10s);
        if (!sum || (*sum)->value() != r + w)
          ++failures;
        if (!n->stop(name))
          ++failures;
      }
    });
  for (auto& t : threads)
    t.join();
  CHECK(failures == 0);
  REQUIRE(eventually([&] { return n->names().empty(); }));
}

namespace {

/// A node on the latency scheduler, whose idle workers poll for 50 us.
void polling(node_config& config) {
  config.scheduler = scheduler_policy::latency;
  config.worker_threads = 2;
  config.idle_spin = std::chrono::microseconds{50};
}

} // namespace

TEST_CASE("the latency scheduler runs busy actors side by side, though only "
          "one idle worker polls",
          "[runtime]") {
  quiet_node n{"", polling};
  // Each actor, once running, holds its worker until it sees the other one
  // running too: with one worker at work and the other left asleep, each
  // round would end at the deadline instead.
  std::atomic<int> running{0};
  probe<bool> met;
  auto meet = [&](context&) {
    return behavior{[&](const tpb::Ping&) {
      running.fetch_add(1);
      auto until = std::chrono::steady_clock::now() + 5s;
      while (running.load() % 2 != 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
      met.push(running.load() % 2 == 0);
    }};
  };
  REQUIRE(n->spawn("a", meet));
  REQUIRE(n->spawn("b", meet));
  constexpr int rounds = 20;
  for (int r = 0; r < rounds; ++r) {
    REQUIRE(n->post("a", ping(r)));
    REQUIRE(n->post("b", ping(r)));
    REQUIRE(met.wait_for_count(2 * (r + 1), 10s));
  }
  for (bool both : met.items())
    CHECK(both);
}

TEST_CASE("the latency scheduler loses no job while its workers go to sleep "
          "and wake",
          "[runtime]") {
  quiet_node n{"", polling};
  REQUIRE(n->spawn("adder", adder));
  // Gaps on either side of the poller's 50 us, so that calls find it
  // polling, going to sleep, or asleep.
  std::mt19937 random{7};
  std::uniform_int_distribution<int> gap_us{0, 150};
  int wrong = 0;
  for (int i = 0; i < 400; ++i) {
    auto sum = n->send<tpb::Sum>("adder", add(i, 1), 5s);
    if (!sum || (*sum)->value() != i + 1)
      ++wrong;
    std::this_thread::sleep_for(std::chrono::microseconds{gap_us(random)});
  }
  CHECK(wrong == 0);
}

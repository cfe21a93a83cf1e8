// Durable delivery between real processes killed with SIGKILL at random
// times: two producer processes post durable orders to two consumers
// (billing-a, billing-b) of a billing process. The checker, in Jepsen's
// words: attempted (every order a producer posted), acknowledged (its post
// returned: on the sender's disk), lost (acknowledged, never applied),
// recovered (attempted, not acknowledged, applied all the same), unexpected
// (applied, never attempted), duplicated-processed (applied twice),
// reordered (applied out of order per producer and consumer). The consumer
// applies an order once by its key; an order handed again after a crash is
// counted apart ("again"), at most a dispatch batch per consumer per crash.
//
// COURIER_DURABLE_LONG=1 runs ten times the cycles (make test-durable-long).

#include <cstdlib>
#include <iostream>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include <sys/wait.h>

#include <catch2/catch.hpp>

#include "process.hpp"
#include "test_support.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;

int cycles(int pr_sized) {
  const char* longer = std::getenv("COURIER_DURABLE_LONG");
  return longer != nullptr && std::string{longer} == "1" ? 10 * pr_sized
                                                          : pr_sized;
}

struct history {
  // (producer, seq) -> consumer, from the producers' files.
  std::map<std::pair<std::string, long>, std::string> acknowledged;
  // Applied, in the order of the billing file.
  std::vector<std::tuple<std::string, std::string, long>> applied;
  std::size_t again = 0;
};

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in{path};
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty())
      out.push_back(line);
  return out;
}

history read_history(const temp_dir& dir, const std::vector<std::string>& ids) {
  history h;
  for (const auto& id : ids)
    for (const auto& line : lines_of(dir.path() + "/acked-" + id)) {
      std::istringstream f{line};
      std::string consumer, producer;
      long seq = -1;
      f >> consumer >> producer >> seq;
      h.acknowledged[{producer, seq}] = consumer;
    }
  for (const auto& line : lines_of(dir.path() + "/applied")) {
    std::istringstream f{line};
    std::string consumer, producer;
    long seq = -1;
    f >> consumer >> producer >> seq;
    h.applied.emplace_back(consumer, producer, seq);
  }
  h.again = lines_of(dir.path() + "/applied.again").size();
  return h;
}

struct verdict {
  std::size_t lost = 0, unexpected = 0, duplicated = 0, reordered = 0,
              recovered = 0;
};

/// `attempted_up_to`: per producer, the highest seq it posted (the
/// acknowledged ones and, after a kill, perhaps one more).
verdict check(const history& h, const std::map<std::string, long>& attempted) {
  verdict v;
  std::set<std::pair<std::string, long>> seen;
  std::map<std::pair<std::string, std::string>, long> last;
  for (const auto& [consumer, producer, seq] : h.applied) {
    if (!seen.insert({producer, seq}).second)
      ++v.duplicated;
    auto a = attempted.find(producer);
    if (a == attempted.end() || seq > a->second || seq < 0)
      ++v.unexpected;
    else if (!h.acknowledged.count({producer, seq}))
      ++v.recovered;
    auto& prev = last.try_emplace({consumer, producer}, -1).first->second;
    if (seq <= prev)
      ++v.reordered;
    prev = std::max(prev, seq);
  }
  for (const auto& [key, consumer] : h.acknowledged)
    if (!seen.count(key))
      ++v.lost;
  return v;
}

std::unique_ptr<child_process> start_billing(const temp_dir& dir,
                                             const std::string& crash_at = {}) {
  std::vector<std::string> prefix;
  if (!crash_at.empty())
    prefix = {"env", "COURIER_CRASH_AT=" + crash_at};
  std::vector<std::string> argv = prefix;
  for (const auto& a : std::vector<std::string>{
    ORDERS_NODE, "billing", "--dir", dir.path() + "/nodes", "--store",
    dir.path() + "/billing-store", "--name", "billing-node", "--applied",
    dir.path() + "/applied", "--consumers", "billing-a,billing-b"})
    argv.push_back(a);
  auto child = std::make_unique<child_process>(argv);
  REQUIRE(child->wait_for_line("ready", 30s));
  return child;
}

std::unique_ptr<child_process> start_producer(const temp_dir& dir,
                                              const std::string& id,
                                              long count, long from) {
  auto child = std::make_unique<child_process>(std::vector<std::string>{
    ORDERS_NODE, "producer", "--dir", dir.path() + "/nodes", "--store",
    dir.path() + "/store-" + id, "--name", "producer-" + id, "--id", id,
    "--to", "billing-a,billing-b", "--count", std::to_string(count),
    "--from", std::to_string(from), "--acked", dir.path() + "/acked-" + id});
  REQUIRE(child->wait_for_line("ready", 30s));
  return child;
}

/// The highest seq producer `id` has acknowledged, or -1.
long last_acked(const temp_dir& dir, const std::string& id) {
  long best = -1;
  for (const auto& line : lines_of(dir.path() + "/acked-" + id)) {
    std::istringstream f{line};
    std::string consumer, producer;
    long seq = -1;
    f >> consumer >> producer >> seq;
    best = std::max(best, seq);
  }
  return best;
}

void report(const verdict& v, const history& h, int kills) {
  std::ostringstream line;
  line << "acknowledged " << h.acknowledged.size() << ", applied "
                                << h.applied.size() << ", lost " << v.lost
                                << ", recovered " << v.recovered
                                << ", unexpected " << v.unexpected
                                << ", duplicated-processed " << v.duplicated
                                << ", reordered " << v.reordered
                                << ", handed again " << h.again << " after "
                                << kills << " kills";
  std::cout << "checker: " << line.str() << std::endl;
  UNSCOPED_INFO(line.str());
}

/// Waits for every producer to drain and exit, then until everything
/// acknowledged is applied; returns the history and its verdict (reported).
std::pair<history, verdict>
settle(const temp_dir& dir, const std::vector<std::string>& ids,
       std::vector<child_process*> producers,
       const std::map<std::string, long>& attempted, int kills) {
  for (auto* p : producers) {
    REQUIRE(p->wait_for_line("drained", 120s));
    REQUIRE(p->wait_exit(10s));
  }
  history h;
  REQUIRE(eventually(
    [&] {
      h = read_history(dir, ids);
      return check(h, attempted).lost == 0;
    },
    60s));
  auto v = check(h, attempted);
  report(v, h, kills);
  return {h, v};
}

} // namespace

TEST_CASE("durable orders survive the receiving node stopping at each named "
          "crash point",
          "[durable][node][kill]") {
  // Where the receiving node dies, and what a restart must show besides
  // nothing lost, nothing applied twice, nothing out of order: what was
  // stored and is sent again is a duplicate, never handed again; only
  // orders already handled whose removal was not durable are handed again
  // (recognised by their key), and after_handler_before_removal always
  // leaves one.
  struct point {
    const char* name;
    bool handed_again;
  };
  const point points[] = {{"before_append", false},
                          {"after_append_before_fsync", false},
                          {"after_fsync_before_ack", false},
                          {"after_handler_before_removal", true}};
  std::mt19937 random{std::random_device{}()};
  for (const auto& p : points) {
    DYNAMIC_SECTION(p.name) {
      temp_dir dir;
      std::filesystem::create_directories(dir.path() + "/nodes");
      const long count = 400;
      // The n-th time: past the store's own appends at open, inside the
      // stream of orders.
      auto nth = std::uniform_int_distribution<int>{5, 60}(random);
      auto billing = start_billing(dir, std::string{p.name} + ":"
                                          + std::to_string(nth));
      auto producer = start_producer(dir, "p1", count, 0);
      auto status = billing->wait_exit(60s);
      REQUIRE(status);
      REQUIRE(WIFEXITED(*status));
      CHECK(WEXITSTATUS(*status) == 86); // it reached the point
      billing = start_billing(dir);
      auto [h, v] = settle(dir, {"p1"}, {producer.get()}, {{"p1", count - 1}},
                           1);
      CHECK(h.acknowledged.size() == count);
      CHECK(v.lost == 0);
      CHECK(v.unexpected == 0);
      CHECK(v.duplicated == 0);
      CHECK(v.reordered == 0);
      // Handed again: the orders whose handlers had returned while their
      // removals waited for the batch to be durable, at most a dispatch
      // batch per consumer (dispatch_batch, 16); at least
      // the one whose removal the point cut off.
      CHECK(h.again <= 2 * 16); // two consumers
      if (p.handed_again)
        CHECK(h.again >= 1);
    }
  }
}

TEST_CASE("durable orders survive SIGKILLs of the receiving node at random "
          "times: nothing lost, nothing applied twice, order kept",
          "[durable][node][kill]") {
  temp_dir dir;
  std::filesystem::create_directories(dir.path() + "/nodes");
  const long count = 3000;
  const std::vector<std::string> ids{"p1", "p2"};
  auto billing = start_billing(dir);
  std::vector<std::unique_ptr<child_process>> producers;
  for (const auto& id : ids)
    producers.push_back(start_producer(dir, id, count, 0));
  std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<int> pause_ms{5, 120};
  const int kills = cycles(20);
  for (int i = 0; i < kills; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{pause_ms(random)});
    billing->kill(SIGKILL);
    REQUIRE(billing->wait_exit(30s));
    billing = start_billing(dir);
  }
  // Everything acknowledged is applied once the queues are empty.
  auto [h, v] = settle(dir, ids, {producers[0].get(), producers[1].get()},
                       {{"p1", count - 1}, {"p2", count - 1}}, kills);
  CHECK(h.acknowledged.size() == 2 * count);
  CHECK(v.lost == 0);
  CHECK(v.unexpected == 0);
  CHECK(v.recovered == 0);
  CHECK(v.duplicated == 0);
  CHECK(v.reordered == 0);
  // At most a dispatch batch (16) per consumer per crash: the orders
  // handled whose removals were not yet durable when the node died.
  CHECK(h.again <= static_cast<std::size_t>(2 * 16 * kills));
}

TEST_CASE("durable orders survive SIGKILLs of the sending nodes at random "
          "times: what was acknowledged arrives once, in order",
          "[durable][node][kill]") {
  temp_dir dir;
  std::filesystem::create_directories(dir.path() + "/nodes");
  const long count = 2000;
  const std::vector<std::string> ids{"p1", "p2"};
  auto billing = start_billing(dir);
  std::map<std::string, std::unique_ptr<child_process>> producers;
  for (const auto& id : ids)
    producers[id] = start_producer(dir, id, count, 0);
  std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<int> pause_ms{5, 120};
  const int kills = cycles(20);
  for (int i = 0; i < kills; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds{pause_ms(random)});
    const auto& id = ids[static_cast<std::size_t>(i) % ids.size()];
    producers[id]->kill(SIGKILL);
    REQUIRE(producers[id]->wait_exit(30s));
    // It goes on after the last order it saw acknowledged; the one it was
    // posting may be on its disk already (then it is "recovered").
    producers[id] = start_producer(dir, id, count, last_acked(dir, id) + 1);
  }
  auto [h, v] = settle(dir, ids, {producers["p1"].get(), producers["p2"].get()},
                       {{"p1", count - 1}, {"p2", count - 1}}, kills);
  CHECK(v.lost == 0);
  CHECK(v.unexpected == 0);
  // A re-posted order is a new message with the same business key: the
  // consumer recognises it ("again"), it is never applied twice.
  CHECK(v.duplicated == 0);
  CHECK(v.reordered == 0);
  CHECK(v.recovered <= static_cast<std::size_t>(kills));
}

} // namespace courier::testing

// The choice of tier per route, its overrides, and what a route leaves
// behind when the process at its other end dies.

#include <fstream>
#include <set>

#include <sys/stat.h>

#include "local_node.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// Shared-memory rings this process has mapped (memfd mappings in
/// /proc/self/maps).
std::size_t mapped_rings() {
  std::ifstream maps{"/proc/self/maps"};
  std::size_t count = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find("memfd:courier-shm-ring") != std::string::npos)
      ++count;
  return count;
}

std::set<std::string> entries(const std::string& path) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto& entry : std::filesystem::directory_iterator{path, ec})
    out.insert(entry.path().filename());
  return out;
}

/// A local actor that counts Pings and how many came out of order.
struct tally {
  std::atomic<std::int64_t> count{0};
  std::atomic<std::int64_t> out_of_order{0};
  std::atomic<std::int64_t> next{-1}; // -1: accept any first number
};

actor_factory counting(std::shared_ptr<tally> t) {
  return [t](context&) {
    return behavior{[t](const tpb::Ping& p) {
      auto expected_seq = t->next.load();
      if (expected_seq >= 0 && p.seq() != expected_seq)
        t->out_of_order.fetch_add(1);
      t->next.store(p.seq() + 1);
      t->count.fetch_add(1);
    }};
  };
}

/// Waits until the counter actor over there has seen `count` Pings; returns
/// what it answers (count * 1000000 + out of order).
std::int64_t counter_total(local_node& here, std::int64_t count) {
  std::int64_t seen = -1;
  eventually([&] {
    auto sum = here->send<tpb::Sum>("counter", add(0, 0), 5s);
    seen = sum ? (*sum)->value() : -1;
    return seen >= count * 1000000;
  });
  return seen;
}

} // namespace

TEST_CASE("a configured tier is tried first, and the route says so",
          "[routing][integration]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", {"echo.b"});
  local_node here{dir, "here", [](node_config& config) {
                    config.preferred_tiers = {{"pe*", "pipe"}};
                  }};
  REQUIRE(here->send<tpb::Pong>("echo.b", ping(1), 5s));
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "pipe");
  CHECK(routes[0].note == "chosen by configuration");
}

TEST_CASE("a configured tier the peer lacks falls back to the automatic "
          "choice",
          "[routing][integration]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", {"--pipe-only", "echo.b"});
  local_node here{dir, "here", [](node_config& config) {
                    config.preferred_tiers = {{"*", "shm"}};
                  }};
  REQUIRE(here->send<tpb::Pong>("echo.b", ping(1), 5s));
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "pipe");
  CHECK(routes[0].note.find("shm is not configured on both sides")
        != std::string::npos);
  CHECK(here.lines->size() >= 1); // and the log said so
}

TEST_CASE("posts that switch tiers message by message keep their order",
          "[routing][integration]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", {"counter"});
  local_node here{dir, "here"};
  constexpr std::int64_t count = 3000;
  const std::string tiers[] = {"", "pipe", "shm", "pipe"};
  for (std::int64_t i = 0; i < count; ++i) {
    post_options options;
    options.tier = tiers[(i / 7) % 4]; // a change of tier every 7 messages
    REQUIRE(here->post("counter", ping(i), options));
  }
  CHECK(counter_total(here, count) == count * 1000000); // none out of order
  auto routes = here->routes();
  REQUIRE(routes.size() == 2);
  CHECK(routes[0].tier == "shm");
  CHECK(routes[1].tier == "pipe");
  CHECK(routes[1].note == "asked for by messages");
  CHECK(routes[1].messages_out >= count / 2 - 7);
}

TEST_CASE("an actor's posts keep their order across tiers too",
          "[routing][integration]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", {"counter"});
  local_node here{dir, "here"};
  constexpr std::int64_t count = 2000;
  REQUIRE(here->spawn("writer", [](context& ctx) {
    return behavior{[&ctx](const tpb::Add&) {
      for (std::int64_t i = 0; i < count; ++i) {
        post_options options;
        options.tier = i % 3 == 0 ? "pipe" : "";
        (void)ctx.post("counter", ping(i), options);
      }
    }};
  }));
  REQUIRE(here->post("writer", add(0, 0)));
  CHECK(counter_total(here, count) == count * 1000000);
}

TEST_CASE("post options a node cannot honour are refused at once",
          "[routing][integration]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", {"counter"});
  local_node here{dir, "here", [](node_config& config) {
                    config.transports.pop_back(); // pipe only
                  }};
  post_options options;
  options.tier = "shm";
  auto refused = here->post("counter", ping(0), options);
  CHECK(refused.code() == errc::invalid_argument);
  CHECK(refused.error().message().find("shm") != std::string::npos);
  options.tier.clear();
  options.priority = 8;
  CHECK(here->post("counter", ping(0), options).code()
        == errc::invalid_argument);
}

TEST_CASE("a message's tier that cannot reach the peer falls back to the "
          "route's own",
          "[routing][integration]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", {"--pipe-only", "counter"});
  local_node here{dir, "here"};
  constexpr std::int64_t count = 100;
  for (std::int64_t i = 0; i < count; ++i) {
    post_options options;
    options.tier = i % 2 == 0 ? "shm" : "";
    REQUIRE(here->post("counter", ping(i), options));
  }
  CHECK(counter_total(here, count) == count * 1000000);
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "pipe");
}

TEST_CASE("a sender killed mid-stream leaves the receiver whole and nothing "
          "behind",
          "[routing][integration]") {
  temp_dir dir;
  auto shm_before = entries("/dev/shm");
  local_node here{dir, "here"};
  auto got = std::make_shared<tally>();
  REQUIRE(here->spawn("sink", counting(got)));
  auto sender = start_test_node(dir, "sender", {"--flood", "sink"});
  REQUIRE(eventually([&] { return got->count.load() >= 2000; }));
  REQUIRE(mapped_rings() >= 2); // one ring each way
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "shm");

  auto killed_at = std::chrono::steady_clock::now();
  sender->kill(SIGKILL);
  REQUIRE(sender->wait_exit(5s));
  // The link goes, and with it the rings it mapped.
  CHECK(eventually([&] { return here->routes().empty(); }, 2s));
  CHECK(eventually([&] { return mapped_rings() == 0; }, 2s));
  CHECK(std::chrono::steady_clock::now() - killed_at < 2s);
  // Whatever arrived, arrived whole and in order.
  CHECK(got->out_of_order.load() == 0);
  auto arrived = got->count.load();
  // The receiver serves on: another sender reaches the same actor.
  auto second = start_test_node(dir, "second", {"--flood", "sink"});
  CHECK(eventually([&] { return got->count.load() > arrived + 100; }));
  second.reset();
  // The next look at the directory reclaims the dead node's entries.
  auto nodes = here->nodes();
  for (auto& n : nodes)
    CHECK(n.name != "sender");
  for (auto sub : {"/sockets", "/nodes"})
    for (auto& name : entries(dir.path() + sub))
      CHECK(name.rfind("sender", 0) != 0);
  CHECK(entries("/dev/shm") == shm_before);
}

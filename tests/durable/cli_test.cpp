// The courier CLI's durable subcommands against a live node with a store:
// queues, queue peek and purge, deadletters and their replay.

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include "courier/durable/delivery.hpp"
#include "local_node.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

/// Runs `courier --dir DIR ARGS...`: its exit status and stdout.
std::pair<int, std::string> cli(const temp_dir& dir,
                                std::vector<std::string> args) {
  args.insert(args.begin(), {COURIER_CLI, "--dir", dir.path()});
  child_process run{args};
  std::string out;
  REQUIRE(run.read_all(out));
  auto status = run.wait_exit(10s);
  REQUIRE(status);
  REQUIRE(WIFEXITED(*status));
  return {WEXITSTATUS(*status), out};
}

json cli_json(const temp_dir& dir, std::vector<std::string> args) {
  auto [status, out] = cli(dir, std::move(args));
  INFO(out);
  REQUIRE(status == 0);
  auto parsed = json::parse(out, nullptr, false);
  REQUIRE_FALSE(parsed.is_discarded());
  return parsed;
}

} // namespace

TEST_CASE("courier queues, queue peek and purge, deadletters and replay",
          "[durable][cli]") {
  temp_dir dir;
  temp_dir store;
  local_node a{dir, "alpha", [&](node_config& config) {
                 durable::delivery_options o;
                 o.store.directory = store.path();
                 o.store.max_attempts = 2;
                 o.retry_min = 5ms;
                 o.retry_max = 50ms;
                 config.durable = durable::delivery(o);
               }};
  auto tries = std::make_shared<std::atomic<int>>(0);
  REQUIRE(a->spawn("billing", [tries](context&) {
    return behavior{[tries](const courier_test::v1::Ping&) -> expected<void> {
      ++*tries;
      return error{errc::invalid_argument, "no such customer"};
    }};
  }));
  for (int i = 0; i < 3; ++i)
    REQUIRE(a->post_durable("nobody", ping(i, "order " + std::to_string(i))));
  REQUIRE(a->post_durable("billing", ping(7)));
  REQUIRE(eventually([&] { return tries->load() == 2; }));

  auto queues = cli_json(dir, {"--json", "queues"});
  REQUIRE(queues.is_array());
  bool seen = false;
  for (const auto& q : queues)
    if (q["queue"] == "out:nobody") {
      seen = true;
      CHECK(q["node"] == "alpha");
      CHECK(q["depth"] == 3);
    }
  CHECK(seen);

  auto peek = cli_json(dir, {"queue", "peek", "nobody", "2"});
  REQUIRE(peek.size() == 2);
  CHECK(peek[0]["target"] == "nobody");
  CHECK(peek[0]["type"] == "courier_test.v1.Ping");
  CHECK(peek[0]["payload"]["text"] == "order 0");
  CHECK(peek[1]["payload"]["text"] == "order 1");

  json dead;
  REQUIRE(eventually([&] {
    dead = cli_json(dir, {"--json", "deadletters"});
    return dead.size() == 1;
  }));
  CHECK(dead[0]["reason"] == "poison");
  CHECK(dead[0]["attempts"] == 2);
  CHECK(dead[0]["queue"] == "in:billing");
  CHECK(dead[0]["detail"].get<std::string>().find("no such customer")
        != std::string::npos);
  auto [text_status, text] = cli(dir, {"deadletters"});
  CHECK(text_status == 0);
  CHECK(text.find("poison") != std::string::npos);

  auto id = std::to_string(dead[0]["id"].get<std::uint64_t>());
  auto replayed = cli_json(dir, {"--json", "deadletters", "replay", id});
  REQUIRE(replayed.size() == 1);
  CHECK(replayed[0]["replayed"] == 1);
  REQUIRE(eventually([&] { return tries->load() == 4; }));
  auto [missing, ignored] = cli(dir, {"deadletters", "replay", "999999"});
  CHECK(missing == 1);

  auto purged = cli_json(dir, {"--json", "queue", "purge", "out:nobody"});
  REQUIRE(purged.size() == 1);
  CHECK(purged[0]["purged"] == 3);
  auto after = cli_json(dir, {"queue", "peek", "out:nobody"});
  CHECK(after.empty());
}

} // namespace courier::testing

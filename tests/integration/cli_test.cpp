// The courier CLI against live nodes.

#include <sys/wait.h>

#include "local_node.hpp"

using namespace courier::testing;

namespace {

struct cli_result {
  int status = -1;
  std::string out;
};

cli_result courier_cli(const temp_dir& dir, std::vector<std::string> args) {
  std::vector<std::string> argv{COURIER_CLI, "--dir", dir.path()};
  argv.insert(argv.end(), args.begin(), args.end());
  child_process cli{argv};
  cli_result result;
  REQUIRE(cli.read_all(result.out));
  auto status = cli.wait_exit(std::chrono::seconds{10});
  REQUIRE(status);
  REQUIRE(WIFEXITED(*status));
  result.status = WEXITSTATUS(*status);
  return result;
}

std::unique_ptr<child_process> start_node(const temp_dir& dir,
                                          const std::string& name,
                                          std::vector<std::string> actors) {
  return start_test_node(dir, name, std::move(actors));
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

TEST_CASE("the CLI lists nodes and names and finds a name", "[cli][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"echo.b", "adder"});
  auto nodes = courier_cli(dir, {"nodes"});
  CHECK(nodes.status == 0);
  CHECK(contains(nodes.out, "peer  pid " + std::to_string(peer->pid())));
  auto names = courier_cli(dir, {"--json", "names", "echo.*"});
  CHECK(names.status == 0);
  CHECK(names.out == "[{\"name\": \"echo.b\", \"node\": \"peer\"}]\n");
  auto found = courier_cli(dir, {"find", "adder"});
  CHECK(found.status == 0);
  CHECK(found.out == "adder  peer\n");
  auto missing = courier_cli(dir, {"find", "nobody"});
  CHECK(missing.status == 1);
}

TEST_CASE("the CLI sends a message given as JSON and prints the reply",
          "[cli][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"adder", "counter"});
  auto sum = courier_cli(dir, {"send", "adder", "courier_test.v1.Add",
                               R"({"a": "40", "b": 2})"});
  CHECK(sum.status == 0);
  CHECK(sum.out == "{\"value\":\"42\"}\n");
  auto typed = courier_cli(dir, {"--json", "send", "adder",
                                 "courier_test.v1.Add", R"({"a": 1})"});
  CHECK(typed.status == 0);
  CHECK(contains(typed.out, "\"type\": \"courier_test.v1.Sum\""));
  auto posted = courier_cli(dir, {"post", "counter", "courier_test.v1.Ping",
                                  R"({"seq": 0})"});
  CHECK(posted.status == 0);
  auto counted = courier_cli(dir, {"send", "counter", "courier_test.v1.Add",
                                   "{}"});
  CHECK(counted.out == "{\"value\":\"1000000\"}\n");
}

TEST_CASE("the CLI reports bad input with a message and a non-zero status",
          "[cli][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"adder", "sloth"});
  CHECK(courier_cli(dir, {"send", "nobody", "courier_test.v1.Add", "{}"}).status
        == 1);
  CHECK(courier_cli(dir, {"send", "adder", "no.such.Type", "{}"}).status == 1);
  CHECK(courier_cli(dir, {"send", "adder", "courier_test.v1.Add",
                          "{not json"}).status
        == 1);
  CHECK(courier_cli(dir, {"send", "adder", "courier_test.v1.Ping", "{}"})
          .status
        == 1); // unimplemented
  CHECK(courier_cli(dir, {"send", "sloth", "courier_test.v1.Hold", "{}",
                          "--timeout", "100"})
          .status
        == 1); // deadline_exceeded
  CHECK(courier_cli(dir, {"frobnicate"}).status == 2);
  CHECK(courier_cli(dir, {"send", "adder"}).status == 2);
  CHECK(courier_cli(dir, {}).status == 2);
}

TEST_CASE("the CLI shows each node's routes and their tiers",
          "[cli][integration]") {
  temp_dir dir;
  auto b = start_node(dir, "node-b", {"adder"});
  local_node here{dir, "here"};
  REQUIRE(here->send("adder", add(1, 2), 5s));
  auto plain = courier_cli(dir, {"routes"});
  CHECK(plain.status == 0);
  CHECK(contains(plain.out,
                 "here -> node-b  shm  (same user, same machine)  out 1 in 1"));
  CHECK(contains(plain.out, "node-b -> here  shm  (accepted from this user)"));
  auto json = courier_cli(dir, {"--json", "routes"});
  CHECK(json.status == 0);
  CHECK(contains(json.out, R"({"node": "here", "peer": "node-b", "tier": "shm")"));
}

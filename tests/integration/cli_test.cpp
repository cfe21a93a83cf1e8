// The courier CLI against live nodes.

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "local_node.hpp"

using namespace courier::testing;

namespace {

struct cli_result {
  int status = -1;
  std::string out;
};

/// Which stream of the CLI a test reads.
enum class stream { out, err };

/// Runs the CLI with exactly `args`; `out` gets what it printed on `shown`.
cli_result run_cli(const std::vector<std::string>& args,
                   stream shown = stream::out) {
  std::vector<std::string> argv{COURIER_CLI};
  if (shown == stream::err) // the shell hands us stderr instead of stdout
    argv = {"sh", "-c", "exec \"$0\" \"$@\" 2>&1 >/dev/null", COURIER_CLI};
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

/// Runs the CLI on the directory `dir`.
cli_result courier_cli(const temp_dir& dir, std::vector<std::string> args,
                       stream shown = stream::out) {
  args.insert(args.begin(), {"--dir", dir.path()});
  return run_cli(args, shown);
}

std::unique_ptr<child_process> start_node(const temp_dir& dir,
                                          const std::string& name,
                                          std::vector<std::string> actors) {
  return start_test_node(dir, name, std::move(actors));
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// The CLI's JSON output, parsed; a parse error fails the test.
nlohmann::json parsed(const std::string& out) {
  auto json = nlohmann::json::parse(out, nullptr, false);
  REQUIRE_FALSE(json.is_discarded());
  return json;
}

} // namespace

TEST_CASE("the CLI lists nodes and names and finds a name",
          "[cli][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"echo.b", "adder"});
  auto nodes = courier_cli(dir, {"nodes"});
  CHECK(nodes.status == 0);
  CHECK(contains(nodes.out, "peer  pid " + std::to_string(peer->pid())));
  auto names = courier_cli(dir, {"--json", "names", "echo.*"});
  CHECK(names.status == 0);
  CHECK(parsed(names.out)
        == nlohmann::json::parse(R"([{"name": "echo.b", "node": "peer"}])"));
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
  CHECK(parsed(typed.out)
        == nlohmann::json::parse(
          R"({"type": "courier_test.v1.Sum", "reply": {"value": "1"}})"));
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
  auto routes = parsed(json.out);
  CHECK(std::any_of(routes.begin(), routes.end(), [](const auto& route) {
    return route["node"] == "here" && route["peer"] == "node-b"
           && route["tier"] == "shm" && route["messages_out"] == 1;
  }));
}

TEST_CASE("the CLI takes --dir and --json before or after the subcommand",
          "[cli][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"adder"});
  auto before = run_cli({"--json", "--dir", dir.path(), "find", "adder"});
  auto after = run_cli({"find", "adder", "--dir", dir.path(), "--json"});
  CHECK(before.status == 0);
  CHECK(after.status == 0);
  CHECK(parsed(after.out) == parsed(before.out));
  CHECK(parsed(after.out)[0]["node"] == "peer");
}

TEST_CASE("each CLI subcommand has --help, and bad usage exits with 2",
          "[cli][integration]") {
  for (auto sub : {"nodes", "names", "find", "routes", "post", "send"}) {
    INFO(sub);
    auto help = run_cli({sub, "--help"});
    CHECK(help.status == 0);
    CHECK(contains(help.out, std::string{"courier "} + sub));
  }
  CHECK(contains(run_cli({"send", "--help"}).out, "--timeout"));
  CHECK(run_cli({"--help"}).status == 0);
  CHECK(run_cli({"send", "adder", "a.B", "{}", "--timeout", "0"}).status == 2);
  CHECK(run_cli({"send", "adder", "a.B", "{}", "--timeout", "soon"}).status
        == 2);
  CHECK(run_cli({"find"}).status == 2);
  CHECK(run_cli({"find", "a", "b"}).status == 2);
  CHECK(run_cli({"nodes", "--frobnicate"}).status == 2);
}

TEST_CASE("the CLI answers invalid_argument for a malformed name, not "
          "not_found",
          "[cli][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"adder"});
  std::vector<std::vector<std::string>> calls{
    {"send", "bad!name", "courier_test.v1.Add", "{}"},
    {"post", "bad!name", "courier_test.v1.Add", "{}"},
    {"find", "bad!name"},
    {"find", "adder@bad!node"},
  };
  for (auto& call : calls) {
    INFO(call[0] << " " << call[1]);
    auto refused = courier_cli(dir, call, stream::err);
    CHECK(refused.status == 1);
    CHECK(contains(refused.out, "courier: invalid_argument: '" + call[1]
                                  + "' is not a valid name"));
  }
  auto absent = courier_cli(dir, {"find", "nobody"}, stream::err);
  CHECK(absent.status == 1);
  CHECK(contains(absent.out, "courier: not_found: "));
  CHECK(courier_cli(dir, {"find", "adder@peer"}).out == "adder  peer\n");
  CHECK(courier_cli(dir, {"find", "adder@elsewhere"}).status == 1);
}

TEST_CASE("the CLI refuses a pattern no name can match and says what a "
          "pattern may hold",
          "[cli][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"echo.a", "echo.b"});
  for (auto bad : {"[", "echo.[ab]", "a b", "echo!"}) {
    INFO(bad);
    auto refused = courier_cli(dir, {"names", bad}, stream::err);
    CHECK(refused.status == 1);
    CHECK(contains(refused.out, "courier: invalid_argument: '"
                                  + std::string{bad} + "' is not a pattern"));
    CHECK(contains(refused.out, "'*'"));
    CHECK(contains(refused.out, "'?'"));
  }
  auto one = courier_cli(dir, {"names", "echo.?"});
  CHECK(one.status == 0);
  CHECK(one.out == "echo.a  peer\necho.b  peer\n");
}

TEST_CASE("courier nodes hides the CLI's own node in text and JSON alike",
          "[cli][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"adder"});
  auto text = courier_cli(dir, {"nodes"});
  auto json = courier_cli(dir, {"nodes", "--json"});
  REQUIRE(text.status == 0);
  REQUIRE(json.status == 0);
  CHECK(text.out
        == "peer  pid " + std::to_string(peer->pid()) + "  uid "
             + std::to_string(::getuid()) + "  session "
             + parsed(json.out)[0]["session"].get<std::string>() + "\n");
  auto nodes = parsed(json.out);
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0]["name"] == "peer");
  CHECK(nodes[0]["pid"] == peer->pid());
}

#ifdef COURIER_ECHO_NODE
TEST_CASE("the echo_node example answers the CLI and leaves nothing behind "
          "on SIGTERM",
          "[cli][integration][examples]") {
  temp_dir dir;
  child_process echo{
    {"env", "COURIER_DIR=" + dir.path(), COURIER_ECHO_NODE, "echo-test"}};
  // Each probe is a whole CLI run; the deadline bounds them all.
  REQUIRE(eventually(
    [&] {
      return courier_cli(dir, {"find", "echo"}).out == "echo  echo-test\n";
    },
    std::chrono::seconds{30}));
  auto reply = courier_cli(
    dir, {"send", "echo", "echo.Text", R"({"text": "hello, courier"})"});
  CHECK(reply.status == 0);
  CHECK(reply.out == "{\"text\":\"hello, courier\"}\n");
  echo.kill(SIGTERM);
  auto status = echo.wait_exit(std::chrono::seconds{10});
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  std::vector<std::string> left;
  for (auto& entry : std::filesystem::recursive_directory_iterator{dir.path()})
    if (!entry.is_directory())
      left.push_back(entry.path().string());
  CHECK(left.empty());
}
#endif

namespace {

/// Writes `text` to `dir`/`name`; returns the path.
std::string config_file(const temp_dir& dir, const std::string& name,
                        const std::string& text) {
  auto path = dir.path() + "/" + name;
  std::ofstream out{path};
  out << text;
  REQUIRE(out.good());
  return path;
}

} // namespace

TEST_CASE("the CLI takes --config for its own node and reports a bad file "
          "with its line",
          "[cli][integration][config]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"adder"});
  // The file's directory is used; its name is not (the CLI keeps its own,
  // so it does not clash with the node the file is for).
  auto good = config_file(dir, "peer.toml",
                          "name = \"peer\"\n"
                          "directory = \""
                            + dir.path()
                            + "\"\n"
                              "[tiers.pipe]\n");
  auto found = run_cli({"--config", good, "find", "adder"});
  CHECK(found.status == 0);
  CHECK(found.out == "adder  peer\n");
  auto after = run_cli({"send", "adder", "courier_test.v1.Add",
                        R"({"a": "40", "b": 2})", "--config", good});
  CHECK(after.status == 0);
  CHECK(after.out == "{\"value\":\"42\"}\n");

  auto bad = config_file(dir, "bad.toml",
                         "directory = \"" + dir.path()
                           + "\"\n"
                             "scheduler = \"fast\"\n");
  auto refused = run_cli({"--config", bad, "nodes"}, stream::err);
  CHECK(refused.status == 1);
  CHECK(contains(refused.out, "courier: invalid_argument: " + bad
                                + ":2:13: scheduler: 'fast' is not one of"));
  auto missing
    = run_cli({"--config", dir.path() + "/none.toml", "nodes"}, stream::err);
  CHECK(missing.status == 1);
  CHECK(contains(missing.out, "courier: not_found: no configuration file"));
  CHECK(contains(run_cli({"--help"}).out, "--config"));
}

#ifdef COURIER_ECHO_NODE
TEST_CASE("the echo_node example starts from a configuration file",
          "[cli][integration][examples][config]") {
  temp_dir dir;
  auto file = config_file(dir, "echo.toml",
                          "name = \"echo-from-file\"\n"
                          "directory = \""
                            + dir.path()
                            + "\"\n"
                              "worker_threads = 2\n"
                              "[tiers.shm]\n"
                              "[tiers.pipe]\n");
  child_process echo{{COURIER_ECHO_NODE, "--config", file}};
  REQUIRE(echo.wait_for_line_containing("node 'echo-from-file' serves 'echo'",
                                        std::chrono::seconds{30}));
  auto reply = courier_cli(
    dir, {"send", "echo", "echo.Text", R"({"text": "from a file"})"});
  CHECK(reply.status == 0);
  CHECK(reply.out == "{\"text\":\"from a file\"}\n");
  CHECK(courier_cli(dir, {"find", "echo"}).out == "echo  echo-from-file\n");
  echo.kill(SIGTERM);
  auto status = echo.wait_exit(std::chrono::seconds{10});
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);

  auto bad = config_file(dir, "bad.toml", "[tiers.smoke_signals]\n");
  child_process refused{{"sh", "-c", "exec \"$0\" \"$@\" 2>&1",
                         COURIER_ECHO_NODE, "--config", bad}};
  std::string out;
  REQUIRE(refused.read_all(out));
  auto refused_status = refused.wait_exit(std::chrono::seconds{10});
  REQUIRE(refused_status);
  CHECK(WEXITSTATUS(*refused_status) == 1);
  CHECK(contains(out, bad + ":1:8: tiers.smoke_signals: not a known tier"));
}
#endif

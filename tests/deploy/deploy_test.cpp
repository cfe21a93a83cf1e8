// `courier up`, `down`, `ps` and `logs` on real processes: the CLI itself,
// its supervisor daemon, and real nodes (examples/echo_node and the test
// node). Each test has its own directory, run dir and logs, and takes its
// system down at the end.

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <set>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "courier/deploy/system_file.hpp"
#include "courier/deploy/supervisor.hpp"
#include "process.hpp"
#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;
namespace fs = std::filesystem;

namespace {

struct cli_result {
  int status = -1;
  std::string out; ///< stdout and stderr together
};

cli_result run_cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"sh", "-c", "exec \"$0\" \"$@\" 2>&1",
                                COURIER_CLI};
  argv.insert(argv.end(), args.begin(), args.end());
  child_process cli{argv};
  cli_result result;
  REQUIRE(cli.read_all(result.out));
  auto status = cli.wait_exit(std::chrono::seconds{20});
  REQUIRE(status);
  REQUIRE(WIFEXITED(*status));
  result.status = WEXITSTATUS(*status);
  return result;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string read_file(const fs::path& path) {
  std::ifstream in{path};
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// A process that is gone (or a zombie nobody reaps, as a daemon's is
/// when no init reaps orphans).
bool gone(int pid) {
  auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty())
    return true;
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size()
         && stat[close + 2] == 'Z';
}

/// A system in a temp dir of its own: its file, node directory, run dir
/// and logs. Brought down when the test ends, whatever happened.
struct test_system {
  temp_dir root;
  fs::path file = fs::path{root.path()} / "system.toml";
  fs::path directory = fs::path{root.path()} / "dir";
  fs::path run_dir = fs::path{root.path()} / "run";
  fs::path logs_dir = fs::path{root.path()} / "logs";

  explicit test_system(const std::string& nodes) {
    fs::create_directories(directory);
    fs::permissions(directory, fs::perms::all | fs::perms::sticky_bit);
    std::ofstream{file} << "name = \"t\"\n"
                        << "directory = \"" << directory.string() << "\"\n"
                        << "run_dir = \"" << run_dir.string() << "\"\n"
                        << "logs_dir = \"" << logs_dir.string() << "\"\n\n"
                        << nodes;
  }

  ~test_system() {
    run_cli({"down", file.string()});
  }

  cli_result cli(std::vector<std::string> args) {
    args.push_back(file.string());
    return run_cli(args);
  }

  nlohmann::json ps() {
    auto shown = cli({"--json", "ps"});
    REQUIRE(shown.status == 0);
    return nlohmann::json::parse(shown.out);
  }

  nlohmann::json node_row(const std::string& name) {
    for (auto& row : ps())
      if (row["node"] == name)
        return row;
    FAIL("no row for " << name);
    return {};
  }

  std::string log(const std::string& node = {}) {
    return read_file(logs_dir / (node.empty() ? "supervisor.log" : node + ".log"));
  }

  /// Every entry under the node directory's folders.
  std::vector<std::string> directory_entries() const {
    std::vector<std::string> out;
    for (auto& entry : fs::recursive_directory_iterator(directory))
      if (!entry.is_directory())
        out.push_back(entry.path().string());
    return out;
  }
};

std::string echo_node(const std::string& name, const std::string& node,
                      const std::string& extra = {}) {
  return "[[nodes]]\nname = \"" + name + "\"\nprogram = \"" COURIER_ECHO_NODE
         "\"\nargs = [\"" + node + "\"]\nnames = [\"echo\"]\nbackoff = \"200ms\"\n"
         + extra + "\n";
}

std::string test_node(const std::string& name, const std::string& args,
                      const std::string& extra = {}) {
  return "[[nodes]]\nname = \"" + name + "\"\nprogram = \"" COURIER_TEST_NODE
         "\"\nargs = [" + args + "]\nstop = \"stdin\"\n" + extra + "\n";
}

std::set<std::string> dev_shm() {
  std::set<std::string> out;
  for (auto& entry : fs::directory_iterator("/dev/shm"))
    out.insert(entry.path().string());
  return out;
}

} // namespace

TEST_CASE("nodes start in order, each once the names before it are "
          "registered",
          "[deploy]") {
  // b finds `echo` before it says ready: it would fail had it started
  // before a registered it.
  test_system system{
    echo_node("a", "node-a")
    + test_node("b", R"("--name", "node-b", "--try", "find:echo", "echo.b")",
                "names = [\"echo.b\"]\ndepends_on = [\"a\"]")};
  auto up = system.cli({"up", "-d"});
  INFO(up.out);
  REQUIRE(up.status == 0);
  CHECK(contains(up.out, "system 't' is up: 2 nodes"));
  // A node's output reaches its log through the supervisor: soon, not at
  // once.
  CHECK(eventually(
    [&] { return contains(system.log("b"), "tried find echo: node-a"); }, 5s));
  auto log = system.log();
  auto a_running = log.find("a: running");
  auto b_started = log.find("b: started");
  REQUIRE(a_running != std::string::npos);
  REQUIRE(b_started != std::string::npos);
  CHECK(a_running < b_started);

  auto rows = system.ps();
  REQUIRE(rows.size() == 2);
  CHECK(rows[0]["node"] == "a");
  CHECK(rows[0]["state"] == "running");
  CHECK(rows[0]["names"] == nlohmann::json::array({"echo"}));
  CHECK(rows[1]["names"] == nlohmann::json::array({"echo.b"}));
  CHECK(rows[1]["user"] == rows[0]["user"]);
  CHECK(rows[1]["restarts"] == 0);
  auto text = system.cli({"ps"});
  CHECK(contains(text.out, "a  pid " + rows[0]["pid"].dump()));
  CHECK(contains(text.out, "running  restarts 0  up "));

  // `logs` shows what the node printed.
  auto logs = system.cli({"logs"});
  CHECK(contains(run_cli({"logs", system.file.string(), "a"}).out,
                 "serves 'echo'"));
  CHECK(contains(logs.out, "a: running"));
  CHECK(run_cli({"logs", system.file.string(), "nobody-here"}).status == 1);
}

TEST_CASE("a node killed with SIGKILL is restarted after its backoff and "
          "takes its names back",
          "[deploy]") {
  test_system system{echo_node("a", "node-a")};
  REQUIRE(system.cli({"up", "-d"}).status == 0);
  auto before = system.node_row("a");
  int old_pid = before["pid"];
  REQUIRE(old_pid > 0);
  auto killed = std::chrono::steady_clock::now();
  REQUIRE(::kill(old_pid, SIGKILL) == 0);
  nlohmann::json after;
  REQUIRE(eventually(
    [&] {
      after = system.node_row("a");
      return after["pid"] != old_pid && after["state"] == "running"
             && after["names"] == nlohmann::json::array({"echo"});
    },
    10s));
  auto took = std::chrono::steady_clock::now() - killed;
  CHECK(after["restarts"] == 1);
  CHECK(after["last_exit"] == "killed by SIGKILL");
  CHECK(contains(system.log(), "a: restarting in 200ms"));
  // The backoff, plus a node's start, plus the polls of this test.
  CHECK(took < 200ms + 3s);
}

TEST_CASE("a node that crashes in a loop is given up after its intensity",
          "[deploy]") {
  test_system system{
    "[[nodes]]\nname = \"crash\"\nprogram = \"sh\"\nargs = [\"-c\", \"echo "
    "going down; exit 3\"]\nnames = [\"crash\"]\nintensity = 2\nperiod = \"10s\"\nbackoff = "
    "\"10ms\"\n\n"
    + echo_node("after", "node-after", "depends_on = [\"crash\"]")};
  auto up = system.cli({"up", "-d"});
  INFO(up.out);
  // The start is over once the node is given up; `up` says it failed.
  CHECK(up.status == 1);
  CHECK(contains(up.out, "crash: given up: 2 restarts within 10s"));
  auto row = system.node_row("crash");
  CHECK(row["state"] == "failed");
  CHECK(row["restarts"] == 2);
  CHECK(row["pid"] == 0);
  CHECK(contains(row["reason"].get<std::string>(), "exited with status 3"));
  CHECK(system.node_row("after")["state"] == "blocked");
  CHECK(contains(system.log(), "crash: given up"));
  CHECK(eventually(
    [&] {
      auto output = system.log("crash");
      return std::count(output.begin(), output.end(), '\n') == 3;
    },
    5s));
  CHECK(contains(system.cli({"ps"}).out, "failed  restarts 2"));
}

TEST_CASE("down leaves no process, socket, shared memory or directory "
          "entry",
          "[deploy]") {
  auto shm_before = dev_shm();
  test_system system{
    echo_node("a", "node-a")
    + test_node("b", R"("--name", "node-b", "echo.b")",
                "names = [\"echo.b\"]\n")
    // c never registers its names: down must also stop a starting node.
    + test_node("c", R"("--name", "node-c")",
                "names = [\"never\"]\nstart_timeout = \"60s\"\n")};
  // up -d waits for c; here the test stops the system meanwhile.
  child_process up{{"sh", "-c", "exec \"$0\" \"$@\" 2>&1", COURIER_CLI, "up",
                    "-d", system.file.string()}};
  REQUIRE(eventually([&] {
    return contains(system.log(), "c: started");
  }));
  // Every node has its process in the status file, which the supervisor
  // writes after it logs the start.
  std::vector<int> pids;
  REQUIRE(eventually([&] {
    pids.clear();
    for (auto& row : system.ps())
      pids.push_back(row["pid"]);
    return pids.size() == 3 && std::count(pids.begin(), pids.end(), 0) == 0;
  }));
  pids.push_back(deploy::read_status(*deploy::read_system_file(system.file))
                   ->supervisor_pid);
  CHECK_FALSE(system.directory_entries().empty());

  auto down = system.cli({"down"});
  CHECK(down.status == 0);
  CHECK(contains(down.out, "system 't' is down"));
  for (int pid : pids)
    CHECK(gone(pid));
  CHECK(system.directory_entries().empty());
  CHECK_FALSE(fs::exists(system.run_dir));
  CHECK(dev_shm() == shm_before);
  auto log = system.log();
  CHECK(log.find("c: stopping") < log.find("b: stopping"));
  CHECK(log.find("b: stopping") < log.find("a: stopping"));
  // The interrupted `up -d` says so.
  std::string said;
  up.read_all(said);
  CHECK(contains(said, "stopped before every node had started"));
  auto status = up.wait_exit(5s);
  REQUIRE(status);
  CHECK(WEXITSTATUS(*status) == 1);

  auto again = system.cli({"down"});
  CHECK(again.status == 0);
  CHECK(contains(again.out, "was not up"));
  CHECK(system.cli({"ps"}).status == 1);
}

TEST_CASE("a second up of a running system is refused", "[deploy]") {
  test_system system{echo_node("a", "node-a")};
  REQUIRE(system.cli({"up", "-d"}).status == 0);
  int pid = system.node_row("a")["pid"];
  for (auto args : {std::vector<std::string>{"up", "-d"},
                    std::vector<std::string>{"up"}}) {
    auto second = system.cli(args);
    CHECK(second.status == 1);
    CHECK(contains(second.out, "already_exists: system 't' is already up "
                               "(supervisor pid "));
    CHECK(contains(second.out, "'courier down " + system.file.string()
                                 + "' stops it"));
  }
  CHECK(system.node_row("a")["pid"] == pid);
  CHECK(system.ps().size() == 1);
}

TEST_CASE("a bad system file is refused with its line named", "[deploy]") {
  auto unknown = deploy::parse_system_file("[[nodes]]\nname = \"a\"\n"
                                           "program = \"/bin/true\"\n"
                                           "colour = \"red\"\n");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.error().message()
        == "<string>:4:1: nodes.a.colour: unknown key");

  auto wrong = deploy::parse_system_file("[[nodes]]\nname = \"a\"\n"
                                         "program = \"/bin/true\"\n"
                                         "intensity = \"many\"\n");
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().message()
        == "<string>:4:13: nodes.a.intensity: expects an integer, not a "
           "string");

  // Inline settings follow the node configuration's rules, at their line
  // in the system file.
  auto settings = deploy::parse_system_file(
    "[[nodes]]\nname = \"a\"\nprogram = \"/bin/true\"\n\n[nodes.settings]\n"
    "name = \"node-a\"\nscheduler = \"fastest\"\n");
  REQUIRE_FALSE(settings);
  CHECK(contains(settings.error().message(),
                 "<string>:7:13: nodes.a.settings.scheduler: 'fastest' is "
                 "not one of"));

  auto unknown_dependency = deploy::parse_system_file(
    "[[nodes]]\nname = \"a\"\nprogram = \"/bin/true\"\n"
    "depends_on = [\"b\"]\n");
  REQUIRE_FALSE(unknown_dependency);
  CHECK(contains(unknown_dependency.error().message(),
                 "<string>:4:14: nodes.a.depends_on: 'b' is not a node"));

  // Through the CLI: nothing starts, the file's line is named.
  test_system system{"[[nodes]]\nname = \"a\"\nprogram = \"/bin/true\"\n"
                     "backoff = \"-1s\"\n"};
  auto up = system.cli({"up", "-d"});
  CHECK(up.status == 1);
  CHECK(contains(up.out, system.file.string() + ":9:11: nodes.a.backoff: "));
  CHECK_FALSE(fs::exists(system.run_dir));
  auto syntax = deploy::parse_system_file("[[nodes]\nname = 1\n");
  REQUIRE_FALSE(syntax);
  CHECK(contains(syntax.error().message(), "<string>:1:"));
}

TEST_CASE("up --check finds a missing program and a dependency cycle",
          "[deploy]") {
  test_system system{
    "[[nodes]]\nname = \"a\"\nprogram = \"/nonexistent/node\"\n"
    "depends_on = [\"b\"]\n\n"
    "[[nodes]]\nname = \"b\"\nprogram = \"" COURIER_ECHO_NODE "\"\n"
    "depends_on = [\"a\"]\n\n"
    "[[nodes]]\nname = \"c\"\nprogram = \"no-such-program-anywhere\"\n"
    "user = \"no-such-user-here\"\n"};
  auto check = system.cli({"up", "--check"});
  INFO(check.out);
  CHECK(check.status == 1);
  auto file = system.file.string();
  CHECK(contains(check.out, file + ":8:11: nodes.a.program: "
                                   "'/nonexistent/node' does not exist"));
  CHECK(contains(check.out, file + ":18:11: nodes.c.program: "
                                   "'no-such-program-anywhere' is not in "
                                   "PATH"));
  CHECK(contains(check.out, file + ":19:8: nodes.c.user: no user named "
                                   "'no-such-user-here'"));
  CHECK(contains(check.out, "nodes.a.depends_on: the dependencies form a "
                            "cycle: a -> b -> a"));
  CHECK_FALSE(fs::exists(system.run_dir));

  test_system good{echo_node("a", "node-a")
                   + echo_node("b", "node-b", "depends_on = [\"a\"]")};
  auto ok = good.cli({"up", "--check"});
  CHECK(ok.status == 0);
  CHECK(contains(ok.out, "2 nodes, start order: a b"));
  CHECK_FALSE(fs::exists(good.run_dir));
}

TEST_CASE("a node runs as the user the file names", "[deploy]") {
  if (::geteuid() != 0) {
    WARN("needs root to start a node as another user");
    return;
  }
  // The node lets root (the supervisor) see its names.
  test_system system{echo_node("a", "node-a",
                               "user = \"nobody\"\n\n[nodes.settings]\n"
                               "allowed_uids = [0]\n")};
  auto up = system.cli({"up", "-d"});
  INFO(up.out << system.log() << system.log("a"));
  REQUIRE(up.status == 0);
  auto row = system.node_row("a");
  CHECK(row["user"] == "nobody");
  CHECK(row["names"] == nlohmann::json::array({"echo"}));
  auto status = read_file("/proc/" + row["pid"].dump() + "/status");
  CHECK(contains(status, "\nUid:\t65534\t65534\t65534\t65534\n"));
  CHECK(contains(status, "\nGid:\t65534\t65534\t65534\t65534\n"));
}

TEST_CASE("up in the foreground supervises until SIGTERM, then stops its "
          "nodes",
          "[deploy]") {
  test_system system{echo_node("a", "node-a")};
  child_process up{{COURIER_CLI, "up", system.file.string()}};
  REQUIRE(up.wait_for_line_containing("system 't' is up: 1 nodes in "));
  int pid = system.node_row("a")["pid"];
  REQUIRE(pid > 0);
  // `logs -f` follows the supervisor's log until the system is down.
  child_process follow{{COURIER_CLI, "logs", "-f", system.file.string()}};
  REQUIRE(follow.wait_for_line_containing("a: running"));
  up.kill(SIGTERM);
  auto status = up.wait_exit(10s);
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 0);
  CHECK(gone(pid));
  CHECK(follow.wait_for_line_containing("t: stopped"));
  std::string rest;
  CHECK(follow.read_all(rest, 5s)); // it ends once the system is down
  CHECK(system.directory_entries().empty());
  CHECK_FALSE(fs::exists(system.run_dir));
}

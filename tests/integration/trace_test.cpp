// Traces and structured logs (docs/operations.md, "Traces" and "Logs"):
// one trace id on every hop of a request that crosses three node processes
// and two tiers; JSON log lines that parse, with their fields; a refusal,
// a dead letter and a restart each logged once, with its reason.

#include <map>
#include <regex>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "local_node.hpp"

using namespace courier;
using namespace courier::testing;
using json = nlohmann::json;

namespace {

/// What a hop actor printed: "hop NODE/NAME trace TRACE span SPAN".
struct hop_line {
  std::string who;
  std::string trace;
  std::string span;
};

hop_line read_hop(child_process& node) {
  auto line = node.line_containing("hop ", 20s);
  REQUIRE(line);
  static const std::regex form{"hop (\\S+) trace (\\S*) span (\\S*)"};
  std::smatch parts;
  REQUIRE(std::regex_match(*line, parts, form));
  return {parts[1], parts[2], parts[3]};
}

bool is_hex(const std::string& text, std::size_t digits) {
  return text.size() == digits
         && text.find_first_not_of("0123456789abcdef") == std::string::npos;
}

/// The JSON objects of a test node's "log: " lines in `out`; fails the
/// test on a line that is not one.
std::vector<json> json_lines(const std::string& out) {
  std::vector<json> lines;
  std::size_t at = 0;
  while (at < out.size()) {
    auto end = out.find('\n', at);
    if (end == std::string::npos)
      end = out.size();
    auto line = out.substr(at, end - at);
    at = end + 1;
    if (line.rfind("log: ", 0) != 0)
      continue;
    auto parsed = json::parse(line.substr(5), nullptr, false);
    INFO(line);
    REQUIRE(!parsed.is_discarded());
    REQUIRE(parsed.is_object());
    lines.push_back(std::move(parsed));
  }
  return lines;
}

} // namespace

TEST_CASE("one trace id is seen on every hop of a request that crosses "
          "three nodes, over shared memory and TCP",
          "[trace]") {
  temp_dir dir;
  // c serves over TCP alone; b has the local tiers and TCP, so b -> c is
  // TCP and a -> b shared memory (the tier policy's first choice).
  auto c = start_test_node(dir, "c", {"--tcp", "hop.c"});
  auto b
    = start_test_node(dir, "b", {"--with-tcp", "--hop-next", "hop.c", "hop.b"});
  // a's plain thread sends to its own hop.a; with --trace it starts the
  // trace, which every hop continues.
  child_process a{{COURIER_TEST_NODE, "--dir", dir.path(), "--name", "a",
                   "--trace", "--hop-next", "hop.b", "--try", "send:hop.a",
                   "hop.a"}};
  auto at_a = read_hop(a);
  auto tried = a.line_containing("tried send hop.a:", 20s);
  REQUIRE(tried);
  CHECK(*tried == "tried send hop.a: ok 1");
  auto at_b = read_hop(*b);
  auto at_c = read_hop(*c);
  CHECK(at_a.who == "a/hop.a");
  CHECK(at_b.who == "b/hop.b");
  CHECK(at_c.who == "c/hop.c");
  CHECK(is_hex(at_a.trace, 32));
  CHECK(at_b.trace == at_a.trace);
  CHECK(at_c.trace == at_a.trace);
  // Each hop's message has a span of its own.
  CHECK(is_hex(at_a.span, 16));
  CHECK(is_hex(at_b.span, 16));
  CHECK(is_hex(at_c.span, 16));
  CHECK(at_a.span != at_b.span);
  CHECK(at_b.span != at_c.span);
  CHECK(at_a.span != at_c.span);
}

TEST_CASE("without tracing asked, a plain thread's call starts no trace",
          "[trace]") {
  temp_dir dir;
  auto b = start_test_node(dir, "b", {"hop.b"});
  child_process a{{COURIER_TEST_NODE, "--dir", dir.path(), "--name", "a",
                   "--try", "send:hop.b"}};
  auto tried = a.line_containing("tried send hop.b:", 20s);
  REQUIRE(tried);
  CHECK(*tried == "tried send hop.b: ok 1");
  auto at_b = read_hop(*b);
  CHECK(at_b.trace.empty());
  CHECK(at_b.span.empty());
}

TEST_CASE("JSON log lines parse, and a refusal is one line with its reason, "
          "peer, actor and trace",
          "[trace][log]") {
  temp_dir dir;
  // x lets network peers do nothing (--no-rules): y's call is refused.
  auto x = start_test_node(
    dir, "x", {"--tcp", "--no-rules", "--log-json", "--log-stdout", "hop.x"});
  child_process y{{COURIER_TEST_NODE, "--dir", dir.path(), "--name", "y",
                   "--tcp", "--trace", "--try", "send:hop.x"}};
  auto tried = y.line_containing("tried send hop.x:", 20s);
  REQUIRE(tried);
  CHECK(*tried == "tried send hop.x: permission_denied 1");
  // x leaves when its stdin closes; everything it logged is then read.
  x->close_stdin();
  std::string out;
  REQUIRE(x->read_all(out));
  auto lines = json_lines(out);
  REQUIRE(!lines.empty());
  std::vector<json> refusals;
  for (const auto& line : lines) {
    INFO(line.dump());
    for (const char* key : {"time", "level", "node", "message"}) {
      REQUIRE(line.contains(key));
      CHECK(line[key].is_string());
    }
    CHECK(line["node"] == "x");
    CHECK(
      std::regex_match(line["time"].get<std::string>(),
                       std::regex{"\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d"
                                  "\\.\\d{6}Z"}));
    if (line.value("reason", "") == "permission_denied")
      refusals.push_back(line);
  }
  REQUIRE(refusals.size() == 1);
  const auto& refusal = refusals.front();
  CHECK(refusal["level"] == "warning");
  CHECK(refusal["actor"] == "hop.x");
  CHECK(refusal["peer"] == "y");
  CHECK(is_hex(refusal.value("trace_id", ""), 32));
  CHECK(refusal["message"].get<std::string>().find("may not send to 'hop.x'")
        != std::string::npos);
}

TEST_CASE("a dead letter and a restart are each logged once, with their "
          "reason, as JSON",
          "[trace][log]") {
  temp_dir dir;
  local_node n{dir, "solo", [](node_config& config) {
                 config.log_format = log_format::json;
                 config.transports.clear();
                 config.join_directory = false;
               }};
  spawn_options supervised;
  supervised.restart = restart_policy{};
  auto started = n->spawn(
    "fragile",
    [](context&) {
      return behavior{[](const tpb::Ping&) -> tpb::Pong {
        throw std::runtime_error{"bad ping"};
      }};
    },
    supervised);
  REQUIRE(started);
  CHECK(n->send("fragile", tpb::Ping{}, deadline{5s}).code() == errc::internal);
  CHECK(n->post("nobody.here", tpb::Ping{}).code() == errc::not_found);
  auto parsed = [&] {
    std::vector<json> out;
    for (const auto& line : n.lines->items()) {
      auto object = json::parse(line, nullptr, false);
      INFO(line);
      REQUIRE(object.is_object());
      out.push_back(std::move(object));
    }
    return out;
  };
  auto count = [&](const std::string& reason) {
    std::size_t found = 0;
    for (const auto& line : parsed())
      if (line.value("reason", "") == reason)
        ++found;
    return found;
  };
  REQUIRE(eventually([&] { return count("restarted") == 1; }));
  CHECK(count("no_such_name") == 1);
  for (const auto& line : parsed()) {
    if (line.value("reason", "") == "restarted") {
      CHECK(line["actor"] == "fragile");
      CHECK(line["message"].get<std::string>().find("bad ping")
            != std::string::npos);
    }
    if (line.value("reason", "") == "no_such_name")
      CHECK(line["actor"] == "nobody.here");
  }
}

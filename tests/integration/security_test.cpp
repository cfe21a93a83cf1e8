// Nodes of different users: real uids through setpriv, real SO_PEERCRED.
// Needs root (CI runs as root); skipped otherwise.

#include <atomic>
#include <map>
#include <memory>

#include <unistd.h>

#include "local_node.hpp"
#include "tcp_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

constexpr unsigned nobody = 65534;

std::vector<std::string> as_nobody() {
  return {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"};
}

} // namespace

TEST_CASE("a node of another user is reached over the named pipe when "
          "allowed",
          "[pipe][security][integration]") {
  if (::geteuid() != 0)
    return; // needs root to switch users
  temp_dir dir;
  auto guest = start_test_node(dir, "guest",
                               {"--allow-uid", "0", "echo.g"}, as_nobody());
  local_node here{dir, "here"};
  auto pong = here->send<tpb::Pong>("echo.g", ping(3), 5s);
  REQUIRE(pong);
  CHECK((*pong)->from() == "guest/echo.g<-");
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "pipe"); // never shared memory across users
  CHECK(routes[0].note == "another user (uid 65534)");
  auto nodes = here->nodes();
  auto g = std::find_if(nodes.begin(), nodes.end(),
                        [](const node_info& n) { return n.name == "guest"; });
  REQUIRE(g != nodes.end());
  CHECK(g->uid == nobody);
}

TEST_CASE("a node refuses another user's link by default and says why",
          "[pipe][security][integration]") {
  if (::geteuid() != 0)
    return; // needs root to switch users
  temp_dir dir;
  auto guest = start_test_node(dir, "guest", {"echo.g"}, as_nobody());
  local_node here{dir, "here"};
  auto refused = here->send("echo.g", ping(1), 5s);
  REQUIRE_FALSE(refused);
  CHECK(refused.code() == errc::permission_denied);
  INFO(refused.error().message());
  CHECK(refused.error().message().find("uid 0") != std::string::npos);
  // The refusal does not stick: the route is gone, the next try asks again.
  CHECK(here->send("echo.g", ping(1), 5s).code() == errc::permission_denied);
}

TEST_CASE("an allowed uid does not open the door to others",
          "[pipe][security][integration]") {
  if (::geteuid() != 0)
    return; // needs root to switch users
  temp_dir dir;
  // The guest allows uid 1 only; root (uid 0) is still refused.
  auto guest = start_test_node(dir, "guest", {"--allow-uid", "1", "echo.g"},
                               as_nobody());
  local_node here{dir, "here"};
  CHECK(here->send("echo.g", ping(1), 5s).code() == errc::permission_denied);
}

TEST_CASE("a node whose link was refused stops at once",
          "[pipe][security][integration]") {
  if (::geteuid() != 0)
    return; // needs root to switch users
  temp_dir dir;
  auto guest = start_test_node(dir, "guest", {"echo.g"}, as_nobody());
  local_node here{dir, "here"};
  CHECK(here->send("echo.g", ping(1), 5s).code() == errc::permission_denied);
  // The refused link's proxy stays a second as a tombstone for letters on
  // their way; a node that stops does not wait for it (the CLI took a
  // second to exit after every refusal).
  auto began = std::chrono::steady_clock::now();
  here.instance.reset();
  CHECK(std::chrono::steady_clock::now() - began < 500ms);
}

// -- authorization per principal, actor name and verb -----------------------------

namespace {

/// An actor that counts the Pings it gets (posted or asked) and answers
/// them.
actor_factory counting(std::shared_ptr<std::atomic<int>> count) {
  return [count](context&) {
    return behavior{[count](const tpb::Ping& p) {
      ++*count;
      tpb::Pong out;
      out.set_seq(p.seq());
      return out;
    }};
  };
}

/// A node of this process (root) whose rules let uid 65534 post to and
/// find billing.*, and be asked billing.y by a broadcast; it holds
/// billing.x, billing.y and admin.x, each counting what reaches it.
struct guarded_node {
  explicit guarded_node(const temp_dir& dir)
    : here{dir, "here", [](node_config& config) {
             config.rules = {
               {"uid:65534", "billing.*", verbs::post | verbs::find},
               {"uid:65534", "billing.y", verbs::broadcast},
             };
           }} {
    for (auto& [name, count] : counts)
      REQUIRE(here->spawn(name, counting(count)));
  }

  int reached(const std::string& name) {
    return counts.at(name)->load();
  }

  std::size_t refusal_lines() const {
    std::size_t n = 0;
    for (auto& line : here.lines->items())
      if (line.find("permission_denied: uid:65534 (node 'guest')")
          != std::string::npos)
        ++n;
    return n;
  }

  std::map<std::string, std::shared_ptr<std::atomic<int>>> counts{
    {"billing.x", std::make_shared<std::atomic<int>>(0)},
    {"billing.y", std::make_shared<std::atomic<int>>(0)},
    {"admin.x", std::make_shared<std::atomic<int>>(0)},
  };
  local_node here;
};

/// Starts a test node as uid 65534 that runs `tries` (test_node.cpp's
/// --try) against the others, without waiting for it: its lines say how
/// each went.
std::unique_ptr<child_process> start_guest(const temp_dir& dir,
                                           std::vector<std::string> tries) {
  auto args = as_nobody();
  for (auto a : {std::string{COURIER_TEST_NODE}, std::string{"--dir"},
                 dir.path(), std::string{"--name"}, std::string{"guest"}})
    args.push_back(a);
  for (auto& spec : tries) {
    args.push_back("--try");
    args.push_back(spec);
  }
  return std::make_unique<child_process>(args);
}

/// The line of `guest` that reports `what` ("tried send billing.x:").
std::string outcome(child_process& guest, const std::string& what) {
  auto line = guest.line_containing(what, 60s);
  REQUIRE(line);
  return *line;
}

} // namespace

TEST_CASE("10,000 refused posts from another user reach no actor and no dead "
          "letters, are counted, and log a few lines",
          "[pipe][security][integration]") {
  if (::geteuid() != 0)
    return; // needs root to switch users
  temp_dir dir;
  guarded_node guarded{dir};
  auto& here = guarded.here;
  auto began = std::chrono::steady_clock::now();
  auto guest = start_guest(dir, {"post:admin.x:10000"});
  CHECK(outcome(*guest, "tried post admin.x:")
        == "tried post admin.x: posted 10000 refused 0");
  REQUIRE(eventually([&] { return here->refusals() >= 10'000; }, 60s));
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::steady_clock::now() - began)
                   .count();
  CHECK(here->refusals() == 10'000);
  CHECK(guarded.reached("admin.x") == 0);
  CHECK(here->dead_letters() == 0);
  // The first refusal is logged, then at most one line a second.
  CHECK(guarded.refusal_lines() >= 1);
  CHECK(guarded.refusal_lines() <= static_cast<std::size_t>(seconds) + 2);
  CHECK(logged(*here.lines, "permission_denied: uid:65534 (node 'guest') may "
                            "not post to 'admin.x'"));
}

TEST_CASE("another user allowed to post to billing.* is refused everything "
          "else, and finds and lists only what it may find",
          "[pipe][security][integration]") {
  if (::geteuid() != 0)
    return; // needs root to switch users
  temp_dir dir;
  guarded_node guarded{dir};
  auto& here = guarded.here;
  auto guest = start_guest(
    dir, {"post:billing.x:100", "send:billing.x:3", "send:admin.x:2",
          "post:admin.x:5", "names:*", "find:admin.x", "find:billing.x",
          "monitor:admin.x", "broadcast:*"});
  CHECK(outcome(*guest, "tried post billing.x:")
        == "tried post billing.x: posted 100 refused 0");
  CHECK(outcome(*guest, "tried send billing.x:")
        == "tried send billing.x: permission_denied 3");
  CHECK(outcome(*guest, "tried send admin.x:")
        == "tried send admin.x: permission_denied 2");
  CHECK(outcome(*guest, "tried post admin.x:")
        == "tried post admin.x: posted 5 refused 0");
  CHECK(outcome(*guest, "tried names *:")
        == "tried names *: billing.x@here billing.y@here");
  CHECK(outcome(*guest, "tried find admin.x:")
        == "tried find admin.x: not_found");
  CHECK(outcome(*guest, "tried find billing.x:")
        == "tried find billing.x: here");
  CHECK(outcome(*guest, "tried monitor admin.x:")
        == "tried monitor admin.x: stopped permission_denied: uid:65534 may "
           "not monitor 'admin.x' on node 'here'");
  CHECK(outcome(*guest, "tried broadcast *:")
        == "tried broadcast *: replied billing.y failed admin.x "
           "permission_denied failed billing.x permission_denied");
  REQUIRE(guest->wait_for_line("ready", 30s));
  // 3 + 2 + 5 + 1 + 2: names left out of a listing are no refusals.
  CHECK(eventually([&] { return here->refusals() == 13; }));
  CHECK(eventually([&] { return guarded.reached("billing.x") == 100; }));
  CHECK(guarded.reached("billing.y") == 1); // the broadcast
  CHECK(guarded.reached("admin.x") == 0);
  CHECK(here->dead_letters() == 0);

  // The node's own user is not affected: everything, everywhere.
  local_node mine{dir, "mine"};
  auto pong = mine->send<tpb::Pong>("admin.x", ping(7), 5s);
  REQUIRE(pong);
  CHECK((*pong)->seq() == 7);
  std::vector<std::string> seen;
  for (auto& held : mine->machine_names("*"))
    if (held.node == "here")
      seen.push_back(held.actor);
  CHECK(seen
        == std::vector<std::string>{"admin.x", "billing.x", "billing.y",
                                    "courier.node.here"});
  CHECK(mine->broadcast("*.x", ping(1), 5s).replied.size() == 2);
  CHECK(here->refusals() == 13);
}

TEST_CASE("over TLS, a certificate allowed to post to billing.* is refused "
          "send and admin.*, 10,000 times, and a certificate no rule names "
          "is refused everything",
          "[tcp][tls][security][integration]") {
  temp_dir dir;
  auto certs = mint_certs(dir, {"here", "ops", "intruder"});
  std::map<std::string, std::shared_ptr<std::atomic<int>>> counts{
    {"billing.x", std::make_shared<std::atomic<int>>(0)},
    {"admin.x", std::make_shared<std::atomic<int>>(0)},
  };
  local_node here{dir, "here", [&](node_config& config) {
                    tcp::options settings;
                    settings.tls = tls_files_of(certs, "here");
                    config.transports = {{"tcp", tcp::factory(settings)}};
                    config.rules = {
                      {"san:ops", "billing.*", verbs::post | verbs::find}};
                  }};
  for (auto& [name, count] : counts)
    REQUIRE(here->spawn(name, counting(count)));
  auto remote = [&](const std::string& name, std::vector<std::string> tries) {
    std::vector<std::string> args{COURIER_TEST_NODE, "--dir", dir.path(),
                                  "--name", name, "--tcp", "--tls", certs};
    for (auto& spec : tries) {
      args.push_back("--try");
      args.push_back(spec);
    }
    return std::make_unique<child_process>(args);
  };

  auto ops = remote("ops", {"post:billing.x:100", "send:billing.x:3",
                            "post:admin.x:10000"});
  CHECK(outcome(*ops, "tried post billing.x:")
        == "tried post billing.x: posted 100 refused 0");
  CHECK(outcome(*ops, "tried send billing.x:")
        == "tried send billing.x: permission_denied 3");
  CHECK(outcome(*ops, "tried post admin.x:")
        == "tried post admin.x: posted 10000 refused 0");
  REQUIRE(eventually([&] { return here->refusals() >= 10'003; }, 60s));
  CHECK(eventually([&] { return counts["billing.x"]->load() == 100; }));
  CHECK(here->refusals() == 10'003);
  CHECK(counts["admin.x"]->load() == 0);
  CHECK(here->dead_letters() == 0);
  // The first refusal is logged (then at most a line a second).
  CHECK(logged(*here.lines, "(node 'ops') may not send to 'billing.x'"));

  // A valid certificate of the same CA that no rule names.
  auto before = here->refusals();
  auto intruder = remote("intruder", {"send:billing.x:2", "post:billing.x:5"});
  auto sent = outcome(*intruder, "tried send billing.x:");
  CHECK(sent.find("permission_denied") != std::string::npos);
  REQUIRE(intruder->wait_for_line("ready", 30s));
  CHECK(eventually([&] { return here->refusals() > before; }));
  CHECK(counts["billing.x"]->load() == 100);
  CHECK(here->dead_letters() == 0);
}

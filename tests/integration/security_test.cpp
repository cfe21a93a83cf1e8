// Nodes of different users: real uids through setpriv, real SO_PEERCRED.
// Needs root (CI runs as root); skipped otherwise.

#include <unistd.h>

#include "local_node.hpp"

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

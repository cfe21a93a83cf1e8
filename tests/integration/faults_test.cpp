// Hostile and broken peers on the named pipe: raw AF_UNIX clients that send
// what no Courier node would. The node drops that connection, says why in
// its log, and keeps serving everyone else.

#include "local_node.hpp"
#include "raw_peer.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

struct server {
  explicit server(const temp_dir& dir) : node{dir, "server"} {
    REQUIRE(node->spawn("adder", adder));
  }

  std::string endpoint(const temp_dir& dir) const {
    return dir.path() + "/sockets/server.sock";
  }

  /// The node still serves a well-behaved peer.
  void still_serves(const temp_dir& dir) {
    local_node friendly{dir, "friendly"};
    auto sum = friendly->send<tpb::Sum>("adder", add(2, 2), 5s);
    REQUIRE(sum);
    CHECK((*sum)->value() == 4);
  }

  bool logged(const std::string& part) {
    return testing::logged(*node.lines, part, 5s);
  }

  local_node node;
};

} // namespace

TEST_CASE("a frame over the size limit closes that link only",
          "[pipe][faults][integration]") {
  temp_dir dir;
  server s{dir};
  raw_client bad{s.endpoint(dir)};
  REQUIRE(bad.connected());
  bad.send_bytes(std::string("\xff\xff\xff\x7f", 4)); // 2 GiB announced
  CHECK(bad.closed_by_peer());
  s.still_serves(dir);
}

TEST_CASE("bytes that are not an envelope close that link",
          "[pipe][faults][integration]") {
  temp_dir dir;
  server s{dir};
  raw_client bad{s.endpoint(dir)};
  bad.send_frame(std::string(64, '\xff'));
  CHECK(bad.closed_by_peer());
  CHECK(s.logged("not an envelope"));
  s.still_serves(dir);
}

TEST_CASE("a message before the handshake closes that link",
          "[pipe][faults][integration]") {
  temp_dir dir;
  server s{dir};
  raw_client bad{s.endpoint(dir)};
  v1::Envelope env;
  env.set_kind(v1::KIND_POST);
  env.set_target("adder");
  env.set_type_name("courier_test.v1.Add");
  bad.send_frame(env.SerializeAsString());
  CHECK(bad.closed_by_peer());
  CHECK(s.logged("before the handshake"));
  s.still_serves(dir);
}

TEST_CASE("a peer that stalls in the handshake is dropped at the deadline",
          "[pipe][faults][integration]") {
  temp_dir dir;
  server s{dir};
  raw_client silent{s.endpoint(dir)};
  auto started = std::chrono::steady_clock::now();
  // The default handshake deadline is 2 s.
  CHECK(silent.closed_by_peer(10s));
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  s.still_serves(dir);
}

TEST_CASE("a peer that vanishes mid-frame changes nothing",
          "[pipe][faults][integration]") {
  temp_dir dir;
  server s{dir};
  {
    raw_client partial{s.endpoint(dir)};
    partial.send_frame(hello_frame(::getpid(), ::getuid()));
    partial.send_bytes(std::string("\x64\x00\x00\x00", 4) + "only ten b");
  } // gone with 90 bytes of its frame missing
  s.still_serves(dir);
}

TEST_CASE("a hello that lies about its process is refused",
          "[pipe][faults][integration]") {
  temp_dir dir;
  server s{dir};
  raw_client liar{s.endpoint(dir)};
  liar.send_frame(hello_frame(1, ::getuid())); // claims to be pid 1
  CHECK(liar.closed_by_peer());
  CHECK(liar.received().find("but the kernel says") != std::string::npos);
  s.still_serves(dir);
}

TEST_CASE("a message over the frame limit fails with resource_exhausted",
          "[pipe][faults][integration]") {
  temp_dir dir;
  server s{dir};
  local_node sender{dir, "sender"};
  // 5 MiB of payload: over the default 4 MiB frame.
  auto big = ping(1, std::string(5u << 20, 'x'));
  auto reply = sender->send("adder", big, 5s);
  REQUIRE_FALSE(reply);
  CHECK(reply.code() == errc::resource_exhausted);
  // The link survives: the next, normal message goes through.
  auto sum = sender->send<tpb::Sum>("adder", add(1, 1), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 2);
}

TEST_CASE("a payload nested deeper than the recursion limit is refused",
          "[pipe][faults][integration]") {
  temp_dir dir;
  server s{dir};
  REQUIRE(s.node->spawn("forest", [](context&) {
    return behavior{[](const tpb::Tree&) {}};
  }));
  local_node sender{dir, "sender"};
  tpb::Tree deep;
  auto* at = &deep;
  for (int i = 0; i < 150; ++i) // the default limit is 100
    at = at->add_children();
  auto reply = sender->send("forest", deep, 5s);
  REQUIRE_FALSE(reply);
  CHECK(reply.code() == errc::invalid_argument);
  tpb::Tree shallow;
  shallow.add_children()->add_children();
  CHECK(sender->send("forest", shallow, 5s));
}

TEST_CASE("a node killed and started again under its name holds its names "
          "again",
          "[faults][directory]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", {"echo.a", "echo.b"});
  peer->kill(SIGKILL);
  REQUIRE(peer->wait_exit(5s));
  // Nobody reaped the dead incarnation's names: the new one takes them.
  peer = start_test_node(dir, "peer", {"echo.a", "echo.b"});
  local_node here{dir, "here"};
  auto pong = here->send<tpb::Pong>("echo.b@peer", ping(3), 5s);
  REQUIRE(pong);
  CHECK((*pong)->seq() == 3);
}

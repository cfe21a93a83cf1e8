// No peer can grow a node's memory without bound (docs/operations.md,
// "Memory"): hostile peers written by hand (raw AF_UNIX or TCP clients
// speaking the wire format) against a node run as a child process, whose
// memory is read from /proc/<pid>/status.

#include "courier/v1/durable.pb.h"
#include "courier/v1/envelope.pb.h"
#include "local_node.hpp"
#include "raw_peer.hpp"
#include "tcp_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

/// limits.max_queued of the nodes under attack: small, so that the
/// attacks stay small too.
constexpr std::size_t budget = 8 * mib;

std::string endpoint(const temp_dir& dir, const std::string& node) {
  return dir.path() + "/sockets/" + node + ".sock";
}

/// The frame of a post (or request, with an id) from node "intruder".
std::string envelope(v1::Kind kind, std::uint64_t id, const std::string& target,
                     const google::protobuf::Message& payload) {
  v1::Envelope env;
  env.set_kind(kind);
  env.set_target(target);
  env.mutable_sender()->set_node("intruder");
  env.set_type_name(payload.GetDescriptor()->full_name());
  env.set_message_id(id);
  payload.SerializeToString(env.mutable_payload());
  return raw_client::framed(env.SerializeAsString());
}

/// A node under attack: a child process with a small budget.
struct target_node {
  target_node(const temp_dir& dir, std::vector<std::string> args) {
    args.insert(args.begin(), {"--pipe-only", "--log-stdout"});
    process = start_test_node(dir, "target", std::move(args));
    resting = process_memory(process->pid(), "VmRSS");
    REQUIRE(resting > 0);
    reset_peak_memory(process->pid());
  }

  /// How much the node grew at its peak since it was started.
  std::size_t growth() const {
    auto peak = process_memory(process->pid(), "VmHWM");
    return peak > resting ? peak - resting : 0;
  }

  std::unique_ptr<child_process> process;
  std::size_t resting = 0;
};

/// The node still answers a well-behaved peer.
void still_serves(const temp_dir& dir, const std::string& echo) {
  local_node friendly{dir, "friendly", {}, false};
  auto pong = friendly->send<tpb::Pong>(echo, ping(7), 10s);
  REQUIRE(pong);
  CHECK((*pong)->seq() == 7);
}


/// How a hostile peer reaches the node under attack: its named pipe, or
/// its TCP tier (plaintext on the loopback, whose peers its rules allow).
enum class way { pipe, tcp };

std::unique_ptr<raw_client> attack(const temp_dir& dir, way by) {
  if (by == way::pipe)
    return std::make_unique<raw_client>(endpoint(dir, "target"));
  local_node observer{dir, "observer", {}, false};
  return std::make_unique<raw_client>(
    raw_client::tcp_port{tcp_port_of(*observer.instance, "target")});
}

std::vector<std::string> target_args(way by, std::vector<std::string> args) {
  if (by == way::tcp)
    args.insert(args.begin(), "--with-tcp");
  return args;
}

/// A hostile peer over TLS (an authenticated one: its certificate is of
/// the node's CA), with raw_client's verbs.
class tls_attacker {
public:
  tls_attacker(int port, const tcp::tls_files& files) : client_{port} {
    established_ = client_.connected() && client_.tls_connect(files);
  }

  bool connected() const {
    return established_;
  }

  bool say_hello() {
    std::string body;
    v1::Envelope env;
    v1::HelloAck ack;
    return client_.tls_send_all(
             raw_client::framed(hello_frame(::getpid(), ::getuid())))
           && client_.tls_read_frame(body) && env.ParseFromString(body)
           && ack.ParseFromString(env.payload()) && !ack.has_refused();
  }

  bool send_all(const std::string& bytes,
                std::chrono::milliseconds stall = std::chrono::seconds{3}) {
    return client_.tls_send_all(bytes, stall);
  }

  bool hung_up(std::chrono::milliseconds timeout) {
    return client_.hung_up(timeout);
  }

private:
  tcp_client client_;
  bool established_ = false;
};

/// `peer` asks for answers it never reads: the node drops its link, within
/// its budget, and goes on serving the others.
template <class Peer>
void unread_answers_from(const temp_dir& dir, target_node& node, Peer& peer);

void unread_answers(way by) {
  temp_dir dir;
  target_node node{dir, target_args(by, {"--max-queued",
                                         std::to_string(budget), "echo.m"})};
  auto peer = attack(dir, by);
  unread_answers_from(dir, node, *peer);
}

template <class Peer>
void unread_answers_from(const temp_dir& dir, target_node& node, Peer& peer) {
  REQUIRE(peer.connected());
  REQUIRE(peer.say_hello());
  // Requests whose answers (the echo of a 60 KiB blob) it never reads:
  // 1,024 of them would pile up 60 MiB of answers.
  tpb::Blob blob;
  blob.set_data(std::string(60u << 10, 'a'));
  std::size_t sent = 0;
  auto until = std::chrono::steady_clock::now() + 30s;
  while (sent < 1024 && std::chrono::steady_clock::now() < until
         && peer.send_all(envelope(v1::KIND_REQUEST, sent + 1, "echo.m",
                                   blob)))
    ++sent;
  INFO(sent << " requests sent");
  CHECK(peer.hung_up(15s));
  CHECK(node.process->wait_for_line_containing("does not read its answers"));
  // Its link's queue and the answers held for it: two budgets, and slack
  // for the requests in flight and the allocator. (Not under
  // AddressSanitizer: its quarantine keeps the 120 MiB of requests and
  // answers freed meanwhile resident.)
#ifndef __SANITIZE_ADDRESS__
  CHECK(node.growth() < 2 * budget + 16 * mib);
#endif
  // The echo actor and the node's other links go on.
  still_serves(dir, "echo.m");
}

void payloads_that_grow(way by) {
  temp_dir dir;
  target_node node{dir, target_args(by, {"--max-queued",
                                         std::to_string(budget), "gate",
                                         "echo.m"})};
  auto peer = attack(dir, by);
  REQUIRE(peer->connected());
  REQUIRE(peer->say_hello());
  // Trees of 64 Ki empty children: 128 KiB each on the wire, about 4 MiB
  // each parsed. The gate holds the first; the others wait in its mailbox.
  tpb::Tree tree;
  for (int i = 0; i < (64 << 10); ++i)
    tree.add_children();
  auto post = envelope(v1::KIND_POST, 0, "gate", tree);
  std::size_t sent = 0;
  auto until = std::chrono::steady_clock::now() + 30s;
  // 96 of them are 12 MiB on the wire, 350 MiB parsed; the node stops
  // reading (send_all stalls) once its budget is spent.
  while (sent < 96 && std::chrono::steady_clock::now() < until
         && peer->send_all(post, 3s))
    ++sent;
  INFO(sent << " posts sent");
  // What the node holds: the budget, one message over it, the socket
  // buffers and slack for the allocator.
  CHECK(node.growth() < 2 * budget + 24 * mib);
  still_serves(dir, "echo.m");
}

} // namespace

TEST_CASE("a peer that does not read its answers loses its link",
          "[pipe][memory][integration]") {
  unread_answers(way::pipe);
}

TEST_CASE("a TCP peer that does not read its answers loses its link",
          "[tcp][memory][integration]") {
  unread_answers(way::tcp);
}

TEST_CASE("a TLS peer that does not read its answers loses its link",
          "[tcp][tls][memory][integration]") {
  // As over plaintext: TLS adds its read-ahead and record buffers per link
  // (docs/operations.md), not a way around the budget.
  temp_dir dir;
  auto certs = mint_certs(dir, {"target", "intruder"});
  target_node node{dir, {"--with-tcp", "--tls", certs, "--max-queued",
                         std::to_string(budget), "echo.m"}};
  int port = 0;
  {
    local_node observer{dir, "observer", {}, false};
    port = tcp_port_of(*observer.instance, "target");
  }
  tls_attacker peer{port, tls_files_of(certs, "intruder")};
  unread_answers_from(dir, node, peer);
}

TEST_CASE("messages waiting for an actor are counted at their parsed size",
          "[pipe][memory][integration]") {
  payloads_that_grow(way::pipe);
}

TEST_CASE("messages from a TCP peer are counted at their parsed size",
          "[tcp][memory][integration]") {
  payloads_that_grow(way::tcp);
}

TEST_CASE("a durable transfer is counted at its parsed size",
          "[pipe][memory][durable][integration]") {
  temp_dir dir, store;
  target_node node{dir, {"--max-queued", std::to_string(budget), "--durable",
                         store.path(), "echo.m"}};
  auto peer = attack(dir, way::pipe);
  REQUIRE(peer->connected());
  REQUIRE(peer->say_hello());
  // 128 Ki empty items: 256 KiB on the wire, about 16 MiB parsed, over
  // the link's budget of 8 MiB: refused before anything is stored.
  v1::DurableTransfer transfer;
  for (int i = 0; i < (128 << 10); ++i)
    transfer.add_items();
  auto request = envelope(v1::KIND_REQUEST, 7, "echo.m", transfer);
  REQUIRE(peer->send_all(request, 3s));
  CHECK(node.process->wait_for_line_containing("over the link's budget"));
  CHECK(node.growth() < 2 * budget + 24 * mib);
  still_serves(dir, "echo.m");
}

TEST_CASE("before the hello a link takes only a hello-sized frame",
          "[pipe][memory][integration]") {
  temp_dir dir;
  target_node node{dir, {"echo.m"}};
  // 40 connections, each announcing a frame just under the 4 MiB limit and
  // sending its first bytes: 160 MiB if the node made room for them.
  std::vector<std::unique_ptr<raw_client>> peers;
  auto head = std::string("\xc0\xff\x3f\x00", 4) + std::string(4096, 'x');
  for (int i = 0; i < 40; ++i) {
    peers.push_back(std::make_unique<raw_client>(endpoint(dir, "target")));
    REQUIRE(peers.back()->connected());
    peers.back()->send_bytes(head);
  }
  for (auto& peer : peers)
    CHECK(peer->hung_up(10s));
  CHECK(node.process->wait_for_line_containing("over the limit of 16384"));
  CHECK(node.growth() < 16 * mib);
  peers.clear();
  still_serves(dir, "echo.m");
}

TEST_CASE("accepted links that have not said hello are capped per node",
          "[pipe][memory][integration]") {
  temp_dir dir;
  // A long handshake deadline: only the cap closes links in this test.
  local_node node{dir, "target", [](node_config& config) {
                    config.handshake_timeout = 60s;
                    config.transports.pop_back(); // the pipe only
                  }};
  REQUIRE(node->spawn("adder", adder));
  constexpr int cap = 32; // docs/operations.md
  std::vector<std::unique_ptr<raw_client>> silent;
  for (int i = 0; i < cap; ++i) {
    silent.push_back(std::make_unique<raw_client>(endpoint(dir, "target")));
    REQUIRE(silent.back()->connected());
  }
  // Each of these is closed as it comes.
  for (int i = 0; i < 8; ++i) {
    raw_client extra{endpoint(dir, "target")};
    REQUIRE(extra.connected());
    CHECK(extra.hung_up(5s));
  }
  CHECK(eventually([&] {
    for (auto& line : node.lines->items())
      if (line.find("have not said hello yet (the limit)") != std::string::npos)
        return true;
    return false;
  }, 5s));
  // The first ones were not touched; once they go, others get in again.
  for (auto& peer : silent)
    CHECK_FALSE(peer->hung_up(0ms));
  silent.clear();
  CHECK(eventually([&] {
    local_node friendly{dir, "friendly", {}, false};
    return bool(friendly->send<tpb::Sum>("adder", add(2, 2), 5s));
  }, 20s));
}

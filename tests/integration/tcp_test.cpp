// The TCP tier between real processes on the loopback: TLS refusals before
// anything is parsed, liveness (a silent peer is unreachable within the
// bound, a killed one is down), and hostile clients.

#include <sys/resource.h>

#include <future>
#include <signal.h>

#include "cert.hpp"
#include "local_node.hpp"
#include "tcp_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

constexpr auto bound = 600ms; // the tests' detection bound

/// A node in this process whose only tier is TCP with `settings`.
local_node tcp_node(const temp_dir& dir, const std::string& name,
                    tcp::options settings = {}) {
  return local_node{dir, name, [&](node_config& config) {
                      config.transports = {{"tcp", tcp::factory(settings)}};
                    }};
}

tcp::options quick_liveness() {
  tcp::options out;
  out.heartbeat = 100ms;
  out.unreachable_after = bound;
  return out;
}

std::vector<std::string> quick_liveness_args(std::vector<std::string> more) {
  std::vector<std::string> args{"--tcp", "--heartbeat", "100",
                                "--unreachable-after", "600"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

/// Whether a TLS client with `files` is refused (the handshake fails, or the
/// server ends the connection at once) rather than let in to say hello.
bool refused(int port, const tcp::tls_files& files) {
  tcp_client client{port};
  REQUIRE(client.connected());
  return client.tls_outcome(files) == tcp_client::outcome::refused;
}

} // namespace

TEST_CASE("plaintext TCP off the loopback is refused unless allowed",
          "[tcp]") {
  temp_dir dir;
  node_config config;
  config.directory = dir.path();
  tcp::options settings;
  settings.listen = "0.0.0.0:0";
  config.transports = {{"tcp", tcp::factory(settings)}};
  auto started = node::start(config);
  REQUIRE_FALSE(started);
  CHECK(started.code() == errc::failed_precondition);
  CHECK_THAT(started.error().message(), Catch::Contains("without TLS"));

  settings.allow_plaintext = true;
  config.transports = {{"tcp", tcp::factory(settings)}};
  CHECK(node::start(config));
}

TEST_CASE("TLS refuses plaintext, no certificate, another CA and an expired "
          "certificate before anything is parsed",
          "[tcp][tls]") {
  temp_dir dir;
  auto certs = mint_certs(dir, {"here", "peer"});
  auto other = mint_certs(dir, {"peer"}, "other-ca");
  cert::node_request expired;
  expired.name = "peer";
  expired.ca = certs;
  expired.out = dir.path() + "/expired";
  expired.not_before = -48h;
  expired.not_after = -1h;
  REQUIRE(cert::make_node_certificate(expired));

  tcp::options settings;
  settings.tls = tls_files_of(certs, "here");
  auto here = tcp_node(dir, "here", settings);
  auto port = tcp_port_of(*here.instance, "here");

  SECTION("a certificate of its CA gets to the hello") {
    tcp_client client{port};
    CHECK(client.tls_outcome(tls_files_of(certs, "peer"))
          == tcp_client::outcome::open);
  }
  SECTION("a plaintext client is closed") {
    tcp_client client{port};
    client.send_bytes(tcp_client::framed("hello, plainly"));
    CHECK(client.closed_by_peer());
  }
  SECTION("a client without a certificate is refused") {
    CHECK(refused(port, {"", "", certs + "/ca.pem"}));
  }
  SECTION("a certificate of another CA is refused") {
    CHECK(refused(port, tls_files_of(other, "peer")));
  }
  SECTION("an expired certificate is refused") {
    CHECK(refused(port, {expired.out.string() + "/peer.pem",
                         expired.out.string() + "/peer.key",
                         certs + "/ca.pem"}));
  }
  // Nothing got as far as a link.
  CHECK(here->routes().empty());
}

TEST_CASE("nodes link over mutual TLS, and the route says so", "[tcp][tls]") {
  temp_dir dir;
  auto certs = mint_certs(dir, {"here", "peer"});
  auto peer = start_test_node(dir, "peer", {"--tcp", "--tls", certs, "echo.p"});
  tcp::options settings;
  settings.tls = tls_files_of(certs, "here");
  auto here = tcp_node(dir, "here", settings);
  auto pong = here->send<tpb::Pong>("echo.p", ping(7), 5s);
  REQUIRE(pong);
  CHECK((*pong)->seq() == 7);
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "tcp");
}

TEST_CASE("a node whose certificate names another node is not linked",
          "[tcp][tls]") {
  temp_dir dir;
  // "peer" presents the certificate of "impostor": valid, from the right
  // CA, but it does not name the node the directory lists.
  auto certs = mint_certs(dir, {"here", "impostor"});
  std::filesystem::copy_file(certs + "/impostor.pem", certs + "/peer.pem");
  std::filesystem::copy_file(certs + "/impostor.key", certs + "/peer.key");
  auto peer = start_test_node(dir, "peer", {"--tcp", "--tls", certs, "echo.p"});
  tcp::options settings;
  settings.tls = tls_files_of(certs, "here");
  auto here = tcp_node(dir, "here", settings);
  auto pong = here->send("echo.p", ping(1), 5s);
  REQUIRE_FALSE(pong);
  CHECK(pong.code() == errc::permission_denied);
  CHECK(logged(*here.lines, "does not name node 'peer'"));
}

TEST_CASE("a silent peer is unreachable within the bound, its calls fail, "
          "and it is reached again once it speaks",
          "[tcp][liveness]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer",
                              quick_liveness_args({"echo.p", "sloth"}));
  auto here = tcp_node(dir, "here", quick_liveness());
  REQUIRE(here->send<tpb::Pong>("echo.p", ping(1), 5s));
  probe<down_notice> downs;
  REQUIRE(here->monitor("sloth", [&](const down_notice& n) { downs.push(n); }));
  // A call that the sloth never answers: it must end with the link.
  auto call = std::async(std::launch::async, [&] {
    return here->send("sloth", tpb::Hold{}, 30s);
  });

  ::kill(peer->pid(), SIGSTOP);
  auto frozen = std::chrono::steady_clock::now();
  REQUIRE(downs.wait_for_count(1, 10s));
  auto detected = std::chrono::steady_clock::now() - frozen;
  CHECK(downs.items()[0].reason == down_reason::unreachable);
  // The bound, plus a tick and a loaded machine's slack.
  CHECK(detected < bound + 1500ms);
  REQUIRE(call.wait_for(5s) == std::future_status::ready);
  CHECK(call.get().code() == errc::unavailable);

  ::kill(peer->pid(), SIGCONT);
  CHECK(eventually(
    [&] { return static_cast<bool>(here->send("echo.p", ping(2), 1s)); },
    10s));
}

TEST_CASE("a remote node killed is reported node_down", "[tcp][liveness]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", quick_liveness_args({"sloth"}));
  auto here = tcp_node(dir, "here", quick_liveness());
  probe<down_notice> downs;
  REQUIRE(here->monitor("sloth", [&](const down_notice& n) { downs.push(n); }));
  REQUIRE(eventually([&] { return !here->routes().empty(); }));
  ::kill(peer->pid(), SIGKILL);
  REQUIRE(downs.wait_for_count(1, 5s));
  CHECK(downs.items()[0].reason == down_reason::node_down);
}

TEST_CASE("bad bytes over TCP close the connection and nothing else",
          "[tcp][faults]") {
  temp_dir dir;
  auto here = tcp_node(dir, "here");
  auto port = tcp_port_of(*here.instance, "here");
  SECTION("a huge length prefix") {
    tcp_client client{port};
    client.send_bytes(std::string{"\xf0\xff\xff\xff", 4});
    CHECK(client.closed_by_peer());
  }
  SECTION("garbage") {
    tcp_client client{port};
    client.send_bytes("GET / HTTP/1.1\r\nHost: courier\r\n\r\n");
    CHECK(client.closed_by_peer());
  }
  SECTION("a frame cut short, then silence") {
    tcp_client client{port};
    client.send_bytes(std::string{"\x64\x00\x00\x00", 4} + "cut");
    // The handshake deadline ends it (2 s by default).
    CHECK(client.closed_by_peer(10s));
  }
  // The node serves on.
  auto peer = start_test_node(dir, "peer", {"--tcp", "echo.p"});
  CHECK(here->send<tpb::Pong>("echo.p", ping(3), 5s));
}

TEST_CASE("a thousand connections that never finish the TLS handshake do "
          "not shut out a real peer",
          "[tcp][tls][faults]") {
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = std::max<rlim_t>(files.rlim_cur,
                                    std::min<rlim_t>(files.rlim_max, 4096));
  ::setrlimit(RLIMIT_NOFILE, &files);
  temp_dir dir;
  auto certs = mint_certs(dir, {"here", "peer"});
  auto peer = start_test_node(dir, "peer", {"--tcp", "--tls", certs, "echo.p"});
  tcp::options settings;
  settings.tls = tls_files_of(certs, "here");
  auto here = tcp_node(dir, "here", settings);
  auto port = tcp_port_of(*here.instance, "peer");
  std::vector<std::unique_ptr<tcp_client>> idle;
  auto count = files.rlim_cur >= 2048 ? 1000 : 200;
  for (int i = 0; i < count; ++i) {
    idle.push_back(std::make_unique<tcp_client>(port));
    REQUIRE(idle.back()->connected());
  }
  auto pong = here->send<tpb::Pong>("echo.p", ping(4), 10s);
  REQUIRE(pong);
  CHECK((*pong)->seq() == 4);
}

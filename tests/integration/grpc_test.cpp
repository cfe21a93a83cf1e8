// The gRPC tier between real processes: TLS refusals before anything is
// parsed, hostile raw gRPC peers (an oversized message closes the link and
// the node's memory stays within its budget), liveness (a killed peer is
// down at once, a frozen one unreachable within the bound), and nodes on
// two hosts (network namespaces) linked by gRPC alone.

#include <signal.h>

#include <fstream>
#include <future>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>

#include "courier/grpc_tier/grpc_transport.hpp"
#include "local_node.hpp"
#include "netns.hpp"
#include "tcp_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

constexpr auto bound = 600ms; // the tests' detection bound

/// A node in this process whose only tier is gRPC with `settings`.
local_node grpc_node(const temp_dir& dir, const std::string& name,
                     grpc_tier::options settings = {}) {
  return local_node{dir, name, [&](node_config& config) {
                      config.transports
                        = {{"grpc", grpc_tier::factory(settings)}};
                      config.rules = {{"anonymous", "*", verbs::all}};
                    }};
}

/// host:port of a node's gRPC endpoint, as its record publishes it.
std::string grpc_endpoint_of(node& n, const std::string& name) {
  for (const auto& info : n.nodes()) {
    if (info.name != name)
      continue;
    for (std::size_t i = 0; i < info.tiers.size(); ++i)
      if (info.tiers[i] == "grpc") {
        auto address = info.addresses.at(i);
        address = address.substr(address.find("://") + 3);
        return address.substr(0, address.find('/'));
      }
  }
  FAIL("node " << name << " publishes no gRPC endpoint");
  return {};
}

/// A file's contents.
std::string text_of(const std::string& path) {
  std::ifstream in{path};
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

/// A gRPC client written by hand, calling the link method with raw
/// messages: what a hostile peer can do without Courier's runtime.
class raw_link_client {
public:
  /// Plaintext, or TLS with `files` (an empty certificate: none) and the
  /// server's certificate checked to name `node`.
  explicit raw_link_client(const std::string& target,
                           const tls_files* files = nullptr,
                           const std::string& node = {}) {
    ::grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxSendMessageSize(-1);
    std::shared_ptr<::grpc::ChannelCredentials> credentials;
    if (files != nullptr) {
      ::grpc::SslCredentialsOptions tls;
      tls.pem_root_certs = text_of(files->ca);
      if (!files->certificate.empty()) {
        tls.pem_cert_chain = text_of(files->certificate);
        tls.pem_private_key = text_of(files->private_key);
      }
      args.SetSslTargetNameOverride(node);
      credentials = ::grpc::SslCredentials(tls);
    } else {
      credentials = ::grpc::InsecureChannelCredentials();
    }
    channel_ = ::grpc::CreateCustomChannel(target, credentials, args);
    stub_.emplace(channel_);
  }

  ~raw_link_client() {
    if (stream_) {
      context_.TryCancel();
      drain(2s);
    }
  }

  /// Calls the link method; true once the server has opened the stream
  /// (sent its initial metadata) within `timeout`.
  bool open(std::chrono::milliseconds timeout = 3s) {
    stream_ = stub_->PrepareCall(&context_, grpc_tier::link_method, &queue_);
    stream_->StartCall(tag(1));
    if (!next(1, timeout))
      return false;
    stream_->ReadInitialMetadata(tag(2));
    return next(2, timeout);
  }

  /// Writes one message of `bytes`; true if gRPC took it.
  bool send(const std::string& bytes, std::chrono::milliseconds timeout = 10s) {
    ::grpc::Slice slice{bytes.data(), bytes.size()};
    ::grpc::ByteBuffer message{&slice, 1};
    stream_->Write(message, tag(3));
    return next(3, timeout);
  }

  /// The call's status once the server ends it (within `timeout`).
  std::optional<::grpc::Status> status(std::chrono::milliseconds timeout = 10s) {
    stream_->Finish(&status_, tag(4));
    if (!drain(timeout))
      return std::nullopt;
    return status_;
  }

private:
  static void* tag(std::intptr_t n) {
    return reinterpret_cast<void*>(n);
  }

  /// Waits for the completion of `wanted`; its ok, false on timeout.
  bool next(std::intptr_t wanted, std::chrono::milliseconds timeout) {
    auto until = std::chrono::system_clock::now() + timeout;
    for (;;) {
      void* got = nullptr;
      bool ok = false;
      auto state = queue_.AsyncNext(&got, &ok, until);
      if (state != ::grpc::CompletionQueue::GOT_EVENT)
        return false;
      if (got == tag(wanted))
        return ok;
      if (got == tag(4))
        finished_ = true;
    }
  }

  /// Waits for the call's end (tag 4), then empties the queue.
  bool drain(std::chrono::milliseconds timeout) {
    bool ended = finished_ || next(4, timeout);
    finished_ = true;
    stream_.reset();
    queue_.Shutdown();
    void* got = nullptr;
    bool ok = false;
    while (queue_.Next(&got, &ok)) {
    }
    return ended;
  }

  std::shared_ptr<::grpc::Channel> channel_;
  std::optional<::grpc::GenericStub> stub_;
  ::grpc::ClientContext context_;
  ::grpc::CompletionQueue queue_;
  std::unique_ptr<::grpc::GenericClientAsyncReaderWriter> stream_;
  ::grpc::Status status_;
  bool finished_ = false;
};

/// A process's peak resident memory (VmHWM), in bytes.
std::size_t peak_memory(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0)
      return std::stoull(line.substr(6)) * 1024;
  return 0;
}

std::vector<std::string> quick_liveness_args(std::vector<std::string> more) {
  std::vector<std::string> args{"--grpc", "--heartbeat", "100",
                                "--unreachable-after", "600"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

grpc_tier::options quick_liveness() {
  grpc_tier::options out;
  out.heartbeat = 100ms;
  out.unreachable_after = bound;
  return out;
}

} // namespace

TEST_CASE("plaintext gRPC off the loopback is refused unless allowed",
          "[grpc]") {
  temp_dir dir;
  node_config config;
  config.directory = dir.path();
  grpc_tier::options settings;
  settings.listen = "0.0.0.0:0";
  settings.advertise = "127.0.0.1:0";
  config.transports = {{"grpc", grpc_tier::factory(settings)}};
  auto started = node::start(config);
  REQUIRE_FALSE(started);
  CHECK(started.code() == errc::failed_precondition);
  CHECK_THAT(started.error().message(), Catch::Contains("without TLS"));

  settings.allow_plaintext = true;
  config.transports = {{"grpc", grpc_tier::factory(settings)}};
  CHECK(node::start(config));
}

TEST_CASE("gRPC with TLS refuses plaintext, no certificate and another CA "
          "before a link is made",
          "[grpc][tls]") {
  temp_dir dir;
  auto certs = mint_certs(dir, {"here", "peer"});
  auto other = mint_certs(dir, {"peer"}, "other-ca");
  grpc_tier::options settings;
  settings.tls = tls_files_of(certs, "here");
  auto here = grpc_node(dir, "here", settings);
  auto target = grpc_endpoint_of(*here.instance, "here");

  SECTION("a certificate of its CA opens a link stream") {
    auto files = tls_files_of(certs, "peer");
    raw_link_client client{target, &files, "here"};
    CHECK(client.open());
  }
  SECTION("a plaintext client is not served") {
    raw_link_client client{target};
    CHECK_FALSE(client.open(1s));
  }
  SECTION("a client without a certificate is refused") {
    tls_files files{"", "", certs + "/ca.pem"};
    raw_link_client client{target, &files, "here"};
    CHECK_FALSE(client.open(1s));
  }
  SECTION("a certificate of another CA is refused") {
    auto files = tls_files_of(other, "peer");
    files.ca = certs + "/ca.pem"; // it trusts the server; not the reverse
    raw_link_client client{target, &files, "here"};
    CHECK_FALSE(client.open(1s));
  }
  // Only the client with the right certificate got as far as a link, and
  // it never said hello: no route.
  CHECK(here->routes().empty());
}

TEST_CASE("nodes link over gRPC with mutual TLS, and the route says so",
          "[grpc][tls]") {
  temp_dir dir;
  auto certs = mint_certs(dir, {"here", "peer"});
  auto peer = start_test_node(dir, "peer", {"--grpc", "--tls", certs, "echo.p"});
  grpc_tier::options settings;
  settings.tls = tls_files_of(certs, "here");
  auto here = local_node{dir, "here", [&](node_config& config) {
                           config.transports
                             = {{"grpc", grpc_tier::factory(settings)}};
                         }};
  auto pong = here->send<tpb::Pong>("echo.p", ping(7), 5s);
  REQUIRE(pong);
  CHECK((*pong)->seq() == 7);
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "grpc");
}

TEST_CASE("the gRPC tier ranks below TCP unless preferred", "[grpc]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer",
                              {"--grpc", "--with-tcp", "echo.p"});
  auto both = [](node_config& config) {
    config.transports = {{"grpc", grpc_tier::factory()},
                         {"tcp", tcp::factory()}};
    config.rules = {{"anonymous", "*", verbs::all}};
  };
  SECTION("by default, TCP") {
    local_node here{dir, "here", both};
    REQUIRE(here->send<tpb::Pong>("echo.p", ping(1), 5s));
    auto routes = here->routes();
    REQUIRE(routes.size() == 1);
    CHECK(routes[0].tier == "tcp");
  }
  SECTION("preferred by configuration, gRPC") {
    local_node here{dir, "here", [&](node_config& config) {
                      both(config);
                      config.preferred_tiers = {{"pe*", "grpc"}};
                    }};
    REQUIRE(here->send<tpb::Pong>("echo.p", ping(1), 5s));
    auto routes = here->routes();
    REQUIRE(routes.size() == 1);
    CHECK(routes[0].tier == "grpc");
    CHECK_THAT(routes[0].note, Catch::Contains("chosen by configuration"));
  }
}

TEST_CASE("an oversized message from a raw gRPC peer closes its link, and "
          "the node holds no more than its budget",
          "[grpc][faults]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", {"--grpc", "echo.p"});
  local_node looker{dir, "looker", [](node_config& config) {
                      config.transports = {{"pipe", pipe::factory()}};
                    }};
  auto target = grpc_endpoint_of(*looker.instance, "peer");
  auto before = peak_memory(peer->pid());
  REQUIRE(before > 0);

  SECTION("over the hello limit, before the hello") {
    raw_link_client client{target};
    REQUIRE(client.open());
    client.send(std::string(1u << 20, 'h'));
    auto status = client.status();
    REQUIRE(status);
    CHECK(status->error_code() == ::grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  SECTION("over the frame limit (64 MiB against 4 MiB)") {
    raw_link_client client{target};
    REQUIRE(client.open());
    client.send(std::string(64u << 20, 'h'));
    auto status = client.status();
    REQUIRE(status);
    CHECK(status->error_code() != ::grpc::StatusCode::OK);
  }
  SECTION("garbage on the link method") {
    raw_link_client client{target};
    REQUIRE(client.open());
    CHECK(client.send("not a hello"));
    // The node ends the call (it finishes the stream: the link is closed).
    CHECK(client.status(10s));
  }
  // gRPC 1.51 reads a message whole before it checks its size: what stops
  // the 64 MiB one is the tier's memory quota, max(8 x 4 MiB, 32 MiB) for
  // all its connections (without it the node grew by the whole message).
  auto grown = peak_memory(peer->pid()) - before;
  INFO("peak memory grew by " << grown << " bytes");
#ifndef __SANITIZE_ADDRESS__
  CHECK(grown < (44u << 20));
#else
  // AddressSanitizer's redzones and quarantine keep more resident (49 MiB
  // measured); still short of the 64 MiB message the quota kept out.
  CHECK(grown < (58u << 20));
#endif
  // The node serves on.
  auto here = grpc_node(dir, "here");
  CHECK(here->send<tpb::Pong>("echo.p", ping(3), 5s));
}

TEST_CASE("a call to another method of the gRPC tier is unimplemented",
          "[grpc][faults]") {
  temp_dir dir;
  auto here = grpc_node(dir, "here");
  auto channel = ::grpc::CreateChannel(grpc_endpoint_of(*here.instance, "here"),
                                       ::grpc::InsecureChannelCredentials());
  ::grpc::GenericStub stub{channel};
  ::grpc::ClientContext context;
  ::grpc::Slice slice{std::string{"x"}};
  ::grpc::ByteBuffer request{&slice, 1};
  ::grpc::ByteBuffer reply;
  std::promise<::grpc::Status> done;
  stub.UnaryCall(&context, "/courier.v1.Link/Other", ::grpc::StubOptions{},
                 &request, &reply,
                 [&](::grpc::Status s) { done.set_value(std::move(s)); });
  auto status = done.get_future();
  REQUIRE(status.wait_for(5s) == std::future_status::ready);
  CHECK(status.get().error_code() == ::grpc::StatusCode::UNIMPLEMENTED);
}

TEST_CASE("a peer killed over gRPC is reported node_down at once",
          "[grpc][liveness]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", quick_liveness_args({"sloth"}));
  auto here = grpc_node(dir, "here", quick_liveness());
  probe<down_notice> downs;
  REQUIRE(here->monitor("sloth", [&](const down_notice& n) { downs.push(n); }));
  REQUIRE(eventually([&] { return !here->routes().empty(); }));
  auto sent_before = here->routes().at(0).messages_out;
  auto call = std::async(std::launch::async, [&] {
    return here->send("sloth", tpb::Hold{}, 30s);
  });
  // The call is on the link before the peer dies (killed sooner, the name
  // is gone when the send looks it up: not_found, another case).
  REQUIRE(eventually(
    [&] { return here->routes().at(0).messages_out > sent_before; }));
  ::kill(peer->pid(), SIGKILL);
  auto killed = std::chrono::steady_clock::now();
  REQUIRE(downs.wait_for_count(1, 5s));
  auto noticed = std::chrono::steady_clock::now() - killed;
  CHECK(downs.items()[0].reason == down_reason::node_down);
  // The connection closes with the process: well within the silence bound.
  CHECK(noticed < bound);
  REQUIRE(call.wait_for(5s) == std::future_status::ready);
  CHECK(call.get().code() == errc::unavailable);
}

TEST_CASE("a frozen peer over gRPC is unreachable within the bound, and "
          "reached again once it thaws",
          "[grpc][liveness]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer",
                              quick_liveness_args({"echo.p", "sloth"}));
  auto here = grpc_node(dir, "here", quick_liveness());
  REQUIRE(here->send<tpb::Pong>("echo.p", ping(1), 5s));
  probe<down_notice> downs;
  REQUIRE(here->monitor("sloth", [&](const down_notice& n) { downs.push(n); }));
  ::kill(peer->pid(), SIGSTOP);
  auto frozen = std::chrono::steady_clock::now();
  REQUIRE(downs.wait_for_count(1, 10s));
  auto detected = std::chrono::steady_clock::now() - frozen;
  CHECK(downs.items()[0].reason == down_reason::unreachable);
  CHECK(detected < bound + 1500ms);
  ::kill(peer->pid(), SIGCONT);
  CHECK(eventually(
    [&] { return static_cast<bool>(here->send("echo.p", ping(2), 1s)); },
    10s));
}

TEST_CASE("nodes on two hosts link over gRPC and mutual TLS alone",
          "[grpc][hosts]") {
  if (!netns_pair::available()) {
    WARN("skipped: network namespaces need root, ip and nft");
    return;
  }
  temp_dir dir;
  auto certs = mint_certs(dir, {"here", "peer"});
  netns_pair hosts;
  REQUIRE(hosts.ok());
  std::vector<std::string> flags{"--grpc", "--tls", certs, "--heartbeat",
                                 "100", "--unreachable-after", "600"};
  auto peer_flags = flags;
  for (auto more : {"--grpc-listen", "10.77.0.2:0", "echo.p", "adder"})
    peer_flags.push_back(more);
  auto peer = start_test_node(dir, "peer", peer_flags,
                              netns_pair::in(hosts.b()));
  // "here" is a process in the other namespace: gRPC dials from threads of
  // its own, which must all be on that host.
  auto args = netns_pair::in(hosts.a());
  for (auto a : {std::string{COURIER_TEST_NODE}, std::string{"--dir"},
                 dir.path(), std::string{"--name"}, std::string{"here"}})
    args.push_back(a);
  args.insert(args.end(), flags.begin(), flags.end());
  for (auto more : {"--grpc-listen", "10.77.0.1:0", "--try", "send:echo.p:50",
                    "--try", "find:adder", "--try", "broadcast:echo.*",
                    "--try", "send:nobody@peer:1", "--try", "routes:-"})
    args.push_back(more);
  child_process here{args};
  auto sent = here.line_containing("tried send echo.p:", 30s);
  REQUIRE(sent);
  CHECK(*sent == "tried send echo.p: ok 50");
  auto found = here.line_containing("tried find adder:");
  REQUIRE(found);
  CHECK(*found == "tried find adder: peer");
  auto all = here.line_containing("tried broadcast echo.*:");
  REQUIRE(all);
  CHECK_THAT(*all, Catch::Contains("replied echo.p"));
  auto nobody = here.line_containing("tried send nobody@peer:");
  REQUIRE(nobody);
  CHECK(*nobody == "tried send nobody@peer: not_found 1");
  auto routes = here.line_containing("tried routes -:");
  REQUIRE(routes);
  CHECK(*routes == "tried routes -: peer:grpc");
  CHECK(here.wait_for_line("ready"));
}

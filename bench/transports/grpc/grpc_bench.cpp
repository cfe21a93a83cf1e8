// Courier over the gRPC tier between two processes, against a raw gRPC
// bidirectional stream echo written here (C++ client and server, the same
// channel settings), with the TCP tier beside it.
//
//   courier_bench_grpc [--runs N] [--rounds N] [--quick]
//                      [--scheduler automatic|sharing|latency|work_stealing]
//                      [--with-gateway]
//
// Each run measures, alternating which goes first: 64-byte round trips
// (p50, p99) of ctx.request("echo") from an actor to an actor in a child
// node over the gRPC tier (plaintext loopback), and the same over a raw
// stream: one ByteBuffer written on a bidi call of a generic callback
// server in a child process that writes each message back, the client
// waiting on its completion queue. Then the same Courier round trips over
// the TCP tier, against the same raw gRPC twin. Output: JSON lines with
// the medians and the medians of per-run ratios (compare.hpp).
// --with-gateway gives both Courier nodes a gRPC gateway too (gRPC's
// callback threads in their processes: they then hold gRPC's poller).

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "actor_rtt.hpp"
#include "args.hpp"
#include "bench/v1/bench.pb.h"
#include "compare.hpp"
#include "courier/courier.hpp"
#include "courier/gateway/gateway.hpp"
#include "courier/grpc_tier/grpc_transport.hpp"
#include "courier/tcp/tcp_transport.hpp"
#include "stats.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace courier::bench;

constexpr std::size_t rtt_size = 64;

/// --scheduler NAME: the Courier nodes' scheduler (diagnosis).
std::string scheduler = "automatic";

/// --with-gateway: the Courier nodes serve a gRPC gateway too.
bool with_gateway = false;

courier::scheduler_policy policy_of(const std::string& name) {
  if (name == "sharing")
    return courier::scheduler_policy::sharing;
  if (name == "work_stealing")
    return courier::scheduler_policy::work_stealing;
  if (name == "latency")
    return courier::scheduler_policy::latency;
  return courier::scheduler_policy::automatic;
}

double ns_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::nano>(clock_type::now() - t)
    .count();
}

[[noreturn]] void fail(const std::string& why) {
  std::cerr << "courier_bench_grpc: " << why << "\n";
  std::exit(1);
}

std::string self_path() {
  char path[4096];
  auto n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  path[n > 0 ? n : 0] = '\0';
  return path;
}

/// A child running this program with `args`; its first line kept. It ends
/// when we close its stdin.
class child {
public:
  explicit child(std::vector<std::string> args) {
    args.insert(args.begin(), self_path());
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
      fail("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      std::vector<char*> argv;
      for (auto& a : args)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_ = in[1];
    from_ = out[0];
    char c;
    while (::read(from_, &c, 1) == 1 && c != '\n')
      first_line_ += c;
    if (first_line_.empty())
      fail("a child did not start");
  }

  ~child() {
    ::close(to_);
    ::close(from_);
    ::waitpid(pid_, nullptr, 0);
  }

  child(const child&) = delete;
  child& operator=(const child&) = delete;

  const std::string& first_line() const {
    return first_line_;
  }

private:
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  std::string first_line_;
};

void wait_for_stdin_end() {
  std::string line;
  while (std::getline(std::cin, line)) {
  }
}

// -- the raw twin ------------------------------------------------------------

/// The channel settings of the gRPC tier's dialer (grpc_transport.cpp).
::grpc::ChannelArguments channel_settings() {
  ::grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(4 << 20);
  args.SetMaxSendMessageSize(4 << 20);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 3000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  return args;
}

/// Writes every message back, one at a time.
class echo_reactor final : public ::grpc::ServerGenericBidiReactor {
public:
  echo_reactor() {
    StartRead(&message_);
  }
  void OnReadDone(bool ok) override {
    if (!ok)
      return Finish(::grpc::Status::OK);
    StartWrite(&message_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok)
      return Finish(::grpc::Status::CANCELLED);
    StartRead(&message_);
  }
  void OnDone() override {
    delete this;
  }

private:
  ::grpc::ByteBuffer message_;
};

class echo_service final : public ::grpc::CallbackGenericService {
  ::grpc::ServerGenericBidiReactor*
  CreateReactor(::grpc::GenericCallbackServerContext*) override {
    return new echo_reactor;
  }
};

int raw_serve() {
  echo_service service;
  int port = 0;
  ::grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", ::grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterCallbackGenericService(&service);
  builder.SetMaxReceiveMessageSize(4 << 20);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1);
  auto server = builder.BuildAndStart();
  if (!server)
    return 1;
  std::cout << port << std::endl;
  wait_for_stdin_end();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds{1});
  return 0;
}

/// One bidi call to the raw echo, driven from this thread.
class raw_stream {
public:
  raw_stream()
    : server_{{"--serve-raw"}},
      channel_(::grpc::CreateCustomChannel(
        "127.0.0.1:" + server_.first_line(),
        ::grpc::InsecureChannelCredentials(), channel_settings())),
      stub_(channel_) {
    stream_ = stub_.PrepareCall(&context_, "/bench.Echo/Bidi", &queue_);
    stream_->StartCall(tag(1));
    if (!next(1))
      fail("the raw echo did not answer");
  }

  ~raw_stream() {
    context_.TryCancel();
    ::grpc::Status ignored;
    stream_->Finish(&ignored, tag(9));
    next(9);
    queue_.Shutdown();
    void* got;
    bool ok;
    while (queue_.Next(&got, &ok)) {
    }
  }

  std::vector<double> rtt(int rounds) {
    std::string pad(rtt_size, 'x');
    std::vector<double> out;
    ::grpc::ByteBuffer back;
    for (int i = 0; i < rounds; ++i) {
      auto t = clock_type::now();
      ::grpc::Slice slice{pad.data(), pad.size()};
      ::grpc::ByteBuffer message{&slice, 1};
      stream_->Write(message, tag(2));
      stream_->Read(&back, tag(3));
      if (!both())
        fail("the raw echo failed");
      out.push_back(ns_since(t));
    }
    return out;
  }

private:
  static void* tag(std::intptr_t n) {
    return reinterpret_cast<void*>(n);
  }

  /// Waits for the completion of `wanted`; its ok.
  bool next(std::intptr_t wanted) {
    void* got = nullptr;
    bool ok = false;
    while (queue_.Next(&got, &ok))
      if (got == tag(wanted))
        return ok;
    return false;
  }

  /// Waits for the write (2) and the read (3) of one round trip, in
  /// whichever order they complete.
  bool both() {
    int seen = 0;
    void* got = nullptr;
    bool ok = false;
    while (seen < 2 && queue_.Next(&got, &ok)) {
      if (!ok)
        return false;
      if (got == tag(2) || got == tag(3))
        ++seen;
    }
    return seen == 2;
  }

  child server_;
  std::shared_ptr<::grpc::Channel> channel_;
  ::grpc::GenericStub stub_;
  ::grpc::ClientContext context_;
  ::grpc::CompletionQueue queue_;
  std::unique_ptr<::grpc::GenericClientAsyncReaderWriter> stream_;
};

// -- Courier -------------------------------------------------------------------

courier::node_config config_for(const std::string& name, const std::string& dir,
                                const std::string& tier) {
  courier::node_config config;
  config.scheduler = policy_of(scheduler);
  config.name = name;
  config.directory = dir;
  if (tier == "grpc")
    config.transports = {{"grpc", courier::grpc_tier::factory()}};
  else
    config.transports = {{"tcp", courier::tcp::factory()}};
  config.rules = {{"anonymous", "*", courier::verbs::all}};
  if (with_gateway)
    config.plugins = {{"gateway", courier::gateway::plugin({})}};
  return config;
}

int courier_serve(const std::string& dir, const std::string& tier) {
  auto self = courier::node::start(config_for("bench-server-" + tier, dir, tier));
  if (!self) {
    std::cerr << self.error().to_string() << "\n";
    return 1;
  }
  auto echo = self->spawn("echo", [](courier::context&) {
    return courier::behavior{
      [](std::shared_ptr<const bench::v1::Ping> p) { return p; }};
  });
  if (!echo)
    return 1;
  std::cout << "ready" << std::endl;
  wait_for_stdin_end();
  return 0;
}

struct courier_peer {
  courier_peer(const std::string& folder, const std::string& tier_name)
    : tier(tier_name), dir(folder) {
    std::vector<std::string> args{"--serve-courier", dir, tier,
                                  "--scheduler", scheduler};
    if (with_gateway)
      args.emplace_back("--with-gateway");
    server.emplace(std::move(args));
    auto started = courier::node::start(config_for("bench-client", dir, tier));
    if (!started)
      fail(started.error().to_string());
    client.emplace(std::move(*started));
    bench::v1::Ping ping;
    ping.set_pad("warm");
    if (!client->send("echo", ping, std::chrono::seconds{10}))
      fail("the Courier peer does not answer over " + tier);
  }

  ~courier_peer() {
    client.reset();
    server.reset();
  }

  std::string tier;
  std::string dir;
  std::optional<child> server;
  std::optional<courier::node> client;
};

std::vector<double> courier_rtt(courier_peer& peer, int rounds, int run) {
  auto out = actor_round_trips(*peer.client, "driver" + std::to_string(run),
                               "echo", rtt_size, rounds);
  auto routes = peer.client->routes();
  if (routes.size() != 1 || routes[0].tier != peer.tier)
    fail("the route did not take the " + peer.tier + " tier");
  return out;
}

std::string make_temp_dir() {
  char pattern[] = "/tmp/courier-bench-grpc-XXXXXX";
  auto* made = ::mkdtemp(pattern);
  if (made == nullptr)
    fail("mkdtemp");
  return made;
}

} // namespace

int main(int argc, char** argv) {
  scheduler = text_arg(argc, argv, "--scheduler", "automatic");
  with_gateway = has_flag(argc, argv, "--with-gateway");
  if (argc >= 2 && std::strcmp(argv[1], "--serve-raw") == 0)
    return raw_serve();
  if (argc >= 4 && std::strcmp(argv[1], "--serve-courier") == 0)
    return courier_serve(argv[2], argv[3]);
  bool quick = has_flag(argc, argv, "--quick");
  int runs = static_cast<int>(arg(argc, argv, "--runs", quick ? 1 : 7));
  int rounds = static_cast<int>(arg(argc, argv, "--rounds", quick ? 200 : 5000));
  auto grpc_dir = make_temp_dir();
  auto tcp_dir = make_temp_dir();
  // One Courier pair alive at a time: idle nodes' polling threads would
  // take the CPUs from the pair measured.
  for (const auto& [tier, dir] :
       {std::pair{std::string{"grpc"}, grpc_dir},
        std::pair{std::string{"tcp"}, tcp_dir}}) {
    raw_stream raw;
    courier_peer peer{dir, tier};
    compare_rtt(
      "rtt", "plain", runs, rtt_size,
      [&](int i) { return courier_rtt(peer, rounds, i); },
      [&](int) { return raw.rtt(rounds); },
      tier == "grpc" ? "courier_grpc_tier" : "courier_tcp_tier",
      "raw_grpc_bidi");
  }
  std::error_code ignored;
  std::filesystem::remove_all(grpc_dir, ignored);
  std::filesystem::remove_all(tcp_dir, ignored);
  return 0;
}

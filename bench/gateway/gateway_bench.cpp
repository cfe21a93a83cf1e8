// The gRPC gateway's Send next to a raw gRPC unary echo of the same shape:
// the same service definition (courier.v1.Gateway), the same request (an
// Any holding a 64-byte Ping), a callback-API server that copies the
// request's message into the reply, on the same loopback, in the same
// process. Courier's side goes through the gateway to an actor "echo" that
// returns the message it got.
//
//   courier_bench_gateway [--runs N] [--rounds N] [--callers N]
//                         [--seconds S] [--quick]
//                         [--scheduler automatic|latency|sharing]
//
// Scenarios (alternating which side goes first, N runs; the figures to
// read are the medians of the per-run ratios):
//   send_p50/p99  one caller, round trips one after another
//   calls         --callers threads (64) calling for --seconds each run:
//                 calls per second
// Output: JSON lines.

#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include <google/protobuf/any.pb.h>
#include <grpcpp/grpcpp.h>

#include "args.hpp"
#include "bench/v1/bench.pb.h"
#include "compare.hpp"
#include "courier/courier.hpp"
#include "courier/gateway/gateway.hpp"
#include "courier/v1/gateway.grpc.pb.h"

namespace {

using namespace courier::bench;
using clock_type = std::chrono::steady_clock;
namespace gw = courier::v1;

/// The raw twin: Send answers with the request's message.
class raw_echo final : public gw::Gateway::CallbackService {
  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* call,
                                 const gw::SendRequest* request,
                                 gw::SendReply* reply) override {
    *reply->mutable_reply() = request->message();
    auto* reactor = call->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
};

gw::SendRequest echo_request() {
  bench::v1::Ping ping;
  ping.set_pad(std::string(48, 'x'));
  gw::SendRequest out;
  out.set_name("echo");
  out.mutable_message()->PackFrom(ping);
  return out;
}

bool call_once(gw::Gateway::Stub& stub, const gw::SendRequest& request) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{10});
  gw::SendReply reply;
  return stub.Send(&ctx, request, &reply).ok();
}

std::vector<double> round_trips(gw::Gateway::Stub& stub, int rounds) {
  auto request = echo_request();
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds; ++i) {
    auto t = clock_type::now();
    if (!call_once(stub, request)) {
      std::cerr << "a call failed\n";
      std::exit(1);
    }
    out.push_back(static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t)
        .count()));
  }
  return out;
}

double calls_per_second(gw::Gateway::Stub& stub, int callers, double seconds) {
  std::atomic<long> done{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  auto t = clock_type::now();
  for (int i = 0; i < callers; ++i)
    threads.emplace_back([&] {
      auto request = echo_request();
      while (!stop.load(std::memory_order_relaxed))
        if (call_once(stub, request))
          done.fetch_add(1, std::memory_order_relaxed);
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); // the measured span
  stop = true;
  for (auto& thread : threads)
    thread.join();
  auto took = std::chrono::duration<double>(clock_type::now() - t).count();
  return static_cast<double>(done.load()) / took;
}

} // namespace

int main(int argc, char** argv) {
  bool quick = has_flag(argc, argv, "--quick");
  int runs = static_cast<int>(arg(argc, argv, "--runs", quick ? 1 : 7));
  int rounds = static_cast<int>(arg(argc, argv, "--rounds", quick ? 200 : 3000));
  int callers = static_cast<int>(arg(argc, argv, "--callers", 64));
  double seconds = quick ? 0.3 : static_cast<double>(arg(argc, argv, "--seconds", 2));

  courier::node_config config;
  config.name = "bench-gateway";
  config.join_directory = false;
  std::string scheduler = text_arg(argc, argv, "--scheduler", "automatic");
  if (scheduler == "latency")
    config.scheduler = courier::scheduler_policy::latency;
  else if (scheduler == "sharing")
    config.scheduler = courier::scheduler_policy::sharing;
  if (auto workers = arg(argc, argv, "--workers", 0); workers > 0)
    config.worker_threads = static_cast<std::size_t>(workers);
  auto host = courier::node::start(config);
  if (!host) {
    std::cerr << host.error().to_string() << "\n";
    return 1;
  }
  auto echo = host->spawn("echo", [](courier::context&) {
    return courier::behavior{[](std::shared_ptr<const bench::v1::Ping> p) {
      return p; // the same object back
    }};
  });
  auto served = courier::gateway::server::start(*host);
  if (!echo || !served) {
    std::cerr << "cannot start the gateway\n";
    return 1;
  }
  raw_echo twin;
  int raw_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &raw_port);
  builder.RegisterService(&twin);
  auto raw_server = builder.BuildAndStart();
  auto stub_to = [](int port) {
    return gw::Gateway::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  };
  auto courier_stub = stub_to((*served)->port());
  auto raw_stub = stub_to(raw_port);
  round_trips(*courier_stub, 100); // channels up, caches warm
  round_trips(*raw_stub, 100);

  compare_rtt(
    "send", "plain", runs, 64,
    [&](int) { return round_trips(*courier_stub, rounds); },
    [&](int) { return round_trips(*raw_stub, rounds); }, "gateway", "raw_grpc");
  std::vector<double> c, r;
  alternate(
    runs, [&](int) { c.push_back(calls_per_second(*courier_stub, callers, seconds)); },
    [&](int) { r.push_back(calls_per_second(*raw_stub, callers, seconds)); });
  report("calls_" + std::to_string(callers) + "_callers", "plain", c, r,
         "calls_per_s", 64, "gateway", "raw_grpc");
  raw_server->Shutdown();
  return 0;
}

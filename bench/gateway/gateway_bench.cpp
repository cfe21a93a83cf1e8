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
//   unary_p50/p99 the same for /bench.v1.Echo/Ping, a method the actor
//                 "echo" serves (gateway::options::services), against a
//                 raw generic handler that parses the Ping and writes it
//                 back; both called as generated stubs call a unary method
//   calls         --callers threads (64) calling for --seconds each run:
//                 calls per second
//   post_stream   --posts (20000) PostRequests in one PostStream call,
//                 until its reply (every post taken): posts per second;
//                 the raw twin's PostStream unpacks each Any and counts it
//   open_call     (alone, --scenario open_call; once with --quick)
//                 --open (1000) Sends held open at once (to an actor that
//                 keeps them, and to a raw handler that keeps its reactor):
//                 heap bytes per open call, the client's side included in
//                 both (one malloc arena for every thread, M_ARENA_MAX)
// Output: JSON lines.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <malloc.h>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include <google/protobuf/any.pb.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/client_unary_call.h>

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

/// The raw twin: Send answers with the request's message (a Send to
/// "sloth" is held until release()); PostStream unpacks and counts.
class raw_echo final : public gw::Gateway::CallbackService {
public:
  /// Ends the held calls.
  void release() {
    std::lock_guard guard{mu_};
    for (auto* reactor : held_)
      reactor->Finish(grpc::Status::CANCELLED);
    held_.clear();
  }

  std::uint64_t taken() const {
    return taken_.load();
  }

private:
  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* call,
                                 const gw::SendRequest* request,
                                 gw::SendReply* reply) override {
    auto* reactor = call->DefaultReactor();
    if (request->name() == "sloth") {
      std::lock_guard guard{mu_};
      held_.push_back(reactor);
      return reactor;
    }
    *reply->mutable_reply() = request->message();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerReadReactor<gw::PostRequest>*
  PostStream(grpc::CallbackServerContext*,
             gw::PostStreamReply* reply) override {
    struct counting final : grpc::ServerReadReactor<gw::PostRequest> {
      counting(raw_echo& owner, gw::PostStreamReply& reply)
        : owner_(owner), reply_(reply) {
        StartRead(&request_);
      }
      void OnReadDone(bool ok) override {
        if (!ok) {
          reply_.set_posted(posted_);
          return Finish(grpc::Status::OK);
        }
        bench::v1::Ping ping; // what the gateway does with it: parse
        if (!request_.message().UnpackTo(&ping))
          return Finish({grpc::StatusCode::INVALID_ARGUMENT, "not a Ping"});
        ++posted_;
        owner_.taken_.fetch_add(1, std::memory_order_relaxed);
        StartRead(&request_);
      }
      void OnDone() override {
        delete this;
      }
      raw_echo& owner_;
      gw::PostStreamReply& reply_;
      gw::PostRequest request_;
      std::uint64_t posted_ = 0;
    };
    return new counting(*this, *reply);
  }

  std::mutex mu_;
  std::vector<grpc::ServerUnaryReactor*> held_; // guarded by mu_
  std::atomic<std::uint64_t> taken_{0};
};

std::vector<double> round_trips(gw::Gateway::Stub& stub, int rounds);

/// The raw twin of a service an actor serves: every method not registered
/// otherwise parses its request as a Ping and answers with it.
class raw_ping_echo final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor*
  CreateReactor(grpc::GenericCallbackServerContext*) override {
    struct echo final : grpc::ServerGenericBidiReactor {
      echo() {
        StartRead(&request_);
      }
      void OnReadDone(bool ok) override {
        bench::v1::Ping ping;
        if (!ok || !ping.ParseFromString(bytes()))
          return Finish({grpc::StatusCode::INVALID_ARGUMENT, "not a Ping"});
        std::string out;
        ping.SerializeToString(&out);
        grpc::Slice slice{out};
        reply_ = grpc::ByteBuffer{&slice, 1};
        StartWriteAndFinish(&reply_, grpc::WriteOptions{}, grpc::Status::OK);
      }
      void OnDone() override {
        delete this;
      }
      std::string bytes() {
        std::vector<grpc::Slice> slices;
        std::string out;
        if (request_.Dump(&slices).ok())
          for (const auto& slice : slices)
            out.append(reinterpret_cast<const char*>(slice.begin()),
                       slice.size());
        return out;
      }
      grpc::ByteBuffer request_;
      grpc::ByteBuffer reply_;
    };
    return new echo;
  }
};

/// Round trips of /bench.v1.Echo/Ping, called as a generated stub would.
std::vector<double> unary_round_trips(grpc::Channel& channel, int rounds) {
  const grpc::internal::RpcMethod method{
    "/bench.v1.Echo/Ping", grpc::internal::RpcMethod::NORMAL_RPC};
  bench::v1::Ping request;
  request.set_pad(std::string(48, 'x'));
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(rounds));
  for (int i = 0; i < rounds; ++i) {
    auto t = clock_type::now();
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now()
                     + std::chrono::seconds{10});
    bench::v1::Ping reply;
    // What a generated stub does.
    auto status = grpc::internal::BlockingUnaryCall<
      bench::v1::Ping, bench::v1::Ping, grpc::protobuf::MessageLite,
      grpc::protobuf::MessageLite>(&channel, method, &ctx, request, &reply);
    if (!status.ok()) {
      std::cerr << "a unary call failed: " << status.error_message() << "\n";
      std::exit(1);
    }
    out.push_back(static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t)
        .count()));
  }
  return out;
}

/// Bytes malloc has handed out and not yet taken back. main() keeps every
/// thread in one arena, so that mallinfo2 (which reads the main arena and
/// the mmapped blocks) sees them all; resident memory would not do, as
/// freed pages stay resident and are reused run after run.
double heap_bytes() {
  auto info = ::mallinfo2();
  return static_cast<double>(info.uordblks + info.hblkhd);
}

/// PostStream of `posts` Pings to "sink": posts per second, until the
/// reply says every one was taken.
double posts_per_second(gw::Gateway::Stub& stub, int posts) {
  bench::v1::Ping ping;
  ping.set_pad(std::string(48, 'x'));
  gw::PostRequest request;
  request.set_name("sink");
  request.mutable_message()->PackFrom(ping);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds{60});
  gw::PostStreamReply reply;
  auto t = clock_type::now();
  auto writer = stub.PostStream(&ctx, &reply);
  for (int i = 0; i < posts; ++i)
    if (!writer->Write(request))
      break;
  writer->WritesDone();
  auto status = writer->Finish();
  auto took = std::chrono::duration<double>(clock_type::now() - t).count();
  if (!status.ok() || reply.posted() != static_cast<std::uint64_t>(posts)) {
    std::cerr << "a post stream failed: " << status.error_message() << "\n";
    std::exit(1);
  }
  return posts / took;
}

/// `open` Sends to "sloth" held at once: heap bytes per open call.
/// `release` ends them on the server's side.
double bytes_per_open_call(gw::Gateway::Stub& stub, int open,
                           const std::function<void()>& release) {
  auto before = heap_bytes();
  struct call {
    grpc::ClientContext ctx;
    gw::SendRequest request;
    gw::SendReply reply;
  };
  std::vector<std::unique_ptr<call>> calls;
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  bench::v1::Ping ping;
  ping.set_pad(std::string(48, 'x'));
  for (int i = 0; i < open; ++i) {
    auto& c = *calls.emplace_back(std::make_unique<call>());
    c.ctx.set_deadline(std::chrono::system_clock::now()
                       + std::chrono::seconds{60});
    c.request.set_name("sloth");
    c.request.mutable_message()->PackFrom(ping);
    stub.async()->Send(&c.ctx, &c.request, &c.reply, [&](grpc::Status) {
      std::lock_guard guard{mu};
      ++done;
      cv.notify_all();
    });
  }
  // Held: the server has them all once a fresh call behind them is
  // answered (one channel, calls taken in order).
  round_trips(stub, 1);
  auto during = heap_bytes();
  for (auto& c : calls)
    c->ctx.TryCancel();
  release();
  std::unique_lock guard{mu};
  cv.wait(guard, [&] { return done == open; });
  return (during - before) / open;
}

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
  // open_call runs alone (--scenario open_call): one malloc arena, so that
  // heap_bytes() sees every thread's allocations, would slow the others.
  std::string only = text_arg(argc, argv, "--scenario", "");
  bool memory = only == "open_call";
  if (memory)
    ::mallopt(M_ARENA_MAX, 1);
  bool quick = has_flag(argc, argv, "--quick");
  int runs = static_cast<int>(arg(argc, argv, "--runs", quick ? 1 : 7));
  int rounds = static_cast<int>(arg(argc, argv, "--rounds", quick ? 200 : 3000));
  int callers = static_cast<int>(arg(argc, argv, "--callers", 64));
  double seconds = quick ? 0.3 : real_arg(argc, argv, "--seconds", 2);

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
  // Keeps every request it gets unanswered (until the node stops).
  auto sloth = host->spawn("sloth", [](courier::context&) {
    auto parked = std::make_shared<std::vector<courier::responder>>();
    return courier::behavior{
      [parked](const bench::v1::Ping& p, courier::context& ctx) {
        if (p.seq() < 0) // posted by the benchmark: let them all go
          parked->clear();
        else
          parked->push_back(ctx.take_reply());
      }};
  });
  auto sink = host->spawn("sink", [](courier::context&) {
    return courier::behavior{[](const bench::v1::Ping&) {}};
  });
  courier::gateway::options gateway_settings;
  gateway_settings.services["bench.v1.Echo"] = "echo";
  auto served = courier::gateway::server::start(*host, gateway_settings);
  if (!echo || !sloth || !sink || !served) {
    std::cerr << "cannot start the gateway\n";
    return 1;
  }
  raw_echo twin;
  int raw_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &raw_port);
  builder.RegisterService(&twin);
  raw_ping_echo raw_unary;
  builder.RegisterCallbackGenericService(&raw_unary);
  auto raw_server = builder.BuildAndStart();
  auto channel_to = [](int port) {
    return grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                               grpc::InsecureChannelCredentials());
  };
  auto courier_channel = channel_to((*served)->port());
  auto raw_channel = channel_to(raw_port);
  auto courier_stub = gw::Gateway::NewStub(courier_channel);
  auto raw_stub = gw::Gateway::NewStub(raw_channel);
  round_trips(*courier_stub, 100); // channels up, caches warm
  round_trips(*raw_stub, 100);
  unary_round_trips(*courier_channel, 100);
  unary_round_trips(*raw_channel, 100);

  if (!memory) {
    compare_rtt(
      "send", "plain", runs, 64,
      [&](int) { return round_trips(*courier_stub, rounds); },
      [&](int) { return round_trips(*raw_stub, rounds); }, "gateway", "raw_grpc");
    compare_rtt(
      "unary", "plain", runs, 64,
      [&](int) { return unary_round_trips(*courier_channel, rounds); },
      [&](int) { return unary_round_trips(*raw_channel, rounds); }, "gateway",
      "raw_grpc");
    std::vector<double> c, r;
    alternate(
      runs, [&](int) { c.push_back(calls_per_second(*courier_stub, callers, seconds)); },
      [&](int) { r.push_back(calls_per_second(*raw_stub, callers, seconds)); });
    report("calls_" + std::to_string(callers) + "_callers", "plain", c, r,
           "calls_per_s", 64, "gateway", "raw_grpc");

    int posts = static_cast<int>(arg(argc, argv, "--posts", quick ? 2000 : 20000));
    std::vector<double> cp, rp;
    alternate(
      runs, [&](int) { cp.push_back(posts_per_second(*courier_stub, posts)); },
      [&](int) { rp.push_back(posts_per_second(*raw_stub, posts)); });
    report("post_stream", "plain", cp, rp, "posts_per_s", 64, "gateway",
           "raw_grpc");
  }

  int open = static_cast<int>(arg(argc, argv, "--open", quick ? 200 : 1000));
  if (memory || quick) {
    std::vector<double> cm, rm;
    alternate(
      runs,
      [&](int) {
        cm.push_back(bytes_per_open_call(*courier_stub, open, [&] {
          bench::v1::Ping release;
          release.set_seq(-1);
          (void)host->post("sloth", release);
        }));
      },
      [&](int) {
        rm.push_back(
          bytes_per_open_call(*raw_stub, open, [&] { twin.release(); }));
      });
    report("open_call", "plain", cm, rm, "bytes", 64, "gateway", "raw_grpc");
  }
  raw_server->Shutdown();
  return 0;
}

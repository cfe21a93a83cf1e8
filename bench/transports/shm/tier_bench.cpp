// The shared-memory tier without actors: Courier's shm links (the transport,
// its SCM_RIGHTS handshake, its reader thread, its frames) carrying real
// envelopes, next to the raw ring (raw_ring.hpp) carrying the same envelopes.
// The raw twin is exactly the yardstick: a raw ring round trip plus
// Protobuf serialize and parse of the envelope at both ends.
//
//   courier_bench_shm_tier [--runs N] [--rounds N]
//                          [--policy spin|hybrid|block|all]
//                          [--placement same|cross|none] [--size N]
//                          [--versus-pipe]
//
// same: both processes (all their threads) on CPU 0; cross: the parent on
// CPU 0, the child on CPU 1; none (default): the scheduler decides.
//
// One scenario, 64-byte payloads by default: the parent sends a REQUEST envelope, the
// child parses it and answers with a REPLY envelope, the parent parses that
// and times the round trip. Courier's side is driven from the links' reader
// threads (each answer is written from on_frame), so that both sides have
// one thread per process that waits, as the raw twin does. Each run forks a
// fresh child per implementation; implementations alternate.
//
// Output: one JSON line per policy and implementation (medians over the runs
// of each run's p50 and p99), then "courier/raw" with medians of per-run
// ratios.
//
// --versus-pipe: instead, the same driver over Courier's shm links (hybrid
// wait) and over its named-pipe links, alternating, with the medians of
// per-run shm/pipe ratios: the two tiers compared at the same level, with
// nothing but the transport in between.

#include <cstdio>
#include <cstring>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/v1/bench.pb.h"
#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"
#include "courier/v1/envelope.pb.h"
#include "raw_ring.hpp"
#include "args.hpp"
#include "stats.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using courier::bench::arg;
using courier::bench::has_flag;
using courier::bench::json_line;
using courier::bench::text_arg;
using courier::bench::median;
using courier::bench::quantile;
using courier::shm::wait_policy;
namespace v1 = courier::v1;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "courier_bench_shm_tier: %s\n", what.c_str());
  std::exit(1);
}

double ns_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::nano>(clock_type::now() - t)
    .count();
}

/// --size N: bytes of the payload (default 64).
std::size_t payload_size = 64;

const std::string& payload() {
  static const std::string bytes = [] {
    bench::v1::Ping ping;
    ping.set_seq(1);
    // Exactly payload_size bytes with the seq and the field headers (the
    // pad's length prefix grows with it: shrink the pad until it fits).
    auto pad = payload_size > 4 ? payload_size - 4 : 1;
    for (int tries = 0; tries < 4; ++tries) {
      ping.set_pad(std::string(pad, 'x'));
      auto size = ping.ByteSizeLong();
      if (size <= payload_size || pad <= size - payload_size)
        break;
      pad -= size - payload_size;
    }
    return ping.SerializeAsString();
  }();
  return bytes;
}

/// The request the parent sends; message_id 0 tells the raw child to stop.
std::string request_frame(std::uint64_t id) {
  v1::Envelope env;
  env.set_target("echo");
  env.mutable_sender()->set_node("bench-client");
  env.mutable_sender()->set_actor("driver");
  env.set_type_name("bench.v1.Ping");
  env.set_payload(payload());
  env.set_message_id(id);
  env.set_kind(v1::KIND_REQUEST);
  env.set_priority(3);
  return env.SerializeAsString();
}

/// What the child answers to a request it parsed.
std::string reply_frame(const v1::Envelope& request) {
  v1::Envelope env;
  env.mutable_sender()->set_node("bench-server");
  env.set_type_name(request.type_name());
  env.set_payload(request.payload());
  env.set_correlation_id(request.message_id());
  env.set_kind(v1::KIND_REPLY);
  return env.SerializeAsString();
}

bool parse(const void* data, std::size_t size, v1::Envelope& env) {
  return env.ParseFromArray(data, static_cast<int>(size));
}

/// CPU of the child process, or -1 to leave it to the scheduler.
int child_cpu = -1;

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0)
    die("sched_setaffinity to CPU " + std::to_string(cpu) + " failed");
}

constexpr std::size_t ring_capacity = std::size_t{1} << 20;
constexpr int warmup = 200;

// -- raw twin: raw ring + envelopes -------------------------------------------

/// The raw ring waits as the Courier tier does by default (its spin budget,
/// its yielding), so the two differ only in what Courier adds.
courier::bench::raw_ring::wait_settings raw_settings(wait_policy policy) {
  courier::shm::transport_options defaults;
  return {policy, defaults.spin_budget, defaults.yield_while_spinning};
}

std::vector<double> raw_run(wait_policy policy, int rounds) {
  namespace raw = courier::bench::raw_ring;
  auto there = raw::make(ring_capacity);
  auto back = raw::make(ring_capacity);
  if (there.head == nullptr || back.head == nullptr)
    die("mmap failed");
  std::fflush(nullptr);
  auto pid = ::fork();
  if (pid < 0)
    die("fork failed");
  if (pid == 0) {
    if (child_cpu >= 0)
      pin_to(child_cpu);
    raw::consumer in{there, raw_settings(policy)};
    raw::producer out{back, raw_settings(policy)};
    std::vector<std::byte> buf;
    v1::Envelope env;
    for (;;) {
      if (!in.read(buf) || !parse(buf.data(), buf.size(), env))
        ::_exit(3);
      if (env.message_id() == 0)
        ::_exit(0);
      auto reply = reply_frame(env);
      out.write(std::as_bytes(std::span{reply}));
    }
  }
  std::vector<double> rtts;
  {
    raw::producer out{there, raw_settings(policy)};
    raw::consumer in{back, raw_settings(policy)};
    std::vector<std::byte> buf;
    v1::Envelope env;
    for (int i = 1; i <= rounds + warmup; ++i) {
      auto t = clock_type::now();
      auto frame = request_frame(static_cast<std::uint64_t>(i));
      out.write(std::as_bytes(std::span{frame}));
      if (!in.read(buf) || !parse(buf.data(), buf.size(), env)
          || env.correlation_id() != static_cast<std::uint64_t>(i))
        die("raw: a bad reply");
      if (i > warmup)
        rtts.push_back(ns_since(t));
    }
    auto stop = request_frame(0);
    out.write(std::as_bytes(std::span{stop}));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("raw child failed");
  raw::release(there);
  raw::release(back);
  return rtts;
}

// -- Courier: shm transport links + envelopes ---------------------------------

/// --versus-pipe runs the links of the named-pipe tier instead.
bool over_pipe = false;

std::unique_ptr<courier::transport> make_transport(wait_policy policy) {
  if (over_pipe) {
    auto made = courier::pipe::factory()(courier::transport_limits{});
    if (!made)
      die(made.error().to_string());
    return std::move(*made);
  }
  courier::shm::transport_options options;
  options.policy = policy;
  options.ring_capacity = ring_capacity;
  auto made = courier::shm::factory(options)(courier::transport_limits{});
  if (!made)
    die(made.error().to_string());
  return std::move(*made);
}

/// The child's side: answers every request on the link it accepted.
class echo_events final : public courier::link_events {
public:
  explicit echo_events(courier::link& link) : link_(link) {
  }

  void on_frame(std::string frame) override {
    if (!parse(frame.data(), frame.size(), env_))
      std::_Exit(3);
    (void)link_.write(reply_frame(env_));
  }

  void on_closed(const courier::error&) override {
    std::_Exit(0); // the parent closed the link: the run is over
  }

private:
  courier::link& link_;
  v1::Envelope env_;
};

[[noreturn]] void courier_child(wait_policy policy, const std::string& endpoint,
                                int ready_fd) {
  auto transport = make_transport(policy);
  std::unique_ptr<courier::link> accepted;
  std::promise<void> linked;
  // The shm tier listens on <local_dir>/<node>.shm: "echo" makes `endpoint`.
  auto dir = endpoint.substr(0, endpoint.rfind('/'));
  auto listening = transport->listen(
    courier::listen_context{"echo", "", dir},
    [&](std::unique_ptr<courier::link> link) {
      accepted = std::move(link);
      accepted->start(std::make_shared<echo_events>(*accepted));
      linked.set_value();
    });
  if (!listening)
    std::_Exit(2);
  if (::write(ready_fd, "r", 1) != 1)
    std::_Exit(2);
  linked.get_future().wait();
  for (;;)
    ::pause(); // on_closed ends the process
}

/// The parent's side: each reply is parsed, timed, and followed by the next
/// request, all on the link's reader thread.
class driver_events final : public courier::link_events {
public:
  driver_events(int rounds, std::promise<std::vector<double>> done)
    : rounds_(rounds), done_(std::move(done)) {
    rtts_.reserve(static_cast<std::size_t>(rounds));
  }

  void start(courier::link& link) {
    link_ = &link;
    send_next();
  }

  void on_frame(std::string frame) override {
    if (!parse(frame.data(), frame.size(), env_)
        || env_.correlation_id() != sent_)
      die("courier: a bad reply");
    if (sent_ > static_cast<std::uint64_t>(warmup))
      rtts_.push_back(ns_since(t_));
    if (static_cast<int>(rtts_.size()) == rounds_) {
      finished_ = true;
      done_.set_value(std::move(rtts_));
      return;
    }
    send_next();
  }

  void on_closed(const courier::error& why) override {
    if (!finished_)
      die("courier: the link closed: " + why.to_string());
  }

private:
  void send_next() {
    t_ = clock_type::now();
    if (!link_->write(request_frame(++sent_)))
      die("courier: write failed");
  }

  courier::link* link_ = nullptr;
  int rounds_;
  std::promise<std::vector<double>> done_;
  std::vector<double> rtts_;
  std::uint64_t sent_ = 0;
  bool finished_ = false;
  clock_type::time_point t_;
  v1::Envelope env_;
};

std::vector<double> courier_run(wait_policy policy, int rounds) {
  char pattern[] = "/tmp/courier-bench-tier-XXXXXX";
  std::string dir = ::mkdtemp(pattern);
  auto endpoint = dir + "/echo.shm";
  int ready[2];
  if (::pipe(ready) != 0)
    die("pipe failed");
  std::fflush(nullptr);
  auto pid = ::fork();
  if (pid < 0)
    die("fork failed");
  if (pid == 0) {
    if (child_cpu >= 0)
      pin_to(child_cpu);
    ::close(ready[0]);
    courier_child(policy, endpoint, ready[1]);
  }
  ::close(ready[1]);
  char r;
  if (::read(ready[0], &r, 1) != 1)
    die("the courier child did not start");
  ::close(ready[0]);
  std::vector<double> rtts;
  {
    auto transport = make_transport(policy);
    auto link = transport->connect(endpoint, courier::deadline{std::chrono::seconds{5}});
    if (!link)
      die(link.error().to_string());
    std::promise<std::vector<double>> done;
    auto result = done.get_future();
    auto events = std::make_shared<driver_events>(rounds, std::move(done));
    (*link)->start(events);
    events->start(**link);
    rtts = result.get();
    (*link)->close();
    transport->stop();
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die("courier child failed with status " + std::to_string(status));
  std::remove(endpoint.c_str());
  ::rmdir(dir.c_str());
  return rtts;
}

std::string policy_name(wait_policy p) {
  return std::string{courier::shm::to_string(p)};
}

} // namespace

/// Per-run p50 and p99 of two implementations run in turn (which goes first
/// alternates), and the per-run ratios first/second.
struct paired {
  std::vector<double> a50, a99, b50, b99, ratio50, ratio99;
};

template <class RunA, class RunB>
paired run_paired(int runs, RunA run_a, RunB run_b) {
  paired out;
  for (int i = 0; i < runs; ++i) {
    std::vector<double> a, b;
    if (i % 2 == 0) {
      a = run_a();
      b = run_b();
    } else {
      b = run_b();
      a = run_a();
    }
    out.a50.push_back(quantile(a, 0.5));
    out.a99.push_back(quantile(a, 0.99));
    out.b50.push_back(quantile(b, 0.5));
    out.b99.push_back(quantile(b, 0.99));
    out.ratio50.push_back(out.a50.back() / out.b50.back());
    out.ratio99.push_back(out.a99.back() / out.b99.back());
  }
  return out;
}

/// The shm tier (hybrid) against the pipe tier, link to link.
int versus_pipe(int runs, int rounds, const std::string& placement) {
  auto over = [&](bool pipe) {
    return [&, pipe] {
      over_pipe = pipe;
      return courier_run(wait_policy::hybrid, rounds);
    };
  };
  auto r = run_paired(runs, over(false), over(true));
  for (auto [tier, x50, x99] : {std::tuple{"shm", &r.a50, &r.a99},
                                std::tuple{"pipe", &r.b50, &r.b99}}) {
    json_line line;
    line.add("scenario", "link_rtt").add("tier", tier);
    line.add("placement", placement);
    line.add("size", static_cast<double>(payload_size)).add("runs", runs);
    line.add("rtt_p50_ns", median(*x50)).add("rtt_p99_ns", median(*x99));
    std::cout << line.str() << std::endl;
  }
  json_line line;
  line.add("scenario", "link_rtt").add("tier", "shm/pipe");
  line.add("placement", placement);
  line.add("size", static_cast<double>(payload_size)).add("runs", runs);
  line.add("rtt_p50_ratio", median(r.ratio50));
  line.add("rtt_p99_ratio", median(r.ratio99));
  std::cout << line.str() << std::endl;
  return 0;
}

int main(int argc, char** argv) {
  auto runs = std::atoi(text_arg(argc, argv, "--runs", "7"));
  auto rounds = std::atoi(text_arg(argc, argv, "--rounds", "20000"));
  payload_size = static_cast<std::size_t>(
    std::atol(text_arg(argc, argv, "--size", "64")));
  std::string which = text_arg(argc, argv, "--policy", "all");
  std::vector<wait_policy> policies;
  for (auto p : {wait_policy::spin, wait_policy::hybrid, wait_policy::block})
    if (which == "all" || which == policy_name(p))
      policies.push_back(p);
  std::string placement = text_arg(argc, argv, "--placement", "none");
  if (placement == "same" || placement == "cross") {
    pin_to(0);
    child_cpu = placement == "same" ? 0 : 1;
  } else if (placement != "none") {
    policies.clear();
  }
  if (policies.empty() || runs < 1 || rounds < 1)
    die("usage: courier_bench_shm_tier [--runs N] [--rounds N] "
        "[--policy spin|hybrid|block|all] [--placement same|cross|none] "
        "[--versus-pipe]");
  if (has_flag(argc, argv, "--versus-pipe"))
    return versus_pipe(runs, rounds, placement);
  for (auto policy : policies) {
    auto r = run_paired(
      runs, [&] { return courier_run(policy, rounds); },
      [&] { return raw_run(policy, rounds); });
    for (auto [impl, p50, p99] : {std::tuple{"courier", &r.a50, &r.a99},
                                  std::tuple{"raw", &r.b50, &r.b99}}) {
      json_line line;
      line.add("scenario", "envelope_rtt").add("impl", impl);
      line.add("policy", policy_name(policy)).add("placement", placement);
      line.add("size", static_cast<double>(payload_size)).add("runs", runs).add("rtt_p50_ns", median(*p50));
      line.add("rtt_p99_ns", median(*p99));
      std::cout << line.str() << std::endl;
    }
    json_line line;
    line.add("scenario", "envelope_rtt").add("impl", "courier/raw");
    line.add("policy", policy_name(policy)).add("placement", placement);
    line.add("size", static_cast<double>(payload_size)).add("runs", runs);
    line.add("rtt_p50_ratio", median(r.ratio50));
    line.add("rtt_p99_ratio", median(r.ratio99));
    std::cout << line.str() << std::endl;
  }
  return 0;
}

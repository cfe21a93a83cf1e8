// Courier between two processes (named pipe or shared memory) against raw
// AF_UNIX sockets.
//
//   courier_bench_pipe [--runs N] [--rounds N] [--tier pipe|shm]
//                      [--scheduler automatic|sharing|work_stealing|latency]
//                      [--spin-us N]
//                      [--workers N]
//                      [--no-yield]
//                      [--rtt-size N] [--rtt-only] [--fan-in N]
//                      [--oneway-only SIZE] [--shm-vs-pipe]
//
// Scenarios, each for Courier and its raw twin, alternating, N runs:
//   rtt            64-byte round trips (Courier: ctx.request to an actor in
//                  the child process; raw: write a frame, read the echo)
//   oneway_<size>  one-way throughput at 64 B, 4 KiB and 1 MiB (Courier:
//                  posts, then one request that arrives behind them; raw:
//                  frames written back to back, one ack at the end)
//   first_message  a fresh node's first send to a name on another node
//                  (directory lookup, connect, handshake, one round trip),
//                  next to its second send (Courier only: the raw twin has
//                  no names)
//   fan_in         4 sender processes post to one named actor; aggregate
//                  messages per second (Courier only)
// With --shm-vs-pipe, only round trips, Courier over shm against Courier
// over the named pipe, alternating runs (the ratio is shm / pipe).
// Output: JSON lines with medians, then medians of per-run ratios.

#include <fstream>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/v1/bench.pb.h"
#include "courier/courier.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"
#include "args.hpp"
#include "post.hpp"
#include "stats.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using courier::bench::arg;
using courier::bench::has_flag;
using courier::bench::json_line;
using courier::bench::text_arg;
using courier::bench::median;
using courier::bench::quantile;

double ns_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::nano>(clock_type::now() - t).count();
}

/// --rtt-size N: bytes of each round trip's message (default 64).
std::size_t rtt_size = 64;

// -- raw twin ---------------------------------------------------------------------

bool read_exact(int fd, void* buf, std::size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    auto r = ::read(fd, p, n);
    if (r <= 0)
      return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool write_exact(int fd, const void* buf, std::size_t n) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    auto r = ::write(fd, p, n);
    if (r <= 0)
      return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

/// The raw child: frames of [u32 length][u8 mode][body]; mode 0 echoes the
/// frame, mode 1 swallows it, mode 2 acks with a 1-byte frame.
void raw_serve(int fd) {
  std::vector<char> buf;
  for (;;) {
    std::uint32_t len = 0;
    if (!read_exact(fd, &len, 4))
      return;
    buf.resize(len);
    if (!read_exact(fd, buf.data(), len))
      return;
    char mode = len > 0 ? buf[0] : 0;
    if (mode == 0) {
      if (!write_exact(fd, &len, 4) || !write_exact(fd, buf.data(), len))
        return;
    } else if (mode == 2) {
      std::uint32_t one = 1;
      char ack = 2;
      if (!write_exact(fd, &one, 4) || !write_exact(fd, &ack, 1))
        return;
    }
  }
}

struct raw_peer {
  raw_peer() {
    int fds[2];
    ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
    pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      raw_serve(fds[1]);
      ::_exit(0);
    }
    ::close(fds[1]);
    fd = fds[0];
  }

  ~raw_peer() {
    ::close(fd);
    ::waitpid(pid, nullptr, 0);
  }

  pid_t pid;
  int fd;
};

std::vector<double> raw_rtt(raw_peer& peer, int rounds) {
  std::vector<double> out;
  std::vector<char> msg(rtt_size, 'x');
  msg[0] = 0;
  std::uint32_t len = static_cast<std::uint32_t>(msg.size());
  std::vector<char> back(msg.size());
  for (int i = 0; i < rounds; ++i) {
    auto t = clock_type::now();
    write_exact(peer.fd, &len, 4);
    write_exact(peer.fd, msg.data(), msg.size());
    std::uint32_t got = 0;
    read_exact(peer.fd, &got, 4);
    read_exact(peer.fd, back.data(), got);
    out.push_back(ns_since(t));
  }
  return out;
}

double raw_oneway(raw_peer& peer, std::size_t size, int count) {
  std::vector<char> msg(size, 'x');
  msg[0] = 1;
  std::uint32_t len = static_cast<std::uint32_t>(size);
  auto t = clock_type::now();
  for (int i = 0; i < count; ++i) {
    write_exact(peer.fd, &len, 4);
    write_exact(peer.fd, msg.data(), size);
  }
  char ack_mode = 2;
  std::uint32_t one = 1;
  write_exact(peer.fd, &one, 4);
  write_exact(peer.fd, &ack_mode, 1);
  std::uint32_t got = 0;
  char ack = 0;
  read_exact(peer.fd, &got, 4);
  read_exact(peer.fd, &ack, 1);
  return count / (ns_since(t) / 1e9);
}

// -- Courier --------------------------------------------------------------------

/// --scheduler sharing|work_stealing|latency (default: the node's default,
/// automatic, which is latency for nodes with transports).
courier::scheduler_policy policy = courier::scheduler_policy::automatic;

const char* scheduler_name() {
  switch (policy) {
    case courier::scheduler_policy::work_stealing:
      return "work_stealing";
    case courier::scheduler_policy::sharing:
      return "sharing";
    case courier::scheduler_policy::latency:
      return "latency";
    case courier::scheduler_policy::automatic:
      return "automatic";
  }
  return "automatic";
}

/// --tier pipe|shm: the tier the Courier route takes (default pipe).
std::string tier = "pipe";

/// --spin-us N: the shared-memory tier's spin budget (default: the tier's).
std::string spin_us;

/// --no-yield: spin without offering the CPU (the tier yields by default).
bool no_yield = false;

/// --workers N: scheduler threads per node (default 2).
std::size_t workers = 2;

/// node_config::metrics of the nodes made next; --metrics flips it per
/// peer. The server child learns it from COURIER_BENCH_METRICS.
bool metrics_on = true;

/// Sets metrics_on here and for the server children started next.
void set_metrics(bool on) {
  metrics_on = on;
  ::setenv("COURIER_BENCH_METRICS", on ? "1" : "0", 1);
}


/// node_config::trace of the nodes made next; --trace flips it per peer.
/// The server child learns it from COURIER_BENCH_TRACE.
bool trace_on = false;

void set_trace(bool on) {
  trace_on = on;
  ::setenv("COURIER_BENCH_TRACE", on ? "1" : "0", 1);
}

courier::node_config config_for(const std::string& name, const std::string& dir) {
  courier::node_config config;
  config.scheduler = policy;
  config.name = name;
  config.directory = dir;
  config.worker_threads = workers;
  config.metrics = metrics_on;
  config.trace = trace_on;
  config.transports = {{"pipe", courier::pipe::factory()}};
  if (tier == "shm") {
    courier::shm::transport_options shm;
    if (!spin_us.empty())
      shm.spin_budget = std::chrono::microseconds{std::stol(spin_us)};
    if (no_yield)
      shm.yield_while_spinning = false;
    config.transports.emplace_back("shm", courier::shm::factory(shm));
  }
  config.limits.max_frame = 8u << 20;
  return config;
}

/// The Courier child: "echo" answers a Ping with a Ping of the same size;
/// "sink" counts posts and answers a request (an empty Ping) with how many
/// came since the last one.
int courier_serve(const std::string& dir) {
  if (const char* on = std::getenv("COURIER_BENCH_METRICS"))
    metrics_on = std::strcmp(on, "0") != 0;
  if (const char* on = std::getenv("COURIER_BENCH_TRACE"))
    trace_on = std::strcmp(on, "0") != 0;
  auto self = courier::node::start(config_for("bench-server", dir));
  if (!self)
    return 1;
  auto echo = self->spawn("echo", [](courier::context&) {
    return courier::behavior{[](std::shared_ptr<const bench::v1::Ping> p) {
      return p; // the same object back: no copy in this process
    }};
  });
  auto sink = self->spawn("sink", [](courier::context&) {
    return courier::behavior{
      [count = std::int64_t{0}](const bench::v1::Ping& p) mutable {
        bench::v1::Ping answer;
        if (!p.pad().empty()) {
          ++count;
          return answer; // a post: the answer goes nowhere
        }
        answer.set_seq(std::exchange(count, 0));
        return answer;
      }};
  });
  if (!echo || !sink)
    return 1;
  std::cout << "ready" << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}

struct courier_peer {
  explicit courier_peer(const std::string& self_path) {
    char pattern[] = "/tmp/courier-bench-XXXXXX";
    dir = ::mkdtemp(pattern);
    int in[2];
    int out[2];
    ::pipe(in);
    ::pipe(out);
    pid = ::fork();
    if (pid == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::close(in[1]);
      ::close(out[0]);
      ::execl(self_path.c_str(), self_path.c_str(), "--serve", dir.c_str(),
              "--scheduler",
              scheduler_name(),
              "--tier", tier.c_str(), "--spin-us",
              spin_us.empty() ? "200" : spin_us.c_str(),
              no_yield ? "--no-yield" : "--yield", "--workers",
              std::to_string(workers).c_str(), nullptr);
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_child = in[1];
    char buf[16];
    auto n = ::read(out[0], buf, sizeof buf); // "ready\n"
    (void)n;
    ::close(out[0]);
    auto started = courier::node::start(config_for("bench-client", dir));
    if (!started) {
      std::cerr << started.error().to_string() << "\n";
      std::exit(1);
    }
    client.emplace(std::move(*started));
  }

  ~courier_peer() {
    client.reset();
    ::close(to_child);
    ::waitpid(pid, nullptr, 0);
    std::string rm = "rm -rf " + dir;
    if (std::system(rm.c_str()) != 0)
      std::cerr << "cannot remove " << dir << "\n";
  }

  std::string dir;
  pid_t pid;
  int to_child;
  std::optional<courier::node> client;
};

std::vector<double> courier_rtt(courier_peer& peer, int rounds, int run) {
  std::promise<std::vector<double>> done;
  auto name = "driver" + std::to_string(run);
  auto spawned = peer.client->spawn(name, [&](courier::context& ctx) {
    struct state {
      std::vector<double> rtts;
      clock_type::time_point sent;
    };
    auto st = std::make_shared<state>();
    auto next = std::make_shared<std::function<void()>>();
    *next = [&ctx, &done, st, next, rounds] {
      if (static_cast<int>(st->rtts.size()) == rounds) {
        done.set_value(std::move(st->rtts));
        return;
      }
      auto ping = std::make_shared<bench::v1::Ping>();
      // rtt_size bytes on the wire with the seq and the field headers.
      ping->set_pad(std::string(rtt_size > 16 ? rtt_size - 16 : 1, 'x'));
      st->sent = clock_type::now();
      ctx.request("echo", courier::message{ping}, std::chrono::seconds{10})
        .then(
          [st, next](const bench::v1::Ping&) {
            st->rtts.push_back(ns_since(st->sent));
            (*next)();
          },
          [](const courier::error& e) {
            std::cerr << "request failed: " << e.to_string() << "\n";
            std::exit(1);
          });
    };
    return courier::behavior{[next](const bench::v1::Ping&) { (*next)(); }};
  });
  if (!spawned || !peer.client->post(name, bench::v1::Ping{}))
    std::exit(1);

  auto out = done.get_future().get();
  (void)peer.client->stop(name);
  auto routes = peer.client->routes(); // the route must be the measured tier
  if (routes.size() != 1 || routes[0].tier != tier) {
    std::cerr << "the route did not take the " << tier << " tier\n";
    std::exit(1);
  }
  return out;
}

/// Posts, waiting while the route's backlog is full.
bool post_patiently(courier::node& from, const std::string& to,
                    const courier::message& msg) {
  auto posted = courier::bench::post_waiting(from, to, msg);
  if (!posted)
    std::cerr << "post failed: " << posted.error().message() << "\n";
  return bool(posted);
}

double courier_oneway(courier_peer& peer, std::size_t size, int count) {
  auto msg = std::make_shared<bench::v1::Ping>();
  msg->set_pad(std::string(size > 16 ? size - 16 : 1, 'x'));
  auto t = clock_type::now();
  for (int i = 0; i < count; ++i)
    if (!post_patiently(*peer.client, "sink", msg))
      std::exit(1);
  // Arrives behind the posts on the same link, and says how many came.
  auto counted = peer.client->send<bench::v1::Ping>("sink", bench::v1::Ping{},
                                                    std::chrono::seconds{60});
  auto rate = count / (ns_since(t) / 1e9);
  if (!counted || (*counted)->seq() != count) {
    std::cerr << "the sink got " << (counted ? (*counted)->seq() : -1) << " of "
              << count << " posts\n";
    std::exit(1);
  }
  return rate;
}

/// A fresh node's first and second send to "echo" on the serving node.
std::pair<double, double> courier_first_message(courier_peer& peer, int run) {
  auto fresh = courier::node::start(
    config_for("bench-first-" + std::to_string(run), peer.dir));
  if (!fresh)
    std::exit(1);
  bench::v1::Ping ping;
  ping.set_pad(std::string(48, 'x'));
  auto t = clock_type::now();
  if (!fresh->send("echo", ping, std::chrono::seconds{10}))
    std::exit(1);
  auto first = ns_since(t);
  t = clock_type::now();
  if (!fresh->send("echo", ping, std::chrono::seconds{10}))
    std::exit(1);
  return {first, ns_since(t)};
}

constexpr int fan_in_senders = 4;

/// A fan-in sender process: posts `count` Pings to "fanin" once its stdin
/// says go, then exits.
int courier_fan_in_sender(const std::string& dir, const std::string& index,
                          int count, const std::string& target) {
  auto self = courier::node::start(config_for("bench-sender-" + index, dir));
  if (!self)
    return 1;
  bench::v1::Ping warm;
  warm.set_seq(-1); // links up before the clock starts; not counted
  if (!self->send(target, warm, std::chrono::seconds{10}))
    return 1;
  std::cout << "ready" << std::endl;
  std::string go;
  std::getline(std::cin, go);
  auto msg = std::make_shared<bench::v1::Ping>();
  msg->set_pad(std::string(48, 'x'));
  for (int i = 0; i < count; ++i)
    if (!post_patiently(*self, target, msg))
      return 1;
  // Returns once everything posted before it has been handled.
  return self->send(target, warm, std::chrono::seconds{60}) ? 0 : 1;
}

/// Aggregate rate of fan_in_senders processes posting `count` each.
double courier_fan_in(const std::string& self_path, const std::string& dir,
                      courier::node& host, int count, int run) {
  struct tally {
    std::atomic<long> seen{0};
    std::promise<void> all;
    long total = 0;
  };
  auto t = std::make_shared<tally>();
  t->total = static_cast<long>(count) * fan_in_senders;
  auto name = "fanin-" + std::to_string(run);
  auto spawned = host.spawn(name, [t](courier::context&) {
    return courier::behavior{
      [t](std::shared_ptr<const bench::v1::Ping> p) {
        // Warm-up and final calls (seq -1) are answered, not counted.
        if (p->seq() >= 0 && t->seen.fetch_add(1) + 1 == t->total)
          t->all.set_value();
        return p;
      }};
  });
  if (!spawned)
    std::exit(1);
  std::vector<std::pair<pid_t, int>> senders;
  for (int i = 0; i < fan_in_senders; ++i) {
    int in[2];
    int out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0)
      std::exit(1);
    auto index = std::to_string(run * fan_in_senders + i);
    auto pid = ::fork();
    if (pid == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::close(in[1]);
      ::close(out[0]);
      auto n = std::to_string(count);
      ::execl(self_path.c_str(), self_path.c_str(), "--fan-in-sender",
              dir.c_str(), index.c_str(), n.c_str(), name.c_str(), "--tier",
              tier.c_str(),
              "--scheduler",
              scheduler_name(),
              nullptr);
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    char buf[16];
    if (::read(out[0], buf, sizeof buf) <= 0) // "ready\n"
      std::exit(1);
    ::close(out[0]);
    senders.emplace_back(pid, in[1]);
  }
  auto all = t->all.get_future();
  auto start = clock_type::now();
  for (auto& [pid, fd] : senders)
    if (::write(fd, "go\n", 3) != 3)
      std::exit(1);
  all.wait();
  auto rate = static_cast<double>(t->total) / (ns_since(start) / 1e9);
  for (auto& [pid, fd] : senders) {
    ::close(fd);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      std::exit(1);
  }
  (void)host.stop(name);
  return rate;
}

void report(const std::string& scenario, const std::vector<double>& c,
            const std::vector<double>& r, const char* field, int runs,
            std::size_t size, const char* c_name = "courier",
            const char* r_name = "raw") {
  std::vector<double> ratio;
  for (std::size_t i = 0; i < c.size(); ++i)
    ratio.push_back(c[i] / r[i]);
  for (auto [impl, values] : {std::pair{c_name, &c}, std::pair{r_name, &r}}) {
    json_line line;
    line.add("scenario", scenario).add("tier", tier).add("impl", impl);
    line.add("size", static_cast<double>(size)).add("runs", runs);
    line.add(field, median(*values));
    if (std::string{field} == "msgs_per_s")
      line.add("mib_per_s", median(*values) * static_cast<double>(size)
                              / (1 << 20));
    std::cout << line.str() << std::endl;
  }
  json_line line;
  line.add("scenario", scenario).add("tier", tier);
  line.add("impl", std::string{c_name} + "/" + r_name);
  line.add("size", static_cast<double>(size)).add("runs", runs);
  line.add(std::string{field} + "_ratio", median(ratio));
  std::cout << line.str() << std::endl;
}

} // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--scheduler") == 0
        && std::strcmp(argv[i + 1], "work_stealing") == 0)
      policy = courier::scheduler_policy::work_stealing;
    if (std::strcmp(argv[i], "--scheduler") == 0
        && std::strcmp(argv[i + 1], "latency") == 0)
      policy = courier::scheduler_policy::latency;
    if (std::strcmp(argv[i], "--scheduler") == 0
        && std::strcmp(argv[i + 1], "sharing") == 0)
      policy = courier::scheduler_policy::sharing;
    if (std::strcmp(argv[i], "--tier") == 0)
      tier = argv[i + 1];
    if (std::strcmp(argv[i], "--spin-us") == 0)
      spin_us = argv[i + 1];
  }
  no_yield = has_flag(argc, argv, "--no-yield");
  workers = static_cast<std::size_t>(arg(argc, argv, "--workers", 2));
  if (argc >= 3 && std::strcmp(argv[1], "--serve") == 0)
    return courier_serve(argv[2]);
  if (argc >= 6 && std::strcmp(argv[1], "--fan-in-sender") == 0)
    return courier_fan_in_sender(argv[2], argv[3], std::atoi(argv[4]),
                                 argv[5]);
  ::signal(SIGPIPE, SIG_IGN);
  auto runs = static_cast<int>(arg(argc, argv, "--runs", 7));
  auto rounds = static_cast<int>(arg(argc, argv, "--rounds", 5000));
  rtt_size = static_cast<std::size_t>(arg(argc, argv, "--rtt-size", 64));
  char self_path[4096];
  auto n = ::readlink("/proc/self/exe", self_path, sizeof self_path - 1);
  self_path[n > 0 ? n : 0] = '\0';

  // --idle-cpu SECONDS: after a burst of round trips, how much CPU two
  // linked nodes burn while nothing happens (both processes, in % of one
  // core). The raw twin, an idle socket, burns none.
  if (auto idle = arg(argc, argv, "--idle-cpu", 0); idle > 0) {
    courier_peer peer{self_path};
    (void)courier_rtt(peer, rounds, 0);
    auto cpu_of = [](pid_t pid) {
      std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
      std::string field;
      unsigned long ticks = 0;
      for (int i = 1; i <= 15 && in >> field; ++i)
        if (i == 14 || i == 15) // utime, stime
          ticks += std::stoul(field);
      return static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
    };
    auto before_self = cpu_of(::getpid());
    auto before_peer = cpu_of(peer.pid);
    std::this_thread::sleep_for(std::chrono::seconds{idle});
    auto self_pct = 100 * (cpu_of(::getpid()) - before_self) / idle;
    auto peer_pct = 100 * (cpu_of(peer.pid) - before_peer) / idle;
    json_line line;
    line.add("scenario", std::string{"idle_cpu"}).add("tier", tier);
    line.add("scheduler", std::string{scheduler_name()});
    line.add("seconds", static_cast<double>(idle));
    line.add("client_cpu_percent", self_pct).add("server_cpu_percent", peer_pct);
    std::cout << line.str() << std::endl;
    return 0;
  }

  // --shm-vs-pipe: actor-to-actor round trips over shared memory and over
  // the named pipe, alternating runs in one process: the median of the
  // per-run ratios shm / pipe (the bar is 0.1).
  if (has_flag(argc, argv, "--shm-vs-pipe")) {
    tier = "shm";
    courier_peer shm_peer{self_path};
    tier = "pipe";
    courier_peer pipe_peer{self_path};
    std::vector<double> s50, p50, s99, p99;
    for (int i = 0; i < runs; ++i) {
      tier = "shm";
      auto s = courier_rtt(shm_peer, rounds, i);
      tier = "pipe";
      auto p = courier_rtt(pipe_peer, rounds, i);
      s50.push_back(quantile(s, 0.5));
      s99.push_back(quantile(s, 0.99));
      p50.push_back(quantile(p, 0.5));
      p99.push_back(quantile(p, 0.99));
    }
    tier = "both";
    report("rtt_p50", s50, p50, "rtt_ns", runs, rtt_size, "shm", "pipe");
    report("rtt_p99", s99, p99, "rtt_ns", runs, rtt_size, "shm", "pipe");
    return 0;
  }

  // --metrics: round trips with metrics on and off (both nodes), one peer
  // each, alternating runs: the median of the per-run ratios on / off
  // (the bar is 1.05).
  if (has_flag(argc, argv, "--metrics")) {
    set_metrics(true);
    courier_peer on_peer{self_path};
    set_metrics(false);
    courier_peer off_peer{self_path};
    std::vector<double> on50, off50, on99, off99;
    for (int i = 0; i < runs; ++i) {
      auto first_on = i % 2 == 0;
      auto a = courier_rtt(first_on ? on_peer : off_peer, rounds, i);
      auto b = courier_rtt(first_on ? off_peer : on_peer, rounds, i);
      auto& on = first_on ? a : b;
      auto& off = first_on ? b : a;
      on50.push_back(quantile(on, 0.5));
      on99.push_back(quantile(on, 0.99));
      off50.push_back(quantile(off, 0.5));
      off99.push_back(quantile(off, 0.99));
    }
    report("rtt_p50", on50, off50, "rtt_ns", runs, rtt_size, "metrics_on",
           "metrics_off");
    report("rtt_p99", on99, off99, "rtt_ns", runs, rtt_size, "metrics_on",
           "metrics_off");
    return 0;
  }

  // --trace: round trips with every request traced (node_config::trace
  // on both nodes: 28 bytes more per request, a new span id each) and
  // without, alternating runs, as --metrics does.
  if (has_flag(argc, argv, "--trace")) {
    set_trace(true);
    courier_peer on_peer{self_path};
    set_trace(false);
    courier_peer off_peer{self_path};
    std::vector<double> on50, off50, on99, off99;
    for (int i = 0; i < runs; ++i) {
      auto first_on = i % 2 == 0;
      auto a = courier_rtt(first_on ? on_peer : off_peer, rounds, i);
      auto b = courier_rtt(first_on ? off_peer : on_peer, rounds, i);
      auto& on = first_on ? a : b;
      auto& off = first_on ? b : a;
      on50.push_back(quantile(on, 0.5));
      on99.push_back(quantile(on, 0.99));
      off50.push_back(quantile(off, 0.5));
      off99.push_back(quantile(off, 0.99));
    }
    report("rtt_p50", on50, off50, "rtt_ns", runs, rtt_size, "trace_on",
           "trace_off");
    report("rtt_p99", on99, off99, "rtt_ns", runs, rtt_size, "trace_on",
           "trace_off");
    return 0;
  }

  raw_peer raw;
  courier_peer peer{self_path};

  // --oneway-only SIZE: that one-way scenario and nothing else (profiling).
  auto only = static_cast<std::size_t>(arg(argc, argv, "--oneway-only", 0));
  std::vector<std::pair<std::size_t, int>> oneway_sizes{
    {64, 20000}, {4096, 5000}, {1u << 20, 500}};
  if (only != 0)
    oneway_sizes = {{only, static_cast<int>(std::clamp<std::size_t>(
                             (64u << 20) / only, 20, 20000))}};

  // --impl courier|raw: run one side only (profiling); the ratios are then
  // against 1.
  std::string only_impl = text_arg(argc, argv, "--impl", "");

  std::vector<double> c50, c99, r50, r99;
  for (int i = 0; i < runs && only == 0; ++i) {
    auto c = only_impl == "raw" ? std::vector<double>{1}
                                : courier_rtt(peer, rounds, i);
    auto r = only_impl == "courier" ? std::vector<double>{1}
                                    : raw_rtt(raw, rounds);
    c50.push_back(quantile(c, 0.5));
    c99.push_back(quantile(c, 0.99));
    r50.push_back(quantile(r, 0.5));
    r99.push_back(quantile(r, 0.99));
  }
  if (only == 0) {
    report("rtt_p50", c50, r50, "rtt_ns", runs, rtt_size);
    report("rtt_p99", c99, r99, "rtt_ns", runs, rtt_size);
  }
  if (has_flag(argc, argv, "--rtt-only"))
    return 0;

  for (auto [size, count] : oneway_sizes) {
    std::vector<double> c, r;
    for (int i = 0; i < runs; ++i) {
      if (only_impl == "courier") {
        c.push_back(courier_oneway(peer, size, count));
        r.push_back(1);
      } else if (only_impl == "raw") {
        c.push_back(1);
        r.push_back(raw_oneway(raw, size, count));
      } else if (i % 2 == 0) {
        c.push_back(courier_oneway(peer, size, count));
        r.push_back(raw_oneway(raw, size, count));
      } else {
        r.push_back(raw_oneway(raw, size, count));
        c.push_back(courier_oneway(peer, size, count));
      }
    }
    report("oneway", c, r, "msgs_per_s", runs, size);
  }
  if (only != 0)
    return 0;

  std::vector<double> first, second;
  for (int i = 0; i < runs; ++i) {
    auto [a, b] = courier_first_message(peer, i);
    first.push_back(a);
    second.push_back(b);
  }
  json_line first_line;
  first_line.add("scenario", "first_message").add("tier", tier);
  first_line.add("impl", "courier").add("runs", runs);
  first_line.add("first_ns", median(first)).add("second_ns", median(second));
  std::cout << first_line.str() << std::endl;

  auto fan_in_count = static_cast<int>(arg(argc, argv, "--fan-in", 50000));
  std::vector<double> rates;
  for (int i = 0; i < runs; ++i)
    rates.push_back(courier_fan_in(self_path, peer.dir, *peer.client,
                                   fan_in_count, i));
  json_line fan_line;
  fan_line.add("scenario", "fan_in").add("tier", tier).add("impl", "courier");
  fan_line.add("senders", fan_in_senders).add("per_sender", fan_in_count);
  fan_line.add("runs", runs).add("msgs_per_s", median(rates));
  std::cout << fan_line.str() << std::endl;
  return 0;
}

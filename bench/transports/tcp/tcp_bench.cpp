// Courier over the TCP tier (plaintext and mutual TLS) between two
// processes, against raw TCP / raw TLS twins and against CAF's own remote
// actors.
//
//   courier_bench_tcp [--runs N] [--rounds N] [--security plain|tls|both]
//                     [--scenario all|rtt|oneway|caf|first|fan_in]
//                     [--fan-in-count N]
//                     [--oneway-only SIZE] [--count-64 N] [--count-1m N]
//                     [--impl courier|raw] [--netns] [--quick]
//                     [--scheduler automatic|sharing|latency|work_stealing]
//
// Scenarios, each Courier next to its twin in the same process, alternating
// which goes first, N runs; the figures to read are the medians of per-run
// ratios (printed with the per-run ratios themselves):
//   rtt             64-byte round trips, p50 and p99 of each run (Courier:
//                   ctx.request to "echo" in the child node; raw: one write
//                   of a length-prefixed frame, read the echo; TLS: the same
//                   through SSL_write/SSL_read with the same certificates)
//   oneway_<size>   one-way throughput at 64 B and 1 MiB (Courier: posts,
//                   then one request that arrives behind them; raw: one
//                   write per frame, then one ack)
//   caf_*           Courier over plaintext TCP against CAF 0.17's remote
//                   actors (libcaf_io, BASP over TCP): round trips and
//                   one-way 64 B / 1 MiB; the ratio is Courier / CAF
//   first_message   a fresh node's first send to a name on the serving node
//                   (directory lookup, connect, TLS handshake, hello, one
//                   round trip), next to its second send (Courier only);
//                   first_message_seed: the same for a node that knows the
//                   serving node as a static seed (its names asked over
//                   the new link first)
//   fan_in          4 sender processes (each a node) post 64-byte Pings to
//                   one actor: the aggregate rate, next to one sender
//                   posting as many (Courier only; --fan-in-count N each)
// With --netns, the round trips and the fan-in (or --scenario oneway)
// between two network namespaces joined by a veth pair (root; made and
// removed by this program): the senders on one host, the actor on the
// other.
// Both Courier nodes run with the tier alone and scheduler defaults
// (automatic: latency for a node with transports, a thread per core);
// --scheduler changes that for diagnosis.
// Output: JSON lines.

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "actor_rtt.hpp"
#include "args.hpp"
#include "bench/v1/bench.pb.h"
#include "caf_remote.hpp"
#include "cert.hpp"
#include "compare.hpp"
#include "courier/courier.hpp"
#include "courier/tcp/tcp_transport.hpp"
#include "netns.hpp"
#include "post.hpp"
#include "raw_stream.hpp"
#include "stats.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace courier::bench;

double ns_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::nano>(clock_type::now() - t)
    .count();
}

[[noreturn]] void fail(const std::string& why) {
  std::cerr << "courier_bench_tcp: " << why << "\n";
  std::exit(1);
}

/// --rtt-size N: bytes of each round trip's message (default 64).
std::size_t rtt_size = 64;

/// --scheduler NAME: for diagnosis only; the figures use the default.
std::string scheduler = "automatic";

courier::scheduler_policy policy_of(const std::string& name) {
  if (name == "sharing")
    return courier::scheduler_policy::sharing;
  if (name == "work_stealing")
    return courier::scheduler_policy::work_stealing;
  if (name == "latency")
    return courier::scheduler_policy::latency;
  return courier::scheduler_policy::automatic;
}

/// Where the two sides live and how they talk.
struct setup {
  /// The folder of the CA and the node certificates; empty: plaintext.
  std::string certs;
  /// Addresses each side listens on (port 0).
  std::string server_host = "127.0.0.1";
  std::string client_host = "127.0.0.1";
  /// Runs a child program elsewhere (another network namespace).
  std::vector<std::string> child_prefix;

  bool tls() const {
    return !certs.empty();
  }

  const char* security() const {
    return tls() ? "tls" : "plain";
  }
};

raw_tls_files raw_files_of(const std::string& certs, const std::string& node) {
  return {certs + "/" + node + ".pem", certs + "/" + node + ".key",
          certs + "/ca.pem"};
}

/// A CA and a certificate for `node` in `certs` (the CA made once).
void mint(const std::string& certs, const std::string& node) {
  if (!std::filesystem::exists(certs + "/ca.pem")) {
    courier::cert::ca_request ca;
    ca.out = certs;
    if (!courier::cert::make_ca(ca))
      fail("cannot make a CA in " + certs);
  }
  if (std::filesystem::exists(certs + "/" + node + ".pem"))
    return;
  courier::cert::node_request request;
  request.name = node;
  request.ca = certs;
  request.out = certs;
  if (!courier::cert::make_node_certificate(request))
    fail("cannot make a certificate for " + node);
}

// -- child processes ---------------------------------------------------------

/// A child running `args` (args[0] through PATH) whose stdin we hold: it
/// ends when we close it. Its first line of output is kept (a port, or
/// "ready").
class child {
public:
  explicit child(const std::vector<std::string>& args) {
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
      fail("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      std::vector<char*> argv;
      for (const auto& arg : args)
        argv.push_back(const_cast<char*>(arg.c_str()));
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_child_ = in[1];
    from_child_ = out[0];
    first_line_ = read_line();
    if (first_line_.empty())
      fail("the child " + args.back() + " did not start");
  }

  ~child() {
    ::close(to_child_);
    ::close(from_child_);
    ::waitpid(pid_, nullptr, 0);
  }

  /// The child's next line of output; empty at its end.
  std::string read_line() {
    std::string line;
    char c;
    while (::read(from_child_, &c, 1) == 1 && c != '\n')
      line += c;
    return line;
  }

  void write_line(const std::string& line) {
    auto text = line + "\n";
    if (::write(to_child_, text.data(), text.size())
        != static_cast<ssize_t>(text.size()))
      fail("cannot write to a child");
  }

  child(const child&) = delete;
  child& operator=(const child&) = delete;

  const std::string& first_line() const {
    return first_line_;
  }

private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string first_line_;
};

std::string self_path() {
  char path[4096];
  auto n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  path[n > 0 ? n : 0] = '\0';
  return path;
}

std::vector<std::string> child_args(const setup& s,
                                    std::vector<std::string> args) {
  auto out = s.child_prefix;
  out.push_back(self_path());
  out.insert(out.end(), args.begin(), args.end());
  out.insert(out.end(), {"--scheduler", scheduler});
  return out;
}

// -- raw twin ----------------------------------------------------------------

struct raw_peer {
  explicit raw_peer(const setup& s)
    : server(
      child_args(s, {"--serve-raw", s.server_host, s.tls() ? s.certs : "-"})) {
    auto files = raw_files_of(s.certs, "bench-client");
    stream.emplace(raw_dial(s.server_host, std::stoi(server.first_line())),
                   s.tls() ? &files : nullptr, false);
    if (!stream->ok())
      fail("the raw twin did not connect");
  }

  child server;
  std::optional<raw_stream> stream;
};

std::vector<double> raw_rtt(raw_peer& peer, int rounds) {
  std::vector<double> out;
  auto frame = raw_frame(raw_mode::echo, rtt_size);
  std::string_view back;
  for (int i = 0; i < rounds; ++i) {
    auto t = clock_type::now();
    if (!peer.stream->write_all(frame) || !peer.stream->next_frame(back))
      fail("the raw twin's echo failed");
    out.push_back(ns_since(t));
  }
  return out;
}

double raw_oneway(raw_peer& peer, std::size_t size, int count) {
  auto frame = raw_frame(raw_mode::swallow, size);
  auto ack = raw_frame(raw_mode::ack, 1);
  std::string_view back;
  auto t = clock_type::now();
  for (int i = 0; i < count; ++i)
    if (!peer.stream->write_all(frame))
      fail("the raw twin's write failed");
  if (!peer.stream->write_all(ack) || !peer.stream->next_frame(back))
    fail("the raw twin's ack failed");
  return count / (ns_since(t) / 1e9);
}

// -- Courier -----------------------------------------------------------------

courier::node_config config_for(const std::string& name, const std::string& dir,
                                const std::string& host,
                                const std::string& certs) {
  courier::node_config config; // threads: the default
  config.scheduler = policy_of(scheduler);
  config.name = name;
  config.directory = dir;
  courier::tcp::options tcp;
  tcp.listen = host + ":0";
  if (!certs.empty())
    tcp.tls
      = courier::tcp::tls_files{certs + "/" + name + ".pem",
                                certs + "/" + name + ".key", certs + "/ca.pem"};
  else if (host.rfind("127.", 0) != 0)
    tcp.allow_plaintext = true; // the veth between our own namespaces
  config.transports = {{"tcp", courier::tcp::factory(tcp)}};
  // The benchmark's nodes let each other do everything: the plaintext peer
  // links as anonymous, the TLS peers by their certificates' names.
  config.rules = {{"anonymous", "*", courier::verbs::all},
                  {"san:bench-*", "*", courier::verbs::all}};
  config.limits.max_frame = 8u << 20;
  return config;
}

/// The Courier child: "echo" answers a Ping with the same Ping; "sink"
/// counts posts and answers a request (an empty Ping) with how many came
/// since the last one.
int courier_serve(const std::string& dir, const std::string& host,
                  const std::string& certs) {
  auto self = courier::node::start(
    config_for("bench-server", dir, host, certs == "-" ? "" : certs));
  if (!self) {
    std::cerr << self.error().to_string() << "\n";
    return 1;
  }
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

std::string make_temp_dir() {
  char pattern[] = "/tmp/courier-bench-tcp-XXXXXX";
  auto* made = ::mkdtemp(pattern);
  if (made == nullptr)
    fail("mkdtemp");
  return made;
}

struct courier_peer {
  explicit courier_peer(const setup& s) : where(s), dir(make_temp_dir()) {
    server.emplace(child_args(
      s, {"--serve-courier", dir, s.server_host, s.tls() ? s.certs : "-"}));
    auto started = courier::node::start(
      config_for("bench-client", dir, s.client_host, s.certs));
    if (!started)
      fail(started.error().to_string());
    client.emplace(std::move(*started));
    // The link, up before anything is measured.
    bench::v1::Ping ping;
    ping.set_pad("warm");
    if (!client->send("echo", ping, std::chrono::seconds{10}))
      fail("the Courier peer does not answer");
  }

  ~courier_peer() {
    client.reset();
    server.reset(); // the serving node ends before its directory goes
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  setup where;
  std::string dir;
  std::optional<child> server;
  std::optional<courier::node> client;
};

std::vector<double> courier_rtt(courier_peer& peer, int rounds, int run) {
  auto out = actor_round_trips(*peer.client, "driver" + std::to_string(run),
                               "echo", rtt_size, rounds);
  auto routes = peer.client->routes(); // the route must be the TCP tier
  if (routes.size() != 1 || routes[0].tier != "tcp")
    fail("the route did not take the TCP tier");
  return out;
}

/// Posts, waiting while the route's backlog is full.
void post_patiently(courier::node& from, const courier::message& msg) {
  if (auto posted = courier::bench::post_waiting(from, "sink", msg); !posted)
    fail("post failed: " + posted.error().message());
}

double courier_oneway(courier_peer& peer, std::size_t size, int count) {
  auto msg = std::make_shared<bench::v1::Ping>();
  msg->set_pad(std::string(size > 16 ? size - 16 : 1, 'x'));
  courier::message posted{msg};
  auto t = clock_type::now();
  for (int i = 0; i < count; ++i)
    post_patiently(*peer.client, posted);
  // Arrives behind the posts on the same link, and says how many came.
  auto counted = peer.client->send<bench::v1::Ping>("sink", bench::v1::Ping{},
                                                    std::chrono::seconds{60});
  auto rate = count / (ns_since(t) / 1e9);
  if (!counted || (*counted)->seq() != count)
    fail("the sink got " + std::to_string(counted ? (*counted)->seq() : -1)
         + " of " + std::to_string(count) + " posts");
  return rate;
}

/// The TCP address the serving node publishes.
std::string server_address(courier_peer& peer) {
  for (const auto& info : peer.client->nodes())
    if (info.name == "bench-server" && !info.addresses.empty())
      return info.addresses[0];
  fail("the serving node publishes no address");
  return {};
}

struct first_times {
  double start, first, second;
};

/// A fresh node's start, and its first and second send to "echo" on the
/// serving node. With `seeded`, the fresh node has a directory of its own
/// and knows the serving node as a static seed: it asks it for its names
/// when it claims its own first name, in node::start, over the link the
/// first send then uses; otherwise it finds it in the shared directory.
first_times courier_first_message(courier_peer& peer, int run, bool seeded) {
  auto name = std::string{"bench-first-"} + peer.where.security() + "-"
              + (seeded ? "seeded-" : "") + std::to_string(run);
  if (peer.where.tls())
    mint(peer.where.certs, name);
  std::string own_dir;
  auto config
    = config_for(name, peer.dir, peer.where.client_host, peer.where.certs);
  if (seeded) {
    own_dir = make_temp_dir();
    config.directory = own_dir;
    config.seeds = {{"bench-server", server_address(peer)}};
  }
  struct cleanup {
    std::string dir;
    ~cleanup() {
      std::error_code ignored;
      if (!dir.empty())
        std::filesystem::remove_all(dir, ignored);
    }
  } remove_dir{own_dir};
  auto t = clock_type::now();
  auto fresh = courier::node::start(std::move(config));
  if (!fresh)
    fail(fresh.error().to_string());
  auto start = ns_since(t);
  bench::v1::Ping ping;
  ping.set_pad(std::string(48, 'x'));
  t = clock_type::now();
  if (!fresh->send("echo", ping, std::chrono::seconds{10}))
    fail("the first send failed");
  auto first = ns_since(t);
  t = clock_type::now();
  if (!fresh->send("echo", ping, std::chrono::seconds{10}))
    fail("the second send failed");
  return {start, first, ns_since(t)};
}

constexpr int fan_in_senders = 4;

/// A fan-in sender (a process of its own, on the client's host): links to
/// the serving node, says "ready", posts `count` 64-byte Pings to "sink"
/// once told "go", then asks the sink and prints "done <what it counted>".
int courier_fan_in_sender(const std::string& dir, const std::string& host,
                          const std::string& certs, const std::string& name,
                          int count) {
  auto self = courier::node::start(
    config_for(name, dir, host, certs == "-" ? "" : certs));
  if (!self) {
    std::cerr << self.error().to_string() << "\n";
    return 1;
  }
  bench::v1::Ping warm;
  warm.set_pad("warm");
  if (!self->send("echo", warm, std::chrono::seconds{10}))
    return 1;
  std::cout << "ready" << std::endl;
  std::string go;
  std::getline(std::cin, go);
  auto msg = std::make_shared<bench::v1::Ping>();
  msg->set_pad(std::string(48, 'x'));
  courier::message posted{msg};
  for (int i = 0; i < count; ++i)
    post_patiently(*self, posted);
  // Behind this sender's posts: when every sender has its answer, the
  // sink has counted every post (each in the answer that followed it).
  auto counted = self->send<bench::v1::Ping>("sink", bench::v1::Ping{},
                                             std::chrono::seconds{120});
  if (!counted)
    return 1;
  std::cout << "done " << (*counted)->seq() << std::endl;
  std::string end;
  std::getline(std::cin, end); // stays up until told: its link stays too
  return 0;
}

/// Aggregate rate of fan_in_senders processes posting `count` each to
/// "sink", from "go" to the last sender's answer.
double courier_fan_in(courier_peer& peer, int count, int run) {
  std::vector<std::unique_ptr<child>> senders;
  for (int i = 0; i < fan_in_senders; ++i) {
    auto name = std::string{"bench-fan-"} + peer.where.security() + "-"
                + std::to_string(run) + "-" + std::to_string(i);
    if (peer.where.tls())
      mint(peer.where.certs, name);
    auto args = std::vector<std::string>{
      self_path(), "--fan-in-sender", peer.dir, peer.where.client_host,
      peer.where.tls() ? peer.where.certs : "-", name, std::to_string(count),
      "--scheduler", scheduler};
    senders.push_back(std::make_unique<child>(args));
    if (senders.back()->first_line() != "ready")
      fail("a fan-in sender did not start");
  }
  auto t = clock_type::now();
  for (auto& sender : senders)
    sender->write_line("go");
  long counted = 0;
  for (auto& sender : senders) {
    auto line = sender->read_line();
    if (line.rfind("done ", 0) != 0)
      fail("a fan-in sender failed");
    counted += std::stol(line.substr(5));
  }
  auto rate = counted / (ns_since(t) / 1e9);
  if (counted != static_cast<long>(count) * fan_in_senders)
    fail("the sink counted " + std::to_string(counted) + " of "
         + std::to_string(count * fan_in_senders) + " fan-in posts");
  return rate;
}

struct plan {
  int runs = 7;
  int rounds = 5000;
  bool rtt = true;
  bool oneway = true;
  bool caf = true;
  bool first = true;
  bool fan_in = true;
  int fan_in_count = 20000; // per sender
  std::vector<std::pair<std::size_t, int>> sizes;
  std::string only_impl; // "courier" or "raw": one side only (profiling)
};

/// The scenarios of one setup (plaintext or TLS).
void run_setup(const setup& s, const plan& p) {
  courier_peer peer{s};
  raw_peer raw{s};
  json_line info;
  info.add("scenario", "setup").add("security", s.security());
  info.add("raw_cipher", raw.stream->cipher());
  info.add("server", s.server_host).add("client", s.client_host);
  std::cout << info.str() << std::endl;
  auto skip = [](auto&&...) { return std::vector<double>{1}; };
  if (p.rtt)
    compare_rtt(
      "rtt", s.security(), p.runs, rtt_size,
      [&](int i) {
        return p.only_impl == "raw" ? skip() : courier_rtt(peer, p.rounds, i);
      },
      [&](int) {
        return p.only_impl == "courier" ? skip() : raw_rtt(raw, p.rounds);
      },
      "courier", "raw");
  for (auto [size, count] : p.sizes) {
    if (!p.oneway)
      break;
    compare_rate(
      "oneway", s.security(), p.runs, size,
      [&, size = size, count = count] {
        return p.only_impl == "raw" ? 1.0 : courier_oneway(peer, size, count);
      },
      [&, size = size, count = count] {
        return p.only_impl == "courier" ? 1.0 : raw_oneway(raw, size, count);
      },
      "courier", "raw");
  }
  if (p.caf && !s.tls()) {
    child server{child_args(s, {"--serve-caf", s.server_host})};
    auto ports = server.first_line();
    auto space = ports.find(' ');
    caf_client caf{s.server_host, std::stoi(ports.substr(0, space)),
                   std::stoi(ports.substr(space + 1))};
    if (!caf.ok())
      fail("CAF's remote actors are not reachable");
    compare_rtt(
      "caf_rtt", s.security(), p.runs, rtt_size,
      [&](int i) { return courier_rtt(peer, p.rounds, i); },
      [&](int) { return caf.rtt(rtt_size, p.rounds); }, "courier", "caf");
    for (auto [size, count] : p.sizes)
      compare_rate(
        "caf_oneway", s.security(), p.runs, size,
        [&, size = size, count = count] {
          return courier_oneway(peer, size, count);
        },
        [&, size = size, count = count] {
          auto rate = caf.oneway(size, count);
          if (rate == 0)
            fail("CAF lost messages");
          return rate;
        },
        "courier", "caf");
  }
  if (p.fan_in)
    // Four senders on the client's host into one actor, next to one
    // sender (this process) posting as many as each of them.
    compare_rate(
      "fan_in", s.security(), p.runs, 64,
      [&, run = 0]() mutable { return courier_fan_in(peer, p.fan_in_count, run++); },
      [&] { return courier_oneway(peer, 64, p.fan_in_count); },
      "courier_4_senders", "courier_1_sender");
  for (bool seeded : {false, true}) {
    if (!p.first)
      break;
    std::vector<double> start, first, second;
    for (int i = 0; i < p.runs; ++i) {
      auto times = courier_first_message(peer, i, seeded);
      start.push_back(times.start);
      first.push_back(times.first);
      second.push_back(times.second);
    }
    json_line line;
    line.add("scenario", seeded ? "first_message_seed" : "first_message");
    line.add("security", s.security());
    line.add("impl", "courier").add("runs", p.runs);
    line.add("start_ns", median(start)).add("first_ns", median(first));
    line.add("second_ns", median(second));
    line.add("first_per_run", ratio_list(first));
    std::cout << line.str() << std::endl;
  }
}

} // namespace

int main(int argc, char** argv) {
  rtt_size = static_cast<std::size_t>(arg(argc, argv, "--rtt-size", 64));
  scheduler = text_arg(argc, argv, "--scheduler", "automatic");
  if (argc >= 5 && std::strcmp(argv[1], "--serve-courier") == 0)
    return courier_serve(argv[2], argv[3], argv[4]);
  if (argc >= 4 && std::strcmp(argv[1], "--serve-raw") == 0) {
    std::string certs = argv[3];
    auto files = raw_files_of(certs, "bench-server");
    return raw_serve(argv[2], certs == "-" ? nullptr : &files);
  }
  if (argc >= 3 && std::strcmp(argv[1], "--serve-caf") == 0)
    return caf_serve(argv[2]);
  if (argc >= 7 && std::strcmp(argv[1], "--fan-in-sender") == 0)
    return courier_fan_in_sender(argv[2], argv[3], argv[4], argv[5],
                                 std::atoi(argv[6]));
  ::signal(SIGPIPE, SIG_IGN);

  plan p;
  bool quick = has_flag(argc, argv, "--quick");
  p.runs = static_cast<int>(arg(argc, argv, "--runs", quick ? 1 : 7));
  p.rounds = static_cast<int>(arg(argc, argv, "--rounds", quick ? 200 : 5000));
  p.sizes = {
    {64, static_cast<int>(arg(argc, argv, "--count-64", quick ? 2000 : 50000))},
    {std::size_t{1} << 20,
     static_cast<int>(arg(argc, argv, "--count-1m", quick ? 8 : 256))}};
  if (auto only = arg(argc, argv, "--oneway-only", 0); only > 0)
    p.sizes
      = {{static_cast<std::size_t>(only),
          static_cast<int>(std::clamp<long>((256l << 20) / only, 20, 50000))}};
  std::string scenario = text_arg(argc, argv, "--scenario", "all");
  if (scenario != "all") {
    p.rtt = scenario == "rtt";
    p.oneway = scenario == "oneway";
    p.caf = scenario == "caf";
    p.first = scenario == "first";
    p.fan_in = scenario == "fan_in";
  }
  p.fan_in_count = static_cast<int>(
    arg(argc, argv, "--fan-in-count", quick ? 1000 : 20000));
  if (has_flag(argc, argv, "--oneway-only")) {
    p.rtt = p.caf = p.first = p.fan_in = false;
    p.oneway = true;
  }
  p.only_impl = text_arg(argc, argv, "--impl", "");
  std::string security = text_arg(argc, argv, "--security", "both");

  auto certs = make_temp_dir();
  mint(certs, "bench-server");
  mint(certs, "bench-client");

  std::optional<bench_hosts> hosts;
  std::vector<setup> setups;
  for (auto tls : {false, true}) {
    if ((tls && security == "plain") || (!tls && security == "tls"))
      continue;
    setup s;
    if (tls)
      s.certs = certs;
    setups.push_back(s);
  }
  if (has_flag(argc, argv, "--netns")) {
    hosts.emplace();
    if (!hosts->ok() || !hosts->enter_a())
      fail("cannot make the network namespaces (root, ip)");
    for (auto& s : setups) {
      s.server_host = bench_hosts::address_b;
      s.client_host = bench_hosts::address_a;
      s.child_prefix = hosts->in_b();
    }
    p.caf = p.first = false;
    p.oneway = p.oneway && scenario == "oneway";
  }
  for (const auto& s : setups)
    run_setup(s, p);
  std::error_code ignored;
  std::filesystem::remove_all(certs, ignored);
  return 0;
}

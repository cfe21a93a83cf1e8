// Durable posts end to end: a producer node posts to an actor of another
// process (over the local tiers), durably and as express posts, in the
// same run, alternating which goes first (docs/benchmarks.md, "Durable
// posts end to end").
//
//   courier_bench_durable_e2e [--runs N] [--messages N] [--paced N]
//                             [--dir PATH] [--quick]
//
// Modes, each N runs:
//   express      one thread posts 64 B messages (node::post)
//   durable_1    one thread posts them durably (node::post_durable): every
//                post waits for its fsync, so this is the disk's fsync rate
//   durable_8    eight threads post durably (group commit)
//   express_paced, durable_paced
//                one message at a time: posted, then handled, then the
//                next (--paced N of them): the path's latency without a
//                queue in front of it
// For each: messages/s from the first post until the handler has handled
// the last one, and the p50 and p99 of post-to-handler latency (the
// handler reads the monotonic clock the post wrote into the message: both
// processes are on this machine). Output: JSON lines per run, then
// medians and the medians of the per-run ratios durable / express.

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "args.hpp"
#include "bench/v1/bench.pb.h"
#include "courier/courier.hpp"
#include "courier/durable/delivery.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"
#include "stats.hpp"

namespace {

using namespace std::chrono_literals;
using courier::bench::arg;
using courier::bench::has_flag;
using courier::bench::median;
using courier::bench::quantile;
using courier::bench::text_arg;
namespace fs = std::filesystem;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

constexpr std::int64_t report_seq = -1; // asks for the figures
constexpr std::int64_t reset_seq = -2;  // starts a new run

courier::node_config config_for(const std::string& name, const fs::path& root,
                                const std::string& store) {
  courier::node_config config;
  config.name = name;
  config.directory = (root / "nodes").string();
  config.transports = {{"pipe", courier::pipe::factory()},
                       {"shm", courier::shm::factory()}};
  courier::durable::delivery_options durable;
  durable.store.directory = (root / store).string();
  config.durable = courier::durable::delivery(durable);
  return config;
}

/// The consumer process: the actor "sink" records post-to-handler
/// latencies; a request with seq -1 answers (count, "p50 p99" in µs), one
/// with seq -2 starts over.
int child(const fs::path& root) {
  auto started = courier::node::start(config_for("sink-node", root,
                                                 "sink-store"));
  if (!started) {
    std::cerr << started.error().to_string() << "\n";
    return 1;
  }
  struct state {
    std::vector<double> latencies_us;
  };
  auto s = std::make_shared<state>();
  auto spawned = started->spawn("sink", [s](courier::context&) {
    return courier::behavior{[s](const bench::v1::Ping& p) {
      bench::v1::Ping reply;
      if (p.seq() == reset_seq) {
        s->latencies_us.clear();
      } else if (p.seq() == report_seq) {
        reply.set_seq(static_cast<std::int64_t>(s->latencies_us.size()));
        if (!s->latencies_us.empty())
          reply.set_pad(std::to_string(quantile(s->latencies_us, 0.5)) + " "
                        + std::to_string(quantile(s->latencies_us, 0.99)));
      } else {
        std::int64_t sent = 0;
        std::memcpy(&sent, p.pad().data(),
                    std::min(sizeof sent, p.pad().size()));
        s->latencies_us.push_back(static_cast<double>(now_ns() - sent) / 1e3);
      }
      return reply;
    }};
  });
  if (!spawned) {
    std::cerr << spawned.error().to_string() << "\n";
    return 1;
  }
  std::cout << "ready" << std::endl;
  char c;
  while (::read(STDIN_FILENO, &c, 1) > 0) {
  }
  return 0;
}

struct figures {
  double rate = 0, p50_us = 0, p99_us = 0;
};

bench::v1::Ping payload(std::int64_t seq) {
  bench::v1::Ping p;
  p.set_seq(seq);
  std::string pad(56, '\0');
  auto t = now_ns();
  std::memcpy(pad.data(), &t, sizeof t);
  p.set_pad(std::move(pad));
  return p;
}

figures run_mode(courier::node& producer, const std::string& mode,
                 long messages) {
  bench::v1::Ping control;
  control.set_seq(reset_seq);
  if (!producer.send("sink", control, 10s))
    throw std::runtime_error{"the sink does not answer"};
  auto t0 = std::chrono::steady_clock::now();
  auto post_range = [&](long from, long to) {
    for (long i = from; i < to; ++i) {
      for (;;) {
        auto msg = payload(i);
        courier::expected<void> posted;
        if (mode == "express")
          posted = producer.post("sink", msg);
        else if (auto id = producer.post_durable("sink", msg); !id)
          posted = id.error();
        if (posted)
          break;
        if (posted.code() != courier::errc::resource_exhausted)
          throw std::runtime_error{posted.error().to_string()};
        std::this_thread::sleep_for(100us); // a full queue: wait for room
      }
    }
  };
  if (mode.ends_with("_paced")) {
    // One at a time: each message is handled before the next is posted,
    // so its latency is the path's own, not the queue's.
    control.set_seq(report_seq);
    for (long i = 0; i < messages; ++i) {
      auto msg = payload(i);
      auto posted = mode == "express_paced"
                      ? producer.post("sink", msg)
                      : producer.post_durable("sink", msg).has_value()
                          ? courier::expected<void>{}
                          : courier::expected<void>{courier::error{
                            courier::errc::internal, "post failed"}};
      if (!posted)
        throw std::runtime_error{posted.error().to_string()};
      auto until = std::chrono::steady_clock::now() + 30s;
      for (;;) {
        auto seen = producer.send<bench::v1::Ping>("sink", control, 10s);
        if (seen && (*seen)->seq() > i)
          break;
        if (std::chrono::steady_clock::now() > until)
          throw std::runtime_error{"a paced message was never handled"};
      }
    }
  } else if (mode == "durable_8") {
    std::vector<std::thread> threads;
    for (long t = 0; t < 8; ++t)
      threads.emplace_back(post_range, messages * t / 8,
                           messages * (t + 1) / 8);
    for (auto& t : threads)
      t.join();
  } else {
    post_range(0, messages);
  }
  control.set_seq(report_seq);
  auto deadline = std::chrono::steady_clock::now() + 120s;
  for (;;) {
    auto reply = producer.send<bench::v1::Ping>("sink", control, 10s);
    if (reply && (*reply)->seq() >= messages) {
      figures f;
      f.rate = static_cast<double>(messages)
               / std::chrono::duration<double>(
                   std::chrono::steady_clock::now() - t0)
                   .count();
      std::sscanf((*reply)->pad().c_str(), "%lf %lf", &f.p50_us, &f.p99_us);
      return f;
    }
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error{"the sink never saw every message"};
    std::this_thread::sleep_for(1ms);
  }
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string{argv[1]} == "--child")
    return child(argv[2]);
  bool quick = has_flag(argc, argv, "--quick");
  auto runs = arg(argc, argv, "--runs", quick ? 1 : 5);
  auto messages = arg(argc, argv, "--messages", quick ? 200 : 20'000);
  auto paced = arg(argc, argv, "--paced", quick ? 20 : 500);
  fs::path root = fs::path{text_arg(argc, argv, "--dir", "/var/tmp")}
                  / ("courier-e2e-" + std::to_string(::getpid()));
  fs::create_directories(root / "nodes");
  int status = 0;
  try {
    int to_child[2], from_child[2];
    if (::pipe(to_child) != 0 || ::pipe(from_child) != 0)
      throw std::runtime_error{"pipe"};
    pid_t pid = ::fork();
    if (pid == 0) {
      ::dup2(to_child[0], STDIN_FILENO);
      ::dup2(from_child[1], STDOUT_FILENO);
      for (int fd : {to_child[0], to_child[1], from_child[0], from_child[1]})
        ::close(fd);
      ::execl("/proc/self/exe", argv[0], "--child", root.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(to_child[0]);
    ::close(from_child[1]);
    std::string seen;
    char c;
    while (seen.find("ready") == std::string::npos
           && ::read(from_child[0], &c, 1) == 1)
      seen += c;
    if (seen.find("ready") == std::string::npos)
      throw std::runtime_error{"the sink process did not start"};
    {
      auto producer = courier::node::start(
        config_for("producer-node", root, "producer-store"));
      if (!producer)
        throw std::runtime_error{producer.error().to_string()};
      // A first message makes the route; not measured.
      (void)run_mode(*producer, "express", 10);
      std::vector<std::string> modes{"express", "durable_1", "durable_8",
                                     "express_paced", "durable_paced"};
      std::map<std::string, std::vector<figures>> all;
      std::vector<double> rate_1, rate_8, p50_1, p50_8, p99_1, p99_8,
        paced_50, paced_99;
      for (int r = 0; r < runs; ++r) {
        auto order = modes;
        if (r % 2 == 1)
          std::reverse(order.begin(), order.end());
        std::map<std::string, figures> now;
        for (const auto& mode : order) {
          now[mode] = run_mode(*producer, mode,
                               mode.ends_with("_paced") ? paced : messages);
          all[mode].push_back(now[mode]);
          std::cout << "{\"run\":" << r << ",\"mode\":\"" << mode
                    << "\",\"messages\":" << messages << ",\"per_s\":"
                    << now[mode].rate << ",\"p50_us\":" << now[mode].p50_us
                    << ",\"p99_us\":" << now[mode].p99_us << "}" << std::endl;
        }
        const auto& e = now["express"];
        rate_1.push_back(now["durable_1"].rate / e.rate);
        rate_8.push_back(now["durable_8"].rate / e.rate);
        p50_1.push_back(now["durable_1"].p50_us / e.p50_us);
        p50_8.push_back(now["durable_8"].p50_us / e.p50_us);
        p99_1.push_back(now["durable_1"].p99_us / e.p99_us);
        p99_8.push_back(now["durable_8"].p99_us / e.p99_us);
        const auto& ep = now["express_paced"];
        paced_50.push_back(now["durable_paced"].p50_us / ep.p50_us);
        paced_99.push_back(now["durable_paced"].p99_us / ep.p99_us);
      }
      for (const auto& mode : modes) {
        std::vector<double> rate, p50, p99;
        for (const auto& f : all[mode]) {
          rate.push_back(f.rate);
          p50.push_back(f.p50_us);
          p99.push_back(f.p99_us);
        }
        std::cout << "{\"median\":\"" << mode << "\",\"per_s\":"
                  << median(rate) << ",\"p50_us\":" << median(p50)
                  << ",\"p99_us\":" << median(p99) << "}" << std::endl;
      }
      std::cout << "{\"ratio\":\"durable_1/express\",\"per_s\":"
                << median(rate_1) << ",\"p50\":" << median(p50_1)
                << ",\"p99\":" << median(p99_1) << "}\n"
                << "{\"ratio\":\"durable_8/express\",\"per_s\":"
                << median(rate_8) << ",\"p50\":" << median(p50_8)
                << ",\"p99\":" << median(p99_8) << "}\n"
                << "{\"ratio\":\"durable_paced/express_paced\",\"p50\":"
                << median(paced_50) << ",\"p99\":" << median(paced_99) << "}"
                << std::endl;
    }
    ::close(to_child[1]); // the sink exits at EOF
    ::waitpid(pid, nullptr, 0);
  } catch (const std::exception& ex) {
    std::cerr << "courier_bench_durable_e2e: " << ex.what() << "\n";
    status = 1;
  }
  std::error_code ignored;
  fs::remove_all(root, ignored);
  return status;
}

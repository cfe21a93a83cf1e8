// Shared-memory ring benchmark: Courier's ring next to its raw twin, across
// two processes (the parent fork()s a child for every measurement).
//
// The raw twin is the floor: raw_ring.hpp, a minimal SPSC byte ring with
// Courier's record layout and wait policies and nothing else.
//
// Scenarios, each run for both implementations with the same wait policy on
// both ends, in alternating order, --runs times:
//   rtt         64-byte ping-pong over two rings (one per direction); the
//               parent times every round trip
//   throughput  one-way stream of 64 B, 4 KiB or 1 MiB messages; the
//               consumer answers once it read the last one
// Each measurement stops at a message count or a time cap, whichever comes
// first. Rings are 1 MiB (4 MiB for 1 MiB messages); both sides copy every
// message in and out, and the child attaches to the Courier segment through
// a duplicated descriptor, as a peer would.
//
// Output: one JSON line per scenario, size, policy and implementation
// (medians over the runs; rtt_* only for rtt), then one "courier/raw" line
// with the medians of the per-run ratios.
//
// Usage: courier_bench_shm_ring [--runs N] [--placement same|cross|none]
//                               [--policy spin|hybrid|block|all]
//                               [--scenario rtt|throughput|all]
//                               [--size 64|4096|1048576] [--quick]
//   same: both processes pinned to CPU 0; cross: parent on CPU 0, child on
//   CPU 1; none: the scheduler decides. --quick shrinks every measurement
//   (a smoke test).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "courier/shm/ring.hpp"
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
using namespace std::chrono_literals;

constexpr auto spin_budget = std::chrono::microseconds{50};
// One deadline per measurement (a measurement lasts well under a second):
// computing one per call would put a clock read on every message.
constexpr auto io_timeout = std::chrono::seconds{30};

// Byte 0 of every benchmark message says what it is.
constexpr std::byte kind_data{0};
constexpr std::byte kind_last{1};
constexpr std::byte kind_ready{2};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "courier_bench_shm_ring: %s\n", what.c_str());
  std::exit(1);
}

namespace raw = courier::bench::raw_ring;


// -- the two implementations behind one interface -----------------------------

struct raw_impl {
  static constexpr const char* name = "raw";
  using memory = raw::memory;
  using producer = raw::producer;
  using consumer = raw::consumer;

  static memory make(std::size_t capacity) {
    auto m = raw::make(capacity);
    if (m.head == nullptr)
      die("mmap failed");
    return m;
  }

  /// In the child: the mapping is inherited.
  static memory share(memory& m) {
    return m;
  }

  static producer open_producer(memory& m, wait_policy policy) {
    return producer{m, {policy, spin_budget, false}};
  }

  static consumer open_consumer(memory& m, wait_policy policy) {
    return consumer{m, {policy, spin_budget, false}};
  }

  static void release(memory& m) {
    raw::release(m);
  }
};

struct courier_impl {
  static constexpr const char* name = "courier";
  using memory = std::optional<courier::shm::segment>;

  static courier::shm::ring_options options(wait_policy policy) {
    courier::shm::ring_options o;
    o.policy = policy;
    o.spin_budget = spin_budget;
    o.max_message_size = std::size_t{8} << 20;
    return o;
  }

  class producer {
  public:
    explicit producer(courier::shm::producer p) : p_(std::move(p)) {}

    bool write(std::span<const std::byte> message) {
      return static_cast<bool>(p_.write(message, until_));
    }

  private:
    courier::shm::producer p_;
    courier::deadline until_{io_timeout};
  };

  class consumer {
  public:
    explicit consumer(courier::shm::consumer c) : c_(std::move(c)) {}

    bool read(std::vector<std::byte>& out) {
      return static_cast<bool>(c_.read(out, until_));
    }

  private:
    courier::shm::consumer c_;
    courier::deadline until_{io_timeout};
  };

  static memory make(std::size_t capacity) {
    auto s = courier::shm::segment::create(capacity);
    if (!s)
      die(s.error().to_string());
    return std::move(*s);
  }

  /// In the child: attach to a duplicate of the descriptor, as a peer that
  /// received it over SCM_RIGHTS would.
  static memory share(memory& m) {
    auto s = courier::shm::segment::attach(::dup(m->fd()));
    if (!s)
      die(s.error().to_string());
    return std::move(*s);
  }

  static producer open_producer(memory& m, wait_policy policy) {
    auto p = courier::shm::producer::open(std::move(*m), options(policy));
    if (!p)
      die(p.error().to_string());
    return producer{std::move(*p)};
  }

  static consumer open_consumer(memory& m, wait_policy policy) {
    auto c = courier::shm::consumer::open(std::move(*m), options(policy));
    if (!c)
      die(c.error().to_string());
    return consumer{std::move(*c)};
  }

  static void release(memory& m) {
    m.reset();
  }
};

// -- measurements -------------------------------------------------------------

enum class placement { none, same, cross };

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0)
    die("sched_setaffinity to CPU " + std::to_string(cpu) + " failed");
}

struct scenario {
  std::string name; // "rtt" or "throughput"
  std::size_t size;
  std::size_t max_messages;
  clock_type::duration time_cap;
};

/// What one run of one implementation measured.
struct sample {
  double seconds = 0;
  double messages = 0;
  std::vector<double> rtts_ns;
};

template <class Impl>
sample measure(const scenario& s, wait_policy policy, placement where) {
  auto capacity = s.size >= (std::size_t{1} << 20) ? std::size_t{4} << 20
                                                   : std::size_t{1} << 20;
  auto there = Impl::make(capacity);
  auto back = Impl::make(capacity);
  const bool rtt = s.name == "rtt";
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0)
    die("fork failed");
  if (pid == 0) {
    if (where == placement::cross)
      pin_to(1);
    auto in_memory = Impl::share(there);
    auto out_memory = Impl::share(back);
    auto in = Impl::open_consumer(in_memory, policy);
    auto out = Impl::open_producer(out_memory, policy);
    std::vector<std::byte> message(s.size, kind_ready);
    const std::vector<std::byte> done(8, kind_last);
    if (!out.write(done))
      ::_exit(2);
    for (;;) {
      if (!in.read(message) || message.empty())
        ::_exit(3);
      auto kind = message[0];
      // Echo every message of a ping-pong; answer the last of a stream.
      if (rtt || kind == kind_last)
        if (!out.write(rtt ? message : done))
          ::_exit(4);
      if (kind == kind_last)
        ::_exit(0);
    }
  }
  sample result;
  {
    auto out = Impl::open_producer(there, policy);
    auto in = Impl::open_consumer(back, policy);
    std::vector<std::byte> message(s.size, kind_data);
    std::vector<std::byte> reply;
    if (!in.read(reply)) // the child is ready
      die("no ready message from the child");
    // Reading the clock for the cap costs little next to a 4 KiB copy, and
    // would show in a 64-byte stream: look at it every 64 KiB.
    const std::size_t check_every
      = std::max<std::size_t>(1, (std::size_t{64} << 10) / s.size);
    constexpr std::size_t rtt_warmup = 200;
    if (rtt)
      result.rtts_ns.reserve(s.max_messages);
    auto started = clock_type::now();
    std::size_t sent = 0;
    for (bool last = false; !last;) {
      last = sent + 1 == s.max_messages
             || (sent % check_every == 0 && sent > 0
                 && clock_type::now() - started >= s.time_cap);
      message[0] = last ? kind_last : kind_data;
      auto t0 = rtt ? clock_type::now() : clock_type::time_point{};
      if (!out.write(message))
        die("write failed");
      ++sent;
      if (rtt) {
        if (!in.read(reply))
          die("read failed");
        if (sent > rtt_warmup)
          result.rtts_ns.push_back(
            std::chrono::duration<double, std::nano>(clock_type::now() - t0)
              .count());
      }
    }
    if (!rtt && !in.read(reply)) // the child read the last message
      die("no answer to the last message");
    result.seconds
      = std::chrono::duration<double>(clock_type::now() - started).count();
    // A round trip carries two messages.
    result.messages
      = rtt ? 2.0 * static_cast<double>(sent) : static_cast<double>(sent);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die(std::string{Impl::name} + " child failed with status "
        + std::to_string(status));
  Impl::release(there);
  Impl::release(back);
  return result;
}

// -- reporting ----------------------------------------------------------------

struct series {
  std::vector<double> msgs_per_s;
  std::vector<double> p50;
  std::vector<double> p99;
};

void add_sample(series& to, const sample& s) {
  to.msgs_per_s.push_back(s.messages / s.seconds);
  if (!s.rtts_ns.empty()) {
    to.p50.push_back(quantile(s.rtts_ns, 0.5));
    to.p99.push_back(quantile(s.rtts_ns, 0.99));
  }
}

json_line base_line(const scenario& s, const char* impl, wait_policy policy,
                    const char* where, std::size_t runs) {
  json_line line;
  line.add("scenario", s.name)
    .add("impl", impl)
    .add("policy", std::string{courier::shm::to_string(policy)})
    .add("placement", where)
    .add("size", static_cast<double>(s.size))
    .add("runs", static_cast<double>(runs));
  return line;
}

void report(const scenario& s, wait_policy policy, const char* where,
            const series& courier, const series& raw) {
  auto runs = courier.msgs_per_s.size();
  auto mib = static_cast<double>(s.size) / (1024.0 * 1024.0);
  for (auto [impl, data] :
       {std::pair{"courier", &courier}, std::pair{"raw", &raw}}) {
    auto line = base_line(s, impl, policy, where, runs);
    auto rate = median(data->msgs_per_s);
    line.add("msgs_per_s", rate).add("mib_per_s", rate * mib);
    if (!data->p50.empty())
      line.add("rtt_p50_ns", median(data->p50))
        .add("rtt_p99_ns", median(data->p99));
    std::cout << line.str() << std::endl;
  }
  auto ratios = [](const std::vector<double>& x, const std::vector<double>& y) {
    std::vector<double> r;
    for (std::size_t i = 0; i < x.size() && i < y.size(); ++i)
      r.push_back(x[i] / y[i]);
    return median(r);
  };
  auto line = base_line(s, "courier/raw", policy, where, runs);
  line.add("msgs_per_s_ratio", ratios(courier.msgs_per_s, raw.msgs_per_s));
  if (!courier.p50.empty())
    line.add("rtt_p50_ratio", ratios(courier.p50, raw.p50))
      .add("rtt_p99_ratio", ratios(courier.p99, raw.p99));
  std::cout << line.str() << std::endl;
}

} // namespace

int main(int argc, char** argv) {
  auto runs = std::strtol(text_arg(argc, argv, "--runs", "11"), nullptr, 10);
  std::string where = text_arg(argc, argv, "--placement", "none");
  std::string policy_name = text_arg(argc, argv, "--policy", "all");
  std::string scenario_name = text_arg(argc, argv, "--scenario", "all");
  auto only_size
    = std::strtoul(text_arg(argc, argv, "--size", "0"), nullptr, 10);
  bool quick = has_flag(argc, argv, "--quick");
  if (runs < 1)
    die("--runs must be at least 1");
  placement place = placement::none;
  if (where == "same")
    place = placement::same;
  else if (where == "cross")
    place = placement::cross;
  else if (where != "none")
    die("--placement must be same, cross or none");
  if (place == placement::cross && ::sysconf(_SC_NPROCESSORS_ONLN) < 2)
    die("--placement cross needs two CPUs");
  if (place != placement::none)
    pin_to(0); // the child inherits it; under cross it moves to CPU 1

  std::vector<wait_policy> policies;
  for (auto p : {wait_policy::spin, wait_policy::hybrid, wait_policy::block})
    if (policy_name == "all" || policy_name == courier::shm::to_string(p))
      policies.push_back(p);
  if (policies.empty())
    die("--policy must be spin, hybrid, block or all");

  auto cap = [quick](clock_type::duration d) {
    return quick ? clock_type::duration{d / 20} : d;
  };
  auto count = [quick](std::size_t n) { return quick ? n / 20 : n; };
  std::vector<scenario> scenarios;
  for (const scenario& s : {
         scenario{"rtt", 64, count(20'000), cap(150ms)},
         scenario{"throughput", 64, count(2'000'000), cap(100ms)},
         scenario{"throughput", 4096, count(400'000), cap(100ms)},
         scenario{"throughput", std::size_t{1} << 20, count(2'000), cap(150ms)},
       })
    if ((scenario_name == "all" || scenario_name == s.name)
        && (only_size == 0 || only_size == s.size))
      scenarios.push_back(s);
  if (scenarios.empty())
    die("--scenario must be rtt, throughput or all; --size 64, 4096 or "
        "1048576");

  for (const auto& s : scenarios) {
    for (auto policy : policies) {
      series courier;
      series raw;
      for (long run = 0; run < runs; ++run) {
        // Alternate which implementation goes first.
        if (run % 2 == 0) {
          add_sample(courier, measure<courier_impl>(s, policy, place));
          add_sample(raw, measure<raw_impl>(s, policy, place));
        } else {
          add_sample(raw, measure<raw_impl>(s, policy, place));
          add_sample(courier, measure<courier_impl>(s, policy, place));
        }
      }
      report(s, policy, where.c_str(), courier, raw);
    }
  }
  return 0;
}

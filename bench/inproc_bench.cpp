// In-process benchmark: Courier next to its raw CAF twin.
//
// Scenarios (each run once per repetition for Courier and once for raw CAF,
// in alternating order, each in a fresh actor system with the same number of
// scheduler threads):
//   ping_pong     two actors post a Ping back and forth; the initiator times
//                 every round trip
//   request_reply one actor requests, awaits the reply, requests again
//   fan_in        4 plain threads post to one actor; throughput until the
//                 last message is handled
// Output: one JSON line per scenario and implementation (medians over the
// repetitions), then one line of medians of the per-repetition
// Courier/raw ratios.
//
// Usage: courier_bench_inproc [--runs N] [--rounds N] [--per-sender N]
//                             [--scenario NAME] [--max-mailbox N]
// --max-mailbox sets node_config::max_mailbox (0: no limit, nothing
// counted; default: the node's default), to measure what the bound costs.

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include "bench/v1/bench.pb.h"
#include "courier/courier.hpp"
#include "args.hpp"
#include "stats.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using ping_ptr = std::shared_ptr<const bench::v1::Ping>;
using courier::bench::arg;
using courier::bench::has_flag;
using courier::bench::json_line;
using courier::bench::text_arg;
using courier::bench::median;
using courier::bench::quantile;

constexpr std::size_t worker_threads = 2;
constexpr auto request_timeout = std::chrono::seconds{10};

std::int64_t ns_since(clock_type::time_point start) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now()
                                                              - start)
    .count();
}

ping_ptr make_ping(std::int64_t seq) {
  auto msg = std::make_shared<bench::v1::Ping>();
  msg->set_seq(seq);
  return msg;
}

/// What one run of one implementation measured.
struct sample {
  double seconds = 0;
  double messages = 0;
  std::vector<double> rtts_ns; // empty for throughput scenarios

  double msgs_per_s() const {
    return messages / seconds;
  }
};

} // namespace

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ping_ptr)

namespace {

// -- raw CAF twins ------------------------------------------------------------

caf::actor_system_config& raw_config() {
  static caf::actor_system_config cfg = [] {
    caf::actor_system_config c;
    c.set("scheduler.max-threads",
          static_cast<caf::config_value::integer>(worker_threads));
    return c;
  }();
  return cfg;
}

/// Answers every Ping with a new Ping carrying the same sequence number.
class raw_echo : public caf::event_based_actor {
public:
  using caf::event_based_actor::event_based_actor;

  caf::behavior make_behavior() override {
    return {[](ping_ptr& p) { return make_ping(p->seq()); }};
  }
};

/// Drives `rounds` round trips to `peer`, by send (ping-pong) or request.
class raw_driver : public caf::event_based_actor {
public:
  raw_driver(caf::actor_config& cfg, caf::actor peer, std::int64_t rounds,
             bool use_request, std::promise<sample>* done)
    : caf::event_based_actor(cfg),
      peer_(std::move(peer)),
      rounds_(rounds),
      use_request_(use_request),
      done_(done) {
    result_.rtts_ns.reserve(rounds);
  }

  caf::behavior make_behavior() override {
    started_ = clock_type::now();
    next();
    return {[this](ping_ptr& p) { on_reply(p); }};
  }

private:
  void next() {
    sent_ = clock_type::now();
    if (use_request_)
      request(peer_, request_timeout, make_ping(seq_))
        .then([this](ping_ptr& p) { on_reply(p); });
    else
      send(peer_, make_ping(seq_));
  }

  void on_reply(const ping_ptr&) {
    result_.rtts_ns.push_back(static_cast<double>(ns_since(sent_)));
    if (++seq_ < rounds_) {
      next();
      return;
    }
    result_.seconds = ns_since(started_) / 1e9;
    result_.messages = 2.0 * rounds_;
    done_->set_value(std::move(result_));
    quit();
  }

  caf::actor peer_;
  std::int64_t rounds_;
  bool use_request_;
  std::promise<sample>* done_;
  sample result_;
  std::int64_t seq_ = 0;
  clock_type::time_point started_;
  clock_type::time_point sent_;
};

sample raw_round_trips(std::int64_t rounds, bool use_request) {
  caf::actor_system sys{raw_config()};
  std::promise<sample> done;
  auto echo = sys.spawn<raw_echo>();
  sys.spawn<raw_driver>(echo, rounds, use_request, &done);
  auto result = done.get_future().get();
  caf::anon_send_exit(echo, caf::exit_reason::user_shutdown);
  return result;
}

/// Counts Pings; fulfils the promise at `expected`.
class raw_sink : public caf::event_based_actor {
public:
  raw_sink(caf::actor_config& cfg, std::int64_t expected,
           std::promise<void>* done)
    : caf::event_based_actor(cfg), expected_(expected), done_(done) {
  }

  caf::behavior make_behavior() override {
    return {[this](ping_ptr&) {
      if (++count_ == expected_)
        done_->set_value();
    }};
  }

private:
  std::int64_t expected_;
  std::promise<void>* done_;
  std::int64_t count_ = 0;
};

template <class Post>
sample fan_in(int senders, std::int64_t per_sender, std::future<void> done,
              Post post) {
  std::vector<std::thread> threads;
  std::promise<void> go;
  auto start_signal = go.get_future().share();
  for (int s = 0; s < senders; ++s)
    threads.emplace_back([&, start_signal] {
      start_signal.wait();
      for (std::int64_t i = 0; i < per_sender; ++i)
        post(i);
    });
  auto started = clock_type::now();
  go.set_value();
  for (auto& t : threads)
    t.join();
  done.wait();
  sample result;
  result.seconds = ns_since(started) / 1e9;
  result.messages = static_cast<double>(senders * per_sender);
  return result;
}

sample raw_fan_in(int senders, std::int64_t per_sender) {
  caf::actor_system sys{raw_config()};
  std::promise<void> done;
  auto sink = sys.spawn<raw_sink>(senders * per_sender, &done);
  auto result = fan_in(senders, per_sender, done.get_future(),
                       [&](std::int64_t i) { caf::anon_send(sink, make_ping(i)); });
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  return result;
}

// -- Courier ------------------------------------------------------------------

/// --max-mailbox N; negative: the node's default.
long max_mailbox = -1;

/// node_config::metrics of the next node started (--metrics flips it per
/// run).
bool metrics_on = true;

courier::node start_node() {
  courier::node_config config;
  config.name = "bench";
  config.join_directory = false; // in process only: no machine directory
  config.worker_threads = worker_threads;
  config.metrics = metrics_on;
  if (max_mailbox >= 0)
    config.max_mailbox = static_cast<std::size_t>(max_mailbox);
  auto started = courier::node::start(std::move(config));
  if (!started) {
    std::cerr << "cannot start node: " << started.error().to_string() << "\n";
    std::exit(1);
  }
  return std::move(*started);
}

/// Answers a Ping with a new Ping; `by_post` posts it back to the sender's
/// name instead of replying.
courier::actor_factory courier_echo(bool by_post) {
  return [by_post](courier::context& ctx) {
    return courier::behavior{[&ctx, by_post](const bench::v1::Ping& p)
                               -> courier::expected<courier::message> {
      if (!by_post)
        return courier::message{make_ping(p.seq())};
      if (auto posted = ctx.post(ctx.sender(), make_ping(p.seq())); !posted)
        return posted.error();
      return courier::message{};
    }};
  };
}

sample courier_round_trips(std::int64_t rounds, bool use_request) {
  auto n = start_node();
  std::promise<sample> done;
  if (!n.spawn("echo", courier_echo(!use_request))) {
    std::cerr << "cannot spawn echo\n";
    std::exit(1);
  }
  struct driver_state {
    sample result;
    std::int64_t seq = 0;
    clock_type::time_point started;
    clock_type::time_point sent;
  };
  auto spawned = n.spawn("driver", [&](courier::context& ctx) {
    auto st = std::make_shared<driver_state>();
    st->result.rtts_ns.reserve(rounds);
    auto on_reply = std::make_shared<std::function<void()>>();
    auto next = [&ctx, st, on_reply, use_request] {
      st->sent = clock_type::now();
      if (use_request)
        ctx.request("echo", make_ping(st->seq), request_timeout)
          .then([on_reply](const bench::v1::Ping&) { (*on_reply)(); },
                [](const courier::error& e) {
                  std::cerr << "request failed: " << e.to_string() << "\n";
                  std::exit(1);
                });
      else if (!ctx.post("echo", make_ping(st->seq)))
        std::exit(1);
    };
    *on_reply = [&, st, next] {
      st->result.rtts_ns.push_back(static_cast<double>(ns_since(st->sent)));
      if (++st->seq < rounds) {
        next();
        return;
      }
      st->result.seconds = ns_since(st->started) / 1e9;
      st->result.messages = 2.0 * rounds;
      done.set_value(std::move(st->result));
    };
    return courier::behavior{
      // Kick-off (seq < 0) and, in ping-pong, the echoes posted back.
      [st, next, on_reply](const bench::v1::Ping& p) {
        if (p.seq() < 0) {
          st->started = clock_type::now();
          next();
        } else {
          (*on_reply)();
        }
      },
    };
  });
  if (!spawned || !n.post("driver", make_ping(-1))) {
    std::cerr << "cannot start driver\n";
    std::exit(1);
  }
  return done.get_future().get();
}

sample courier_fan_in(int senders, std::int64_t per_sender) {
  auto n = start_node();
  std::promise<void> done;
  auto expected = senders * per_sender;
  auto spawned = n.spawn("sink", [&, expected](courier::context&) {
    auto count = std::make_shared<std::int64_t>(0);
    return courier::behavior{[&, count, expected](const bench::v1::Ping&) {
      if (++*count == expected)
        done.set_value();
    }};
  });
  if (!spawned)
    std::exit(1);
  return fan_in(senders, per_sender, done.get_future(), [&](std::int64_t i) {
    if (!n.post("sink", make_ping(i)))
      std::exit(1);
  });
}

// -- reporting --------------------------------------------------------------

struct series {
  std::vector<double> rate, p50, p99;

  void add(const sample& s) {
    rate.push_back(s.msgs_per_s());
    if (!s.rtts_ns.empty()) {
      p50.push_back(quantile(s.rtts_ns, 0.5));
      p99.push_back(quantile(s.rtts_ns, 0.99));
    }
  }

  void report(const std::string& scenario, const std::string& impl,
              int runs) const {
    json_line line;
    line.add("scenario", scenario).add("impl", impl).add("runs", runs);
    line.add("msgs_per_s", median(rate));
    if (!p50.empty())
      line.add("rtt_p50_ns", median(p50)).add("rtt_p99_ns", median(p99));
    std::cout << line.str() << std::endl;
  }
};

/// What the two sides of a scenario are: Courier and raw CAF, or (with
/// --metrics) Courier with metrics on and off.
const char* first_impl = "courier";
const char* second_impl = "raw";

void report_ratios(const std::string& scenario, const series& c,
                   const series& r, int runs) {
  std::vector<double> rate, p50, p99;
  for (std::size_t i = 0; i < c.rate.size(); ++i)
    rate.push_back(c.rate[i] / r.rate[i]);
  for (std::size_t i = 0; i < c.p50.size(); ++i) {
    p50.push_back(c.p50[i] / r.p50[i]);
    p99.push_back(c.p99[i] / r.p99[i]);
  }
  json_line line;
  line.add("scenario", scenario)
    .add("impl", std::string{first_impl} + "/" + second_impl)
    .add("runs", runs);
  line.add("msgs_per_s_ratio", median(rate));
  if (!p50.empty())
    line.add("rtt_p50_ratio", median(p50)).add("rtt_p99_ratio", median(p99));
  std::cout << line.str() << std::endl;
}

/// Only this scenario runs when set (--scenario NAME).
std::string only_scenario;

template <class Courier, class Raw>
void scenario(const std::string& name, int runs, Courier courier_run,
              Raw raw_run) {
  if (!only_scenario.empty() && only_scenario != name)
    return;
  series c, r;
  for (int i = 0; i < runs; ++i) {
    // Alternate who goes first so that warm-up and drift hit both alike.
    if (i % 2 == 0) {
      c.add(courier_run());
      r.add(raw_run());
    } else {
      r.add(raw_run());
      c.add(courier_run());
    }
  }
  c.report(name, first_impl, runs);
  r.report(name, second_impl, runs);
  report_ratios(name, c, r, runs);
}

} // namespace

int main(int argc, char** argv) {
  auto runs = static_cast<int>(arg(argc, argv, "--runs", 11));
  auto rounds = arg(argc, argv, "--rounds", 20000);
  auto per_sender = arg(argc, argv, "--per-sender", 100000);
  max_mailbox = arg(argc, argv, "--max-mailbox", -1);
  if (const char* name = text_arg(argc, argv, "--scenario"))
    only_scenario = name;
  if (runs < 1 || rounds < 1 || per_sender < 1) {
    std::cerr << "usage: courier_bench_inproc [--runs N] [--rounds N] "
                 "[--per-sender N] [--scenario ping_pong|request_reply|"
                 "fan_in_4_to_1] [--max-mailbox N] [--metrics]\n";
    return 2;
  }
  if (has_flag(argc, argv, "--metrics")) {
    // Courier against itself: metrics on, then off, runs alternated.
    first_impl = "metrics_on";
    second_impl = "metrics_off";
    auto with = [](bool on, auto run) {
      return [on, run] {
        metrics_on = on;
        return run();
      };
    };
    scenario("ping_pong", runs,
             with(true, [&] { return courier_round_trips(rounds, false); }),
             with(false, [&] { return courier_round_trips(rounds, false); }));
    scenario("request_reply", runs,
             with(true, [&] { return courier_round_trips(rounds, true); }),
             with(false, [&] { return courier_round_trips(rounds, true); }));
    scenario("fan_in_4_to_1", runs,
             with(true, [&] { return courier_fan_in(4, per_sender); }),
             with(false, [&] { return courier_fan_in(4, per_sender); }));
    return 0;
  }
  scenario("ping_pong", runs,
           [&] { return courier_round_trips(rounds, false); },
           [&] { return raw_round_trips(rounds, false); });
  scenario("request_reply", runs,
           [&] { return courier_round_trips(rounds, true); },
           [&] { return raw_round_trips(rounds, true); });
  scenario("fan_in_4_to_1", runs,
           [&] { return courier_fan_in(4, per_sender); },
           [&] { return raw_fan_in(4, per_sender); });
  return 0;
}

#pragma once

// Shared helpers for Courier's tests: waiting on conditions with deadlines
// (never bare sleeps) and a quiet node.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "courier/courier.hpp"
#include "courier_test/v1/test.pb.h"

namespace courier::testing {

using namespace std::chrono_literals;
namespace tpb = courier_test::v1;

/// How long a test waits for something that should happen at once.
inline constexpr auto patience = std::chrono::seconds{10};

/// A thread-safe record of events that tests wait on.
template <class T>
class probe {
public:
  void push(T value) {
    {
      std::lock_guard guard{mu_};
      items_.push_back(std::move(value));
    }
    cv_.notify_all();
  }

  /// Waits until at least `n` items arrived; false on timeout.
  bool wait_for_count(std::size_t n, std::chrono::milliseconds timeout
                                     = patience) {
    std::unique_lock guard{mu_};
    return cv_.wait_for(guard, timeout, [&] { return items_.size() >= n; });
  }

  std::vector<T> items() const {
    std::lock_guard guard{mu_};
    return items_;
  }

  std::size_t size() const {
    std::lock_guard guard{mu_};
    return items_.size();
  }

private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<T> items_;
};

/// Polls `condition` until it holds or `timeout` passes. For state that has
/// no event to wait on (counters); yields between polls.
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = patience) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(1ms); // a poll interval, not a wait
  }
  return true;
}

/// Makes `config` keep its node's log lines in `lines`, for assertions.
inline void capture_log(node_config& config,
                        std::shared_ptr<probe<std::string>> lines) {
  config.log = [lines = std::move(lines)](log_level, std::string_view line) {
    lines->push(std::string{line});
  };
}

/// Waits until a line of `lines` contains `part`; false on timeout.
inline bool logged(const probe<std::string>& lines, const std::string& part,
                   std::chrono::milliseconds timeout = patience) {
  return eventually(
    [&] {
      for (auto& line : lines.items())
        if (line.find(part) != std::string::npos)
          return true;
      return false;
    },
    timeout);
}

/// A node whose log lines are kept for assertions instead of printed.
struct quiet_node {
  explicit quiet_node(std::string name = "",
                      const std::function<void(node_config&)>& adjust = {}) {
    node_config config;
    config.name = std::move(name);
    if (adjust)
      adjust(config);
    // In-process tests stay off the machine directory.
    config.join_directory = false;
    capture_log(config, lines);
    auto started = node::start(std::move(config));
    REQUIRE(started);
    instance.emplace(std::move(*started));
  }

  node* operator->() {
    return &*instance;
  }

  node& operator*() {
    return *instance;
  }

  std::shared_ptr<probe<std::string>> lines = std::make_shared<probe<std::string>>();
  std::optional<node> instance;
};

inline tpb::Ping ping(std::int64_t seq, std::string text = {}) {
  tpb::Ping msg;
  msg.set_seq(seq);
  msg.set_text(std::move(text));
  return msg;
}

inline tpb::Add add(std::int64_t a, std::int64_t b) {
  tpb::Add msg;
  msg.set_a(a);
  msg.set_b(b);
  return msg;
}

/// An adder: Add -> Sum, Ping -> Pong.
inline behavior adder(context& ctx) {
  return {
    [](const tpb::Add& x) {
      tpb::Sum out;
      out.set_value(x.a() + x.b());
      return out;
    },
    [&ctx](const tpb::Ping& p) {
      tpb::Pong out;
      out.set_seq(p.seq());
      out.set_from(ctx.name());
      return out;
    },
  };
}

/// Counts Pings and whether they came in order (by seq, from 0); Add
/// answers Sum{count * 1000000 + out_of_order}.
inline behavior order_counter(context&) {
  auto next = std::make_shared<std::int64_t>(0);
  auto count = std::make_shared<std::int64_t>(0);
  auto wrong = std::make_shared<std::int64_t>(0);
  return {
    [=](const tpb::Ping& p) {
      if (p.seq() != *next)
        ++*wrong;
      *next = p.seq() + 1;
      ++*count;
    },
    [=](const tpb::Add&) {
      tpb::Sum out;
      out.set_value(*count * 1000000 + *wrong);
      return out;
    },
  };
}

/// Parks every Hold and Ping request and never answers (until it stops).
inline behavior sloth(context& ctx) {
  auto parked = std::make_shared<std::vector<responder>>();
  return {
    [&ctx, parked](const tpb::Hold&) { parked->push_back(ctx.take_reply()); },
    [&ctx, parked](const tpb::Ping&) { parked->push_back(ctx.take_reply()); },
  };
}

} // namespace courier::testing

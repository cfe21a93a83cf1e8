#pragma once

// Round trips from an actor: ctx.request(target) with a Ping of about
// `size` bytes, the next request from the reply's continuation, each timed.
// What the cross-process benchmarks measure as Courier's round trip.

#include <chrono>
#include <cstdlib>
#include <functional>
#include <future>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench/v1/bench.pb.h"
#include "courier/courier.hpp"

namespace courier::bench {

/// Spawns `driver` on `client`, which sends `rounds` requests to `target`
/// one after the other; their round trips in nanoseconds. Exits the
/// program if one fails.
inline std::vector<double> actor_round_trips(node& client,
                                             const std::string& driver,
                                             const std::string& target,
                                             std::size_t size, int rounds) {
  using clock_type = std::chrono::steady_clock;
  struct state {
    std::vector<double> rtts;
    clock_type::time_point sent;
    std::promise<std::vector<double>> done;
  };
  auto st = std::make_shared<state>();
  auto result = st->done.get_future();
  auto spawned = client.spawn(driver, [st, rounds, size,
                                       target](context& ctx) {
    auto next = std::make_shared<std::function<void()>>();
    *next = [&ctx, st, next, rounds, size, target] {
      if (static_cast<int>(st->rtts.size()) == rounds) {
        st->done.set_value(std::move(st->rtts));
        return;
      }
      auto ping = std::make_shared<::bench::v1::Ping>();
      // `size` bytes on the wire with the seq and the field headers.
      ping->set_pad(std::string(size > 16 ? size - 16 : 1, 'x'));
      st->sent = clock_type::now();
      ctx.request(target, message{ping}, std::chrono::seconds{10})
        .then(
          [st, next](const ::bench::v1::Ping&) {
            st->rtts.push_back(std::chrono::duration<double, std::nano>(
                                 clock_type::now() - st->sent)
                                 .count());
            (*next)();
          },
          [](const error& e) {
            std::cerr << "request failed: " << e.to_string() << "\n";
            std::exit(1);
          });
    };
    return behavior{[next](const ::bench::v1::Ping&) { (*next)(); }};
  });
  if (!spawned || !client.post(driver, ::bench::v1::Ping{})) {
    std::cerr << "cannot start the round-trip driver\n";
    std::exit(1);
  }
  auto out = result.get();
  (void)client.stop(driver);
  return out;
}

} // namespace courier::bench

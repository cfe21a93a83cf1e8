#pragma once

// A clock the test moves: the wall clock jumps either way, BOOTTIME only
// forward, and reboot() starts a new boot (new id, BOOTTIME from near 0).
//
// Thread safety: all functions are thread-safe.

#include <mutex>

#include "courier/durable/clock.hpp"

namespace courier::durable::testing {

class test_clock : public clock_source {
public:
  test_clock() {
    now_.boot[0] = 1;
    now_.boottime_ns = 1'000'000'000'000;     // up 1000 s
    now_.wall_ns = 1'800'000'000'000'000'000; // some day in 2027
  }

  clock_reading now() override {
    std::lock_guard guard{mu_};
    return now_;
  }

  /// Time passes: both clocks move by `d`.
  void advance(std::chrono::nanoseconds d) {
    std::lock_guard guard{mu_};
    now_.boottime_ns += d.count();
    now_.wall_ns += d.count();
  }

  /// Someone sets the wall clock: only it moves, by `d` (either sign).
  void jump_wall(std::chrono::nanoseconds d) {
    std::lock_guard guard{mu_};
    now_.wall_ns += d.count();
  }

  /// The machine was down for `downtime` (wall clock) and booted again.
  void reboot(std::chrono::nanoseconds downtime) {
    std::lock_guard guard{mu_};
    ++now_.boot[0];
    now_.boottime_ns = 2'000'000'000; // 2 s into the new boot
    now_.wall_ns += downtime.count() + 2'000'000'000;
  }

private:
  std::mutex mu_;
  clock_reading now_;
};

} // namespace courier::durable::testing

#pragma once

// Runs callbacks at deadlines, on one thread of its own. Unlike CAF's actor
// clock, which wakes its thread for every new timeout, this one is woken
// only when a deadline comes sooner than the one it sleeps until: requests
// that carry the usual, similar deadlines cost no thread wake-up (about
// 30 us of a cross-process round trip on a VM, docs/benchmarks.md).

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "courier/deadline.hpp"

namespace courier::detail {

class deadline_timer {
public:
  using time_point = deadline::clock::time_point;

  deadline_timer();

  /// Stops (see stop()).
  ~deadline_timer();

  deadline_timer(const deadline_timer&) = delete;
  deadline_timer& operator=(const deadline_timer&) = delete;

  /// Calls `fn` on the timer's thread once `when` has passed. Keep `fn`
  /// short (send a message); it may run a little late, never early.
  void at(time_point when, std::function<void()> fn);

  /// As at(), but only while `wanted` lives: an entry whose `wanted` is gone
  /// never runs, and is dropped early when the timer tidies up (which it
  /// does when it has grown to twice what it held after the last tidy-up),
  /// so that finished requests with distant deadlines do not pile up.
  void at(time_point when, std::weak_ptr<void> wanted,
          std::function<void()> fn);

  /// Drops what is still due and ends the thread; idempotent. After it, at()
  /// drops its callback.
  void stop();

  /// Callbacks not yet due.
  std::size_t pending() const;

private:
  struct entry {
    time_point when;
    std::uint64_t order; // ties keep the order of at()
    std::function<void()> fn;
    std::weak_ptr<void> wanted;
    bool conditional = false;
  };

  /// Drops entries nobody wants any more; requires mu_.
  void tidy();

  static bool later(const entry& x, const entry& y) noexcept {
    return x.when != y.when ? x.when > y.when : x.order > y.order;
  }

  void at(time_point when, std::weak_ptr<void> wanted,
          std::function<void()> fn, bool conditional);

  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<entry> heap_;                // a min-heap by `later`
  time_point sleeps_until_ = time_point::max();
  std::uint64_t next_order_ = 0;
  std::size_t tidy_at_ = 4096;
  bool stopped_ = false;
  std::thread thread_;
};

} // namespace courier::detail

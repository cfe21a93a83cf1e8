#include "deadline_timer.hpp"

#include <algorithm>

namespace courier::detail {

deadline_timer::deadline_timer() : thread_([this] { run(); }) {
}

deadline_timer::~deadline_timer() {
  stop();
}

void deadline_timer::at(time_point when, std::function<void()> fn) {
  std::lock_guard guard{mu_};
  if (stopped_)
    return;
  heap_.push_back(entry{when, next_order_++, std::move(fn)});
  std::push_heap(heap_.begin(), heap_.end(), later);
  // Wake the thread only if it would sleep past this deadline.
  if (when < sleeps_until_) {
    sleeps_until_ = when;
    cv_.notify_one();
  }
}

void deadline_timer::stop() {
  {
    std::lock_guard guard{mu_};
    if (stopped_)
      return;
    stopped_ = true;
    heap_.clear();
  }
  cv_.notify_one();
  if (thread_.joinable())
    thread_.join();
}

std::size_t deadline_timer::pending() const {
  std::lock_guard guard{mu_};
  return heap_.size();
}

void deadline_timer::run() {
  std::unique_lock guard{mu_};
  while (!stopped_) {
    if (heap_.empty()) {
      sleeps_until_ = time_point::max();
      cv_.wait(guard);
      continue;
    }
    auto now = deadline::clock::now();
    if (heap_.front().when <= now) {
      std::pop_heap(heap_.begin(), heap_.end(), later);
      auto fn = std::move(heap_.back().fn);
      heap_.pop_back();
      guard.unlock();
      fn();
      guard.lock();
      continue;
    }
    sleeps_until_ = heap_.front().when;
    cv_.wait_until(guard, sleeps_until_);
  }
}

} // namespace courier::detail

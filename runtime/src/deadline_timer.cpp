#include "deadline_timer.hpp"

#include <algorithm>

namespace courier::detail {

deadline_timer::deadline_timer() : thread_([this] { run(); }) {
}

deadline_timer::~deadline_timer() {
  stop();
}

void deadline_timer::at(time_point when, std::function<void()> fn) {
  at(when, std::weak_ptr<void>{}, std::move(fn), false);
}

void deadline_timer::at(time_point when, std::weak_ptr<void> wanted,
                        std::function<void()> fn) {
  at(when, std::move(wanted), std::move(fn), true);
}

void deadline_timer::tidy() {
  std::erase_if(heap_, [](const entry& e) {
    return e.conditional && e.wanted.expired();
  });
  std::make_heap(heap_.begin(), heap_.end(), later);
  tidy_at_ = std::max<std::size_t>(4096, 2 * heap_.size());
}

void deadline_timer::at(time_point when, std::weak_ptr<void> wanted,
                        std::function<void()> fn, bool conditional) {
  std::lock_guard guard{mu_};
  if (stopped_)
    return;
  if (heap_.size() >= tidy_at_)
    tidy();
  heap_.push_back(
    entry{when, next_order_++, std::move(fn), std::move(wanted), conditional});
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
      auto due = std::move(heap_.back());
      heap_.pop_back();
      if (due.conditional && due.wanted.expired())
        continue;
      guard.unlock();
      due.fn();
      guard.lock();
      continue;
    }
    sleeps_until_ = heap_.front().when;
    cv_.wait_until(guard, sleeps_until_);
  }
}

} // namespace courier::detail

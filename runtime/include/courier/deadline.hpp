#pragma once

#include <chrono>

namespace courier {

/// A point on the steady clock by which an outcome must be known.
/// Implicitly built from a duration ("500ms from now") or a time point, so
/// verbs read naturally: `send("orders", order, 500ms)`.
///
/// Thread safety: a value type.
class deadline {
public:
  using clock = std::chrono::steady_clock;

  /// A deadline that never expires.
  constexpr deadline() noexcept : at_(clock::time_point::max()) {
  }

  deadline(clock::time_point at) noexcept : at_(at) {
  }

  template <class Rep, class Period>
  deadline(std::chrono::duration<Rep, Period> from_now) noexcept
    : at_(saturated_from_now(
      std::chrono::duration_cast<clock::duration>(from_now))) {
  }

  static constexpr deadline never() noexcept {
    return deadline{};
  }

  bool is_never() const noexcept {
    return at_ == clock::time_point::max();
  }

  clock::time_point at() const noexcept {
    return at_;
  }

  bool expired(clock::time_point now = clock::now()) const noexcept {
    return now >= at_;
  }

  /// Time left, never negative; clock::duration::max() for never.
  clock::duration remaining(clock::time_point now = clock::now()) const noexcept {
    if (is_never())
      return clock::duration::max();
    return now >= at_ ? clock::duration::zero() : at_ - now;
  }

private:
  static clock::time_point saturated_from_now(clock::duration d) noexcept {
    auto now = clock::now();
    if (d > clock::time_point::max() - now)
      return clock::time_point::max();
    return now + d;
  }

  clock::time_point at_;
};

} // namespace courier

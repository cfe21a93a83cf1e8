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

  /// A duration too long for the clock means never.
  template <class Rep, class Period>
  deadline(std::chrono::duration<Rep, Period> from_now) noexcept
    : at_(saturated_from_now(from_now)) {
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
  template <class Rep, class Period>
  static clock::time_point
  saturated_from_now(std::chrono::duration<Rep, Period> d) noexcept {
    using source = std::chrono::duration<Rep, Period>;
    using std::chrono::duration_cast;
    auto now = clock::now();
    // Compare in the caller's unit, where no conversion can overflow.
    if (d >= duration_cast<source>(clock::time_point::max() - now))
      return clock::time_point::max();
    // Any point in the past is as good as another: clamp to the epoch.
    if (d <= duration_cast<source>(-now.time_since_epoch()))
      return clock::time_point{};
    return now + duration_cast<clock::duration>(d);
  }

  clock::time_point at_;
};

} // namespace courier

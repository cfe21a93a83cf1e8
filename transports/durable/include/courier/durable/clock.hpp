#pragma once

// The clocks the store's expiry reads. Deadlines are measured on
// CLOCK_BOOTTIME, which neither jumps with the wall clock nor stops during
// suspend; a boot id tells whether a stored BOOTTIME reading belongs to
// this boot. The wall clock is only used to estimate how long the machine
// was down between two boots (docs/disk-format.md, "Time").

#include <array>
#include <cstdint>
#include <memory>

namespace courier::durable {

/// A boot's identity: /proc/sys/kernel/random/boot_id as 16 bytes.
using boot_id = std::array<std::uint8_t, 16>;

/// One reading of the clocks, taken at one instant.
struct clock_reading {
  boot_id boot{};
  /// Nanoseconds of CLOCK_BOOTTIME: monotonic within `boot`.
  std::int64_t boottime_ns = 0;
  /// Nanoseconds of CLOCK_REALTIME since the epoch: may jump either way.
  std::int64_t wall_ns = 0;
};

/// Where the store reads the time. Tests substitute a clock they move.
///
/// Thread safety: now() is called from any of the store's threads.
class clock_source {
public:
  virtual ~clock_source() = default;

  /// The current reading; boottime_ns never decreases within one boot.
  virtual clock_reading now() = 0;
};

/// The machine's clocks (clock_gettime and the kernel's boot id).
std::shared_ptr<clock_source> system_clock_source();

} // namespace courier::durable

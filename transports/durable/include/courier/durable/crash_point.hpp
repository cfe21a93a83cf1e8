#pragma once

// Named crash points for crash tests: with COURIER_CRASH_AT=<name> (or
// <name>:<n> for the n-th time, 1-based) in the environment, the process
// calls _exit(86) when it reaches that point, leaving the files exactly as
// a crash would (no destructors, no flush). The environment is read once,
// when the first store opens.
//
// Points: before_append, after_append_before_fsync, after_fsync_before_ack,
// after_handler_before_removal, mid_compaction, mid_rotation.

#include <string_view>

namespace courier::durable {

/// The exit status of a process that stopped at a crash point.
inline constexpr int crash_exit_status = 86;

/// Exits the process if COURIER_CRASH_AT names `point` (and its count is
/// reached). Thread-safe; costs a load and a branch when no point is set.
void crash_point(std::string_view point) noexcept;

/// Reads COURIER_CRASH_AT again (for a process that set it after a store
/// opened, e.g. a forked child). Not thread-safe against crash_point().
void reload_crash_point() noexcept;

} // namespace courier::durable

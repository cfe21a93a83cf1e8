#pragma once

// The supervisor's loop: one thread that starts the nodes in order, reads
// their output into their log files, reaps them, restarts them by their
// policy, and stops them in reverse order when asked (SIGINT, SIGTERM,
// SIGHUP). Signals arrive through a signalfd; nothing here sleeps except in
// poll().

#include <chrono>
#include <functional>
#include <string_view>

#include "courier/deploy/supervisor.hpp"

namespace courier::deploy::detail {

/// Runs `system` until a stop signal, with its lock already held through
/// `lock_fd`. When the start is over (every node running, or some given
/// up) it writes "up <ms>\n" or "failed <why>\n" to `ready_fd` (if not
/// -1) and calls `on_up`. Every line of the supervisor's log also goes to
/// `echo`. Removes the run dir's state (and the lock file) before
/// returning.
expected<void> supervise(const system_spec& system, int lock_fd, int ready_fd,
                         std::function<void(std::string_view)> echo,
                         std::function<void(std::chrono::milliseconds)> on_up);

} // namespace courier::deploy::detail

#pragma once

// A CAF scheduler for nodes that mostly talk to other processes
// (scheduler_policy::latency): one shared job queue, as CAF's work_sharing,
// but an idle worker first polls, for a while, both the queue and the
// node's transports (which hand it the frames their links received), and
// only then sleeps. A reply from another process thus reaches its actor on
// the thread that will run it, with no thread woken on the way; waking a
// sleeping thread costs 15-25 us on a VM.

#include <chrono>
#include <functional>
#include <vector>

#include <caf/actor_system_config.hpp>

namespace courier::detail {

/// What an idle worker polls.
struct poller {
  /// Looks for work (frames received), without waiting; true if it found
  /// any.
  std::function<bool()> poll;
  /// The worker stops polling to sleep: no poll() follows until it has
  /// work again.
  std::function<void()> stopped;
};

/// Makes the system built from `config` use the polling scheduler: each idle
/// worker polls for `idle_spin`, calling every poll of `pollers` before it
/// sleeps (and their `stopped` then). The pollers must stay callable until
/// the system is gone.
void use_polling_scheduler(caf::actor_system_config& config,
                           std::chrono::nanoseconds idle_spin,
                           std::vector<poller> pollers);

} // namespace courier::detail

#pragma once

// Posting as fast as a route carries: a poster ahead of its link waits for
// room, as a raw writer waits for its socket (instead of spinning on
// resource_exhausted, which takes a CPU from the threads that drain it).

#include <chrono>
#include <string>

#include "courier/node.hpp"

namespace courier::bench {

/// Posts `msg` to `to`, blocking while the route's backlog is full
/// (post_options::wait_for_room, up to a minute).
inline expected<void> post_waiting(node& from, const std::string& to,
                                   const message& msg) {
  post_options options;
  options.wait_for_room = std::chrono::minutes{1};
  return from.post(to, msg, options);
}

} // namespace courier::bench

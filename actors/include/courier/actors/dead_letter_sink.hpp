#pragma once

#include <cstddef>
#include <string>

#include "courier/actor_ref.hpp"
#include "courier/error.hpp"
#include "courier/fwd.hpp"

namespace courier::actors {

struct dead_letter_sink_options {
  /// The sink's actor name.
  std::string name = "courier.dead_letters";
  /// How many recent dead letters it keeps; older ones are counted only.
  std::size_t capacity = 256;
};

/// Spawns an actor that collects the node's dead letters and answers a
/// courier.v1.DeadLetterQuery with a courier.v1.DeadLetterReport, so that
/// tools and other actors can inspect them by message. It installs the
/// node's dead-letter hook (replacing any other). Memory is bounded by
/// `capacity`.
///
/// Thread safety: call it from the thread that owns the node; the node must
/// not be moved afterwards (the hook refers to it).
[[nodiscard]] expected<actor_ref>
spawn_dead_letter_sink(node& target, dead_letter_sink_options options = {});

} // namespace courier::actors

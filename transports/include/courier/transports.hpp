#pragma once

// The tiers that ship with Courier, registered under their own names: what
// most nodes put in node_config::transports. Link `courier::transports`.
//
//   courier::node_config config;
//   config.transports = courier::local_transports();

#include <string>
#include <utility>
#include <vector>

#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"

namespace courier {

/// The tiers between the processes of one machine: shared memory (same
/// user) and the named pipe (any user the peer allows). The tier policy
/// picks between them per peer (docs/architecture.md).
inline std::vector<std::pair<std::string, transport_factory>>
local_transports() {
  return {{"shm", shm::factory()}, {"pipe", pipe::factory()}};
}

} // namespace courier

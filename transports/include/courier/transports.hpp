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
#include "courier/tcp/tcp_transport.hpp"

namespace courier {

/// The tiers between the processes of one machine: shared memory (same
/// user) and the named pipe (any user the peer allows). The tier policy
/// picks between them per peer (docs/architecture.md).
inline std::vector<std::pair<std::string, transport_factory>>
local_transports() {
  return {{"shm", shm::factory()}, {"pipe", pipe::factory()}};
}

/// The local tiers and TCP with `tcp` settings: for nodes with peers on
/// other hosts. The policy still picks shared memory or the pipe for peers
/// of the same host.
inline std::vector<std::pair<std::string, transport_factory>>
cluster_transports(tcp::options tcp) {
  auto out = local_transports();
  out.emplace_back("tcp", tcp::factory(std::move(tcp)));
  return out;
}

} // namespace courier

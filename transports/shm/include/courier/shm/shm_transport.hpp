#pragma once

#include <cstddef>

#include "courier/shm/ring.hpp"
#include "courier/transport.hpp"

namespace courier::shm {

struct transport_options {
  /// Bytes of each ring (one per direction, per link); a power of two.
  /// Messages larger than a ring are fragmented.
  std::size_t ring_capacity = std::size_t{1} << 20;
  /// How readers and writers wait.
  wait_policy policy = wait_policy::hybrid;
  /// How long spin and hybrid poll before yielding or sleeping. Long enough
  /// that a reader is still awake when the answer to what its node just
  /// sent comes back (an actor round trip across processes takes tens of
  /// microseconds), so it costs no futex wake-up.
  std::chrono::nanoseconds spin_budget = std::chrono::microseconds{200};
  /// Yield the CPU every few microseconds while spinning (see ring_options),
  /// so that a spinning reader never starves the threads running actors.
  /// Measured in docs/benchmarks.md: it takes the actor round trip from
  /// ~115 to ~60 us on a 2-core machine.
  bool yield_while_spinning = true;
  /// Writes never wait for room in a full ring: what does not fit queues
  /// (up to transport_limits::max_queued) for the link's writer thread,
  /// which waits as long as the peer lives. Only a closed link stops
  /// waiting: its queued frames get this long to leave.
  std::chrono::milliseconds write_timeout{5000};
};

/// The shared-memory tier, for nodes of the same user on the same machine.
/// A link is a pair of rings in sealed memfds, one per direction, each
/// created by its writer and handed to the reader with SCM_RIGHTS over an
/// AF_UNIX socket. The socket carries nothing else: it tells the kernel's
/// peer credentials (links from another uid are refused before anything is
/// read) and, by closing, that the peer is gone. Nothing is ever named in
/// /dev/shm; the memory goes when both ends close.
transport_factory factory(transport_options options = {});

} // namespace courier::shm

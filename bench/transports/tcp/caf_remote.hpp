#pragma once

// CAF's own remote actors (libcaf_io: middleman publish / remote_actor over
// BASP) as a second yardstick for the TCP tier: the same echo and sink,
// payloads of std::string (CAF's cheapest serialization: no Protobuf).
// CAF's headers stay in caf_remote.cpp.
//
// Thread safety: a caf_client is used by one thread at a time.

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace courier::bench {

/// The serving child: an actor system with the middleman (scheduler
/// defaults), "echo" and "sink" published on `host` at ports the kernel
/// picks, printed on stdout as "<echo> <sink>"; serves until stdin ends.
int caf_serve(const std::string& host);

/// An actor system (scheduler defaults) holding handles to the child's
/// published actors.
class caf_client {
public:
  caf_client(const std::string& host, int echo_port, int sink_port);
  ~caf_client();

  caf_client(const caf_client&) = delete;
  caf_client& operator=(const caf_client&) = delete;

  bool ok() const;

  /// Round trips of `size`-byte strings from an event-based actor:
  /// request(echo, payload).then(next request); nanoseconds each.
  std::vector<double> rtt(std::size_t size, int rounds);

  /// `count` anon_sends of one `size`-byte string message to the sink,
  /// then a request that arrives behind them and says how many came;
  /// messages per second, or 0 if the sink did not get them all.
  double oneway(std::size_t size, int count);

private:
  struct state;
  std::unique_ptr<state> state_;
};

} // namespace courier::bench

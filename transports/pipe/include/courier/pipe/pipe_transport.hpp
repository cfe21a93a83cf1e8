#pragma once

#include "courier/transport.hpp"

namespace courier::pipe {

/// The named-pipe tier: AF_UNIX stream sockets (Boost.Asio
/// local::stream_protocol). Frames are a 4-byte little-endian length and
/// the envelope; a frame over the limit closes the link with
/// resource_exhausted before its body is read. Peer credentials come from
/// SO_PEERCRED. The socket file is created 0666: authorization is by peer
/// credentials, checked by the runtime before anything is read. Reaches
/// every node of the same host (reach rank 10). Its poll() lets the
/// latency scheduler's idle threads receive frames themselves, beside the
/// I/O thread.
transport_factory factory();

} // namespace courier::pipe

#pragma once

// The gateway: a gRPC server that gives any gRPC client the verbs of a node
// (post, send, find, names, broadcast, monitor), defined in
// proto/courier/v1/gateway.proto (docs/gateway.md). gRPC's headers
// stay in the .cpp: this one is cheap to include.

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "courier/access.hpp"
#include "courier/error.hpp"
#include "courier/node_plugin.hpp"
#include "courier/tcp/tcp_transport.hpp"

namespace courier {
class node;
}

namespace courier::gateway {

/// Mutual TLS for gateway callers: the TCP tier's PEM files (a node
/// certificate and key from `courier cert`, and the CA whose certificates
/// callers must present).
using tls_files = tcp::tls_files;

/// How the gateway keeps its connections honest (gRPC's HTTP/2 pings and
/// connection ages; docs/gateway.md, "Keepalive").
struct keepalive {
  /// The gateway pings a connection idle this long, and closes it if the
  /// ping is not answered within `timeout`: a caller that vanished
  /// without a FIN (a cable, a frozen process) frees its calls and
  /// monitors. Zero: no pings.
  std::chrono::milliseconds time{30'000};
  std::chrono::milliseconds timeout{10'000};
  /// Callers may ping no more often than this (pings without calls in
  /// between included); after `max_ping_strikes` pings that come sooner
  /// the gateway ends the connection (GOAWAY "too_many_pings"), so a
  /// client cannot keep it busy with pings.
  std::chrono::milliseconds min_client_ping_interval{10'000};
  int max_ping_strikes = 2;
  /// A connection without calls this long is closed (zero: never).
  std::chrono::milliseconds max_idle{0};
  /// Every connection is closed, gracefully, at this age (zero: never),
  /// so that callers spread over gateways again; calls under way get
  /// `max_age_grace` to finish.
  std::chrono::milliseconds max_age{0};
  std::chrono::milliseconds max_age_grace{10'000};
};

struct options {
  /// host:port to listen on; port 0 lets the kernel pick (see port()).
  /// Or "unix:<path>": a local socket, plaintext, whose callers are who
  /// the kernel says they are (`uid:<n>`, `gid:<n>` in the rules).
  std::string listen = "127.0.0.1:0";
  /// The local socket's permissions: who may connect at all, before the
  /// rules. The node's user alone by default; a mode that lets others in
  /// needs `rules` (else each of them would act as the node).
  unsigned socket_mode = 0600;
  /// The largest message a call may carry, either way.
  std::size_t max_message = std::size_t{4} << 20;
  /// A Send without a gRPC deadline gets this one.
  std::chrono::milliseconds default_deadline{30000};
  /// Mutual TLS: every caller presents a certificate of `tls->ca`. Without
  /// it the gateway speaks plaintext, which it serves only on a loopback
  /// address or a local socket unless allow_plaintext is set.
  std::optional<tls_files> tls;
  /// Plaintext gRPC on any address (a trusted network only), as the TCP
  /// tier's option of the same name.
  bool allow_plaintext = false;
  /// Services served by actors: a gRPC service's full name ("shop.Orders")
  /// and the actor ("orders", or "orders@node") that answers its unary
  /// methods. A call to /shop.Orders/Place is a request to that actor with
  /// the method's input message; the actor's reply is the call's. Beside
  /// these, the gateway serves every service an actor declared at spawn
  /// (spawn_options::services), here or on any node the directory knows;
  /// a mapping here comes first. The service's .proto need not be
  /// compiled into this program: the descriptors the actor's node
  /// publishes do (docs/gateway.md, "Services served by actors").
  std::map<std::string, std::string> services;
  /// How often the health of each service actors serve is looked at:
  /// SERVING while an actor serving it holds its name (here or on a node
  /// the directory knows), NOT_SERVING while none does.
  std::chrono::milliseconds health_interval{250};
  /// Who may do what through the gateway (courier/access.hpp, the rules
  /// of docs/security.md): a caller is `cert:<subject>` (and `san:` for
  /// its alternative names) when mutual TLS checked its certificate, else
  /// `anonymous`. Deny by default: a call whose verb on its actor name no
  /// rule allows fails with PERMISSION_DENIED before anything is sent;
  /// Names lists only what the caller may find; a Broadcast needs the verb
  /// on every name it would ask; a service call is a `send` to its actor.
  /// Refusals are counted (refusals()) and logged, at most one line a
  /// second. Unset: every caller the transport lets in acts as the
  /// gateway's node (keep it on the loopback or behind mutual TLS).
  std::optional<std::vector<access_rule>> rules;
  /// Pings, idle and aged connections.
  gateway::keepalive keepalive;
};

/// Thread safety: all member functions are thread-safe. The node must
/// outlive the server.
class server {
public:
  /// Serves `host`'s verbs on `settings.listen`: unavailable if it cannot
  /// listen there, invalid_argument for a malformed address.
  [[nodiscard]] static expected<std::unique_ptr<server>>
  start(node& host, options settings = {});

  /// Stops: calls under way end with CANCELLED or their outcome.
  ~server();

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// The port it listens on (0 on a local socket).
  int port() const noexcept;

  /// Where it listens, as a client dials it: "127.0.0.1:40123" (the port
  /// the kernel picked), or "unix:<path>".
  std::string address() const;

  /// Calls answered since the start, and calls refused (bad input).
  std::uint64_t calls() const noexcept;

  /// Calls the rules refused (options::rules) since the start.
  std::uint64_t refusals() const noexcept;

  /// Outcomes that came for calls their client had cancelled since the
  /// start: dropped, never written to anyone.
  std::uint64_t dropped() const noexcept;

  struct impl;

private:
  explicit server(std::unique_ptr<impl> self);

  std::unique_ptr<impl> impl_;
};

/// The gateway as a node plug-in (node_config::plugins; [gateway] in a
/// configuration file): serves the node it is lent from its start to its
/// stop; node::plugin_address() gives server::address().
[[nodiscard]] plugin_factory plugin(options settings);

} // namespace courier::gateway

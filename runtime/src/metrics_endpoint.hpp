#pragma once

// metrics_endpoint: a tiny HTTP/1.1 server that answers GET /metrics with
// the node's Prometheus text exposition (docs/operations.md, "Metrics").
//
// Bounds, so that no client can make the node hold memory or hang it:
// - at most max_connections connections at once; more are closed as they
//   are accepted;
// - a request (line and headers) of at most max_request bytes, or it is
//   answered 431 and closed; a body is never read;
// - connection_timeout for the whole exchange, from accept to the last
//   byte written; a client that stalls is cut;
// - one exchange per connection (Connection: close).
// So it holds at most max_connections * (max_request + one exposition).
//
// Thread safety: start() and the destructor from any thread; the server
// runs on a thread of its own, which calls the text source.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "courier/error.hpp"

namespace courier::detail {

class metrics_endpoint {
public:
  static constexpr std::size_t max_connections = 8;
  static constexpr std::size_t max_request = 8 * 1024;
  static constexpr std::chrono::seconds connection_timeout{5};

  /// Makes the exposition text; called on the server's thread.
  using text_source = std::function<std::string()>;

  /// Listens on `address` ("host:port", host numeric or "localhost", port
  /// 0 picks one). Errors: invalid_argument for a malformed address,
  /// unavailable when it cannot listen there.
  [[nodiscard]] static expected<std::unique_ptr<metrics_endpoint>>
  start(std::string_view address, text_source source);

  /// Stops serving and joins the server's thread.
  ~metrics_endpoint();

  metrics_endpoint(const metrics_endpoint&) = delete;
  metrics_endpoint& operator=(const metrics_endpoint&) = delete;

  /// Where it listens, with the port it got ("127.0.0.1:40123").
  const std::string& address() const noexcept;

  struct state;

private:
  explicit metrics_endpoint(std::unique_ptr<state> st) noexcept;

  std::unique_ptr<state> state_;
};

} // namespace courier::detail

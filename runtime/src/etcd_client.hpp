#pragma once

// A small client for etcd's v3 JSON gateway (etcd 3.4 serves it under
// /v3/): the few calls the registry needs (etcd_directory.hpp), over plain
// HTTP/1.1 with Boost.Beast, JSON with nlohmann-json. Keys and values are
// raw bytes here; base64 and JSON stay inside etcd_client.cpp.
//
// Every call has a deadline covering connect, request and response (the
// client's `timeout`); an unreachable or silent etcd yields `unavailable`
// naming the endpoint, never a hang. Responses are bounded (`max_response`
// bytes, per message of a stream too); a malformed answer is `internal`.
// Errors etcd reports keep their gRPC code (courier::errc uses the same
// numbers): e.g. `not_found` for a lease etcd no longer knows.
//
// Each call opens its own connection (loopback or LAN; the registry's hot
// paths are cached above this), tried on each endpoint in turn, starting
// with the last one that answered.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "courier/error.hpp"

namespace courier::detail {

/// One etcd client URL's host and port.
struct etcd_endpoint {
  std::string host;
  std::uint16_t port = 0;

  /// "host:port".
  std::string text() const;
};

/// What `etcd://host:port[,host:port...][/prefix/]` says.
struct etcd_target {
  std::vector<etcd_endpoint> endpoints;
  /// The key prefix, ending in '/'; "/courier/v1/" unless the URL has a path.
  std::string prefix;
};

/// Parses a registry URL; invalid_argument says what is wrong with it.
[[nodiscard]] expected<etcd_target> parse_etcd_url(std::string_view url);

/// The end of the key range holding every key that starts with `prefix`
/// (etcd's range_end: the prefix with its last byte incremented).
std::string etcd_prefix_end(std::string_view prefix);

/// A key-value pair as etcd stores it.
struct etcd_kv {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t lease = 0;
};

/// What a range read found, at which revision of the store.
struct etcd_range {
  std::vector<etcd_kv> kvs;
  std::int64_t revision = 0;
};

/// The outcome of a create-if-absent transaction.
struct etcd_create {
  bool created = false;
  /// When not created: the key as it is (its holder).
  etcd_kv existing;
};

/// One message of a watch stream.
struct etcd_watch_update {
  /// The first message: the watch is in place as of `revision`.
  bool created = false;
  /// The store's revision when etcd sent this message.
  std::int64_t revision = 0;
  struct event {
    bool deleted = false;
    etcd_kv kv; // after a delete: the key and mod_revision only
  };
  std::vector<event> events;
};

/// Thread safety: all member functions are thread-safe; watch() runs on one
/// thread at a time (a second concurrent watch is a broken contract).
class etcd_client {
public:
  /// Resolves the endpoints' host names (once, here: a call never waits for
  /// DNS). unavailable if a name does not resolve.
  [[nodiscard]] static expected<std::unique_ptr<etcd_client>>
  make(std::vector<etcd_endpoint> endpoints, std::chrono::milliseconds timeout,
       std::size_t max_response = 16u << 20);

  ~etcd_client();

  etcd_client(const etcd_client&) = delete;
  etcd_client& operator=(const etcd_client&) = delete;

  /// "host:port[,host:port...]", for messages.
  std::string endpoints_text() const;

  /// Grants a lease; returns its id and the TTL etcd granted (it may raise
  /// a TTL below its minimum).
  [[nodiscard]] expected<std::pair<std::int64_t, std::chrono::seconds>>
  grant_lease(std::chrono::seconds ttl);

  /// Renews a lease once; returns the TTL it has again, 0 if etcd no
  /// longer knows it (it lapsed or was revoked).
  [[nodiscard]] expected<std::int64_t> keep_alive(std::int64_t lease);

  /// Revokes a lease, deleting every key attached to it.
  [[nodiscard]] expected<void> revoke_lease(std::int64_t lease);

  /// Reads `key`, or with a `range_end` every key in [key, range_end).
  [[nodiscard]] expected<etcd_range> range(const std::string& key,
                                           const std::string& range_end = {});

  /// Puts key = value under `lease` only if the key does not exist (a
  /// transaction comparing its create_revision with 0).
  [[nodiscard]] expected<etcd_create>
  create(const std::string& key, const std::string& value, std::int64_t lease);

  /// Puts key = value under `lease` only if the key exists and is attached
  /// to that lease; false if it is not (the lease lapsed).
  [[nodiscard]] expected<bool> replace_if_lease(const std::string& key,
                                                const std::string& value,
                                                std::int64_t lease);

  /// Deletes `key` only if its value is `value`; false if it was not.
  [[nodiscard]] expected<bool> delete_if_value(const std::string& key,
                                               const std::string& value);

  /// Watches [key, range_end) from now: connects (within the deadline),
  /// then blocks, handing each message to `on_update`, until the stream
  /// ends, which is always an error: etcd went away, cancelled the watch
  /// (compaction), sent something malformed or oversized, or
  /// interrupt_watch() was called. Returns at once if `stop` is set, or is
  /// set before interrupt_watch() is called.
  [[nodiscard]] expected<void>
  watch(const std::string& key, const std::string& range_end,
        const std::function<void(etcd_watch_update&&)>& on_update,
        const std::atomic<bool>& stop);

  /// Ends the watch() in progress, if any (from any thread).
  void interrupt_watch();

private:
  struct state;

  explicit etcd_client(std::unique_ptr<state> st) noexcept;

  std::unique_ptr<state> st_;
};

} // namespace courier::detail

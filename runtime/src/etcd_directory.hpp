#pragma once

// The cluster registry: the directory seam on etcd (docs/directory.md,
// "The etcd registry"). Node records and actor names live in etcd under a
// prefix (default /courier/v1/), reached through etcd's v3 JSON gateway
// (etcd_client.hpp):
//
//   <prefix>nodes/<node>    the node's NodeRecord (binary Protobuf), under
//                           the node's lease; created only if absent, so a
//                           node name is unique cluster-wide
//   <prefix>names/<actor>   the holder's node name, under the same lease;
//                           created only if absent (one winner per name)
//
// Liveness is the lease: a keepalive thread renews it every third of its
// TTL. A node that does not renew it in time (killed, frozen, cut off) is
// down for everyone: etcd deletes its record and its names at once.
//
// A node that finds its own lease lapsed (it was frozen past the TTL, or
// etcd lost it) logs an error and registers again: a new lease, its record
// (unless another node took its name meanwhile: then it logs that, stays
// out of the registry and tries again each period), and the names it held
// (a name another node claimed meanwhile stays that node's; each one lost
// is logged). Until it is back, claim_name and publish fail with
// unavailable.
//
// owner_of and read_node are cached. A watch thread streams every change
// under the prefix and drops the entries it touches; while the watch is
// down (it reconnects with backoff) or a renewal has failed, the cache is
// not used. The cache only holds keys that exist in etcd.
//
// The machine part (local_dir(), and the node's lock there, so that nodes
// sharing a socket folder never share a name) is the machine's
// file_directory, which publishes nothing here.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "courier/options.hpp"
#include "directory.hpp"

namespace courier::detail {

class etcd_client;
class file_directory;
struct etcd_watch_update;

struct etcd_directory_options {
  /// etcd://host:port[,host:port...][/prefix/]
  std::string url;
  /// The node's name, unique in the registry.
  std::string node;
  /// The lease's TTL (rounded up to whole seconds, at least 1 s).
  std::chrono::milliseconds lease{5000};
  /// The deadline of each call to etcd.
  std::chrono::milliseconds timeout{2000};
  /// Where the directory says what happens (lease lost, watch broken).
  std::function<void(log_level, std::string_view)> log;
};

/// Thread safety: all member functions are thread-safe. Calls that reach
/// etcd may block up to the options' timeout; none holds a lock meanwhile.
class etcd_directory final : public directory {
public:
  /// Joins the registry as `options.node`: reaches etcd (unavailable,
  /// naming the endpoints, if it cannot within the timeout), takes a lease
  /// and creates the node's record (already_exists if a live node has that
  /// name). `local` is the machine's directory, for local_dir().
  [[nodiscard]] static expected<std::unique_ptr<etcd_directory>>
  join(etcd_directory_options options, std::unique_ptr<file_directory> local);

  /// Stops the threads and revokes the lease (the record and the names go
  /// with it); if etcd does not answer, they go when the lease lapses.
  ~etcd_directory() override;

  etcd_directory(const etcd_directory&) = delete;
  etcd_directory& operator=(const etcd_directory&) = delete;

  std::string local_dir() const override;
  std::string access_warning() const override;
  expected<void> publish(const v1::NodeRecord& record) override;
  expected<void> claim_name(std::string_view actor) override;
  void release_name(std::string_view actor) override;
  expected<std::string> owner_of(std::string_view actor) override;
  expected<v1::NodeRecord> read_node(std::string_view node) override;
  std::vector<v1::NodeRecord> nodes() override;
  std::vector<std::pair<std::string, std::string>> names() override;
  void suspect(std::string_view node) override;

  /// How often this node found its lease lapsed.
  std::uint64_t lease_losses() const noexcept {
    return lease_losses_.load();
  }

  /// The lease's TTL as etcd granted it.
  std::chrono::seconds lease_ttl() const noexcept {
    return ttl_;
  }

  /// True while the cache may answer (the watch is up, renewals succeed).
  bool cache_trusted() const;

private:
  etcd_directory(etcd_directory_options options,
                 std::unique_ptr<file_directory> local,
                 std::unique_ptr<etcd_client> client, std::string prefix);

  std::string node_key(std::string_view node) const;
  std::string name_key(std::string_view actor) const;
  void log(log_level level, const std::string& line) const;

  /// Takes a lease and creates the node's record with `record`.
  expected<void> register_node(const std::string& record);

  /// The keepalive thread: renews the lease, notices when it lapsed,
  /// registers again, retries releases that failed.
  void keep_alive_loop();
  void reregister();
  void retry_releases();

  /// The watch thread: streams changes, drops cache entries.
  void watch_loop();
  void on_watch_update(etcd_watch_update&& update);

  /// Marks the cache untrusted and makes the watch reconnect.
  void distrust_cache();

  /// Waits up to `period` or until stopping or poked; true if stopping.
  bool wait_for(std::chrono::milliseconds period);

  etcd_directory_options options_;
  std::unique_ptr<file_directory> local_;
  std::unique_ptr<etcd_client> client_;
  std::string prefix_;
  std::chrono::seconds ttl_{0};
  std::atomic<std::uint64_t> lease_losses_{0};
  std::atomic<bool> stopping_{false};
  bool reregister_failing_ = false; // the keepalive thread's own

  mutable std::mutex mu_;
  std::condition_variable wake_; // with mu_: stopping, or poked
  bool poked_ = false;           // guarded by mu_: renew now
  std::int64_t lease_ = 0;       // guarded by mu_: 0 while unregistered
  std::string published_;        // guarded by mu_: the serialized record
  std::set<std::string, std::less<>> held_;     // guarded by mu_
  std::set<std::string, std::less<>> releases_; // guarded by mu_: to retry
  // The cache, guarded by mu_: entries for keys that existed when read, at
  // a revision no older than every change the watch has applied.
  bool watch_up_ = false;
  bool renewals_ok_ = true;
  std::int64_t watch_revision_ = 0;
  std::map<std::string, std::string, std::less<>> owners_;
  std::map<std::string, v1::NodeRecord, std::less<>> records_;

  std::thread keep_alive_thread_;
  std::thread watch_thread_;
};

} // namespace courier::detail

#pragma once

// The machine-wide node directory: no daemon, just files (docs/directory.md).
//
//   <dir>/nodes/<node>.lock   flock(LOCK_EX) by the live node: liveness
//   <dir>/nodes/<node>.pb     its NodeRecord, replaced atomically
//   <dir>/names/<actor>       the owning node's name; created O_EXCL
//   <dir>/sockets/<node>.sock its named-pipe endpoint
//
// A node killed with SIGKILL loses its flock at once; the next node that looks
// finds it dead and removes its files ("reaps" it). Linux calls only; a
// Windows port replaces this file.

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "courier/error.hpp"
#include "courier/v1/control.pb.h"

namespace courier::detail {

/// Facts about this process that a NodeRecord carries.
struct process_identity {
  int pid;
  unsigned uid;
  unsigned gid;
  std::string session;
  std::string boot_id;
  std::string host_id;

  static process_identity current();
};

/// The default directory: $COURIER_DIR, else /run/courier for root, else
/// /tmp/courier (shared, sticky).
std::string default_directory();

/// Thread safety: all member functions are thread-safe.
class directory {
public:
  /// Opens (creating if needed) the directory at `path` and claims `node`:
  /// already_exists if a live node holds that name.
  [[nodiscard]] static expected<std::unique_ptr<directory>>
  join(std::string path, std::string node);

  ~directory();

  directory(const directory&) = delete;
  directory& operator=(const directory&) = delete;

  const std::string& path() const noexcept {
    return path_;
  }

  std::string socket_path(std::string_view node) const;

  /// Where `node` accepts links of `tier`: the named pipe's socket, or the
  /// shared-memory tier's handover socket.
  std::string endpoint(std::string_view node, std::string_view tier) const;

  /// Replaces this node's record atomically.
  expected<void> publish(const v1::NodeRecord& record);

  /// Claims an actor name machine-wide; already_exists if a live node holds
  /// it (a dead holder is reaped first).
  expected<void> claim_name(std::string_view actor);

  /// Releases a name this node holds; a no-op otherwise.
  void release_name(std::string_view actor);

  /// The live node holding `actor`, or not_found.
  expected<std::string> owner_of(std::string_view actor);

  /// A live node's record, or not_found.
  expected<v1::NodeRecord> read_node(std::string_view node);

  /// The records of all live nodes, sorted by name; reaps the dead.
  std::vector<v1::NodeRecord> nodes();

  /// (actor, node) for every name held by a live node, sorted.
  std::vector<std::pair<std::string, std::string>> names();

  /// True if a node named `node` holds its lock.
  bool alive(std::string_view node) const;

  /// Removes a dead node's files; does nothing if it is alive.
  void reap(std::string_view node);

private:
  directory(std::string path, std::string node, int lock_fd) noexcept
    : path_(std::move(path)), node_(std::move(node)), lock_fd_(lock_fd) {
  }

  std::string path_;
  std::string node_;
  int lock_fd_;
};

} // namespace courier::detail

#pragma once

// The directory seam: where a node publishes its record and claims its
// actor names, and where it finds the other nodes and the names they hold.
// On one machine it is files and locks (file_directory.hpp, no daemon);
// across hosts, static seeds or a registry implement the same interface.
// The directory knows nothing of tiers: a record carries each tier's
// address as the tier gave it.

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
  std::string netns;

  static process_identity current();
};

/// What a node publishes beside its names and endpoints (a NodeRecord's
/// type_files and services): asked over a link where the directory does
/// not carry records (static seeds, NamesQuery with_types).
struct peer_publications {
  std::vector<std::string> type_files;
  std::vector<v1::ServedService> services;
};

/// Thread safety: implementations make all member functions thread-safe.
class directory {
public:
  virtual ~directory() = default;

  /// A folder in which local tiers may create their endpoints (sockets),
  /// readable by the nodes of this directory; empty if there is none.
  virtual std::string local_dir() const = 0;

  /// Something about the directory's access rights that a node should log
  /// at start ("other users cannot reach ..."), or empty.
  virtual std::string access_warning() const {
    return {};
  }

  /// Replaces this node's record.
  virtual expected<void> publish(const v1::NodeRecord& record) = 0;

  /// Claims an actor name for this node, unique within the directory;
  /// already_exists if a live node holds it.
  virtual expected<void> claim_name(std::string_view actor) = 0;

  /// Releases a name this node holds; a no-op otherwise.
  virtual void release_name(std::string_view actor) = 0;

  /// The live node holding `actor`, or not_found.
  virtual expected<std::string> owner_of(std::string_view actor) = 0;

  /// A live node's record, or not_found.
  virtual expected<v1::NodeRecord> read_node(std::string_view node) = 0;

  /// The records of all live nodes, sorted by name.
  virtual std::vector<v1::NodeRecord> nodes() = 0;

  /// (actor, node) for every name held by a live node, sorted.
  virtual std::vector<std::pair<std::string, std::string>> names() = 0;

  /// Told that `node` could not be reached: the directory checks whether it
  /// is alive and forgets it if not.
  virtual void suspect(std::string_view node) = 0;

  /// Told what a node said of itself in a link's handshake (its record,
  /// without its types), for directories that know no more of it.
  virtual void learn(const v1::NodeRecord& record) {
    (void) record;
  }
};

} // namespace courier::detail

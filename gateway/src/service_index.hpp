#pragma once

// Where the gateway learns who serves a gRPC service and what its methods
// look like, without the service's .proto compiled into its program: the
// services actors declared at spawn (node::served_services, read from the
// nodes' records) and the descriptors each node publishes
// (node::published_types), built into a descriptor pool per node. Both are
// cached, briefly and in bounded amounts: a call reads no file of the
// directory while its answer is fresh. Private to the gateway's target.

#include <chrono>
#include <cstddef>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>

#include "courier/courier.hpp"

namespace courier::gateway {

/// A descriptor pool built from the FileDescriptorProtos one node
/// publishes, and the factory of its dynamic messages. Messages it makes
/// keep it alive (they may outlive the cache's entry: a request waiting in
/// a link's queue, say).
///
/// Thread safety: all member functions are thread-safe once built.
class descriptor_set : public std::enable_shared_from_this<descriptor_set> {
public:
  /// Builds the pool from serialized FileDescriptorProtos, dependencies
  /// first; a file that does not parse or build (a missing import, a
  /// clash) is left out, with its dependents.
  static std::shared_ptr<descriptor_set>
  build(const std::vector<std::string>& files);

  const google::protobuf::DescriptorPool& pool() const noexcept {
    return pool_;
  }

  /// The files it holds, in the order built.
  const std::vector<const google::protobuf::FileDescriptor*>&
  files() const noexcept {
    return files_;
  }

  /// An empty message of `type` (a type of this pool).
  std::shared_ptr<google::protobuf::Message>
  make(const google::protobuf::Descriptor* type) const;

private:
  descriptor_set() = default;

  google::protobuf::DescriptorPool pool_;
  mutable google::protobuf::DynamicMessageFactory factory_{&pool_};
  std::vector<const google::protobuf::FileDescriptor*> files_;
};

/// Who serves which service, and the descriptors of each serving node.
///
/// Thread safety: all member functions are thread-safe; they may block
/// while they read the directory (never under a lock another call waits
/// for, except the one refresh of the services that concurrent callers
/// share).
class service_index {
public:
  /// How long a read of the nodes' services, and of a node's descriptors,
  /// is used before it is read again.
  static constexpr std::chrono::milliseconds services_ttl{1000};
  /// A service the last read does not list is read again if that read is
  /// older than this: a service declared a moment ago is served at once,
  /// and callers of unknown services cause a read this often at most.
  static constexpr std::chrono::milliseconds missing_ttl{100};
  static constexpr std::chrono::milliseconds descriptors_ttl{2000};
  /// At most this many declared services are kept (the rest are left out
  /// and said so in the log), and descriptor pools for this many nodes.
  static constexpr std::size_t max_services = 4096;
  static constexpr std::size_t max_pools = 32;

  explicit service_index(node& host);

  /// The services actors declared at spawn, cluster-wide, sorted by
  /// service (node::served_services), as read at most `max_age` ago.
  std::shared_ptr<const std::vector<service_info>>
  declared(std::chrono::milliseconds max_age = services_ttl);

  /// The declared servers of `service`: this node's first, then the
  /// others in turn (successive calls start at the next one), so that
  /// callers spread over them. Empty if nobody declared it.
  std::vector<service_info> servers_of(const std::string& service);

  /// The descriptors node `node_name` publishes, as read at most
  /// descriptors_ttl ago (rebuilt only when they changed); the node's
  /// error if it cannot be read.
  expected<std::shared_ptr<const descriptor_set>>
  descriptors_of(const std::string& node_name);

  /// The pools of the nodes in `also` and of every node that declares a
  /// service now (not this node's: its descriptors are in the program),
  /// at most max_pools, for reflection.
  std::vector<std::shared_ptr<const descriptor_set>>
  published_sets(std::vector<std::string> also);

private:
  struct pool_entry {
    std::string node;
    std::size_t digest = 0; // of the files it was built from
    std::shared_ptr<const descriptor_set> set;
    std::chrono::steady_clock::time_point read{};
  };

  node& host_;

  std::mutex refresh_mu_; // one reader of the records at a time
  std::mutex mu_;         // taken after refresh_mu_, never around a read
  std::shared_ptr<const std::vector<service_info>> declared_; // mu_
  std::chrono::steady_clock::time_point declared_read_{};     // mu_
  std::size_t turn_ = 0;                                      // mu_
  bool said_too_many_ = false;                                // mu_
  std::list<pool_entry> pools_; // mu_; most recently used first
};

} // namespace courier::gateway

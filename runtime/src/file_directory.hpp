#pragma once

// The machine-wide node directory: no daemon, just files (docs/directory.md).
//
//   <dir>/nodes/<node>.lock   flock(LOCK_EX) by the live node: liveness
//   <dir>/nodes/<node>.pb     its NodeRecord, replaced atomically
//   <dir>/names/<actor>       the owning node's name; created O_EXCL
//   <dir>/sockets/            the local tiers' endpoints (local_dir())
//
// A node killed with SIGKILL loses its flock at once; the next node that looks
// finds it dead and removes its files ("reaps" it), including the endpoints
// its record lists under sockets/. Linux calls only; a Windows port replaces
// this file.

#include <memory>
#include <mutex>
#include <string>

#include "directory.hpp"

namespace courier::detail {

/// The default directory: $COURIER_DIR, else /run/courier for root, else
/// /tmp/courier (shared, sticky).
std::string default_directory();

/// Thread safety: all member functions are thread-safe.
class file_directory final : public directory {
public:
  /// Opens (creating if needed) the directory at `path` and claims `node`:
  /// already_exists if a live node holds that name.
  [[nodiscard]] static expected<std::unique_ptr<file_directory>>
  join(std::string path, std::string node);

  ~file_directory() override;

  file_directory(const file_directory&) = delete;
  file_directory& operator=(const file_directory&) = delete;

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

  /// True if a node named `node` holds its lock.
  bool alive(std::string_view node) const;

  /// Removes a dead node's files; does nothing if it is alive.
  void reap(std::string_view node);

private:
  file_directory(std::string path, std::string node, int lock_fd) noexcept
    : path_(std::move(path)), node_(std::move(node)), lock_fd_(lock_fd) {
  }

  /// Removes the endpoints a record lists under local_dir().
  void remove_endpoints(const v1::NodeRecord& record) const;

  std::string path_;
  std::string node_;
  int lock_fd_;
  mutable std::mutex mu_;
  v1::NodeRecord published_; // guarded by mu_: the last record published
};

} // namespace courier::detail

#pragma once

// The file layer under the store: every byte the store reads or writes, and
// every directory change, goes through this interface (LevelDB's Env). The
// POSIX implementation is the real one; tests plug in layers that fail
// (EIO, ENOSPC) or simulate a power loss.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "courier/error.hpp"

namespace courier::durable {

/// Maps an errno of a failed file operation to an error: ENOSPC and EDQUOT
/// become `resource_exhausted` (the store resumes when space frees), others
/// `unavailable`; the text names the operation, the path and strerror.
error io_error(int err, const char* op, const std::string& path);

/// One open file, read and written at explicit offsets.
///
/// Thread safety: read_at() may run on any thread, also while another
/// thread writes the same object (the store reads records its writer has
/// finished with); the other functions one thread at a time per object.
/// Distinct objects may be used concurrently.
class file {
public:
  virtual ~file() = default;

  /// Writes all `size` bytes at `offset`, extending the file as needed.
  /// On an error part of the bytes may have been written; the caller
  /// truncates them away. Blocks on the disk only if the kernel does.
  [[nodiscard]] virtual expected<void>
  write_at(std::uint64_t offset, const void* data, std::size_t size) = 0;

  /// Reads up to `size` bytes at `offset`; returns how many (0 at the end).
  [[nodiscard]] virtual expected<std::size_t>
  read_at(std::uint64_t offset, void* data, std::size_t size) = 0;

  /// Makes every byte written so far durable (fdatasync). Blocks until the
  /// disk says so. An error here means the written data's fate is unknown.
  [[nodiscard]] virtual expected<void> sync() = 0;

  /// Cuts the file to `size` bytes (not durable until sync()).
  [[nodiscard]] virtual expected<void> truncate(std::uint64_t size) = 0;

  /// The file's size in bytes.
  [[nodiscard]] virtual expected<std::uint64_t> size() = 0;
};

/// The directory operations the store needs, by path.
///
/// Thread safety: all functions are thread-safe.
class file_system {
public:
  virtual ~file_system() = default;

  /// Opens `path` for reading and writing; with `create`, creates it empty
  /// if absent (then sync_dir() makes the name durable).
  [[nodiscard]] virtual expected<std::unique_ptr<file>>
  open(const std::string& path, bool create) = 0;

  /// The names (not paths) of the entries in `dir`, unordered.
  [[nodiscard]] virtual expected<std::vector<std::string>>
  list(const std::string& dir) = 0;

  /// Renames atomically, replacing `to` if it exists.
  [[nodiscard]] virtual expected<void> rename(const std::string& from,
                                              const std::string& to)
    = 0;

  /// Removes a file; removing a missing file is not an error.
  [[nodiscard]] virtual expected<void> remove(const std::string& path) = 0;

  /// Creates `dir` (and its parents) if absent.
  [[nodiscard]] virtual expected<void> make_dir(const std::string& dir) = 0;

  /// Makes the entries of `dir` (creations, renames, removals) durable.
  [[nodiscard]] virtual expected<void> sync_dir(const std::string& dir) = 0;

  /// Takes the exclusive lock of the store in `dir` (a `LOCK` file held
  /// with flock), so that one process at a time uses it; released when the
  /// returned handle goes away, or when the process dies. Fails with
  /// `failed_precondition` if another holder has it.
  [[nodiscard]] virtual expected<std::shared_ptr<void>>
  lock(const std::string& dir) = 0;

  /// Bytes free for an unprivileged writer on the file system of `dir`.
  [[nodiscard]] virtual expected<std::uint64_t>
  free_bytes(const std::string& dir) = 0;
};

/// The real file system: pread/pwrite, fdatasync, rename, fsync on the
/// directory, statvfs.
std::shared_ptr<file_system> posix_file_system();

} // namespace courier::durable

#pragma once

// A wrapper over the real file system that injects faults (LevelDB's
// EnvWrapper): from a chosen moment on, every fdatasync fails with EIO, or
// every read does. The writes themselves go to real files.
//
// Thread safety: all functions are thread-safe.

#include <atomic>
#include <cerrno>
#include <memory>

#include "courier/durable/file_system.hpp"

namespace courier::durable::testing {

class fault_file_system : public file_system {
public:
  explicit fault_file_system(std::shared_ptr<file_system> base)
    : base_(std::move(base)) {}

  /// From now on, file syncs fail with EIO.
  void fail_syncs() {
    failing_ = true;
  }

  /// From now on (or, with false, no longer), file reads fail with EIO.
  void fail_reads(bool on = true) {
    failing_reads_ = on;
  }

  std::uint64_t syncs() const {
    return syncs_;
  }

  expected<std::unique_ptr<file>> open(const std::string& path,
                                       bool create) override {
    auto f = base_->open(path, create);
    if (!f)
      return f.error();
    return std::unique_ptr<file>{new faulty_file(std::move(*f), path, *this)};
  }
  expected<std::vector<std::string>> list(const std::string& dir) override {
    return base_->list(dir);
  }
  expected<void> rename(const std::string& from,
                        const std::string& to) override {
    return base_->rename(from, to);
  }
  expected<void> remove(const std::string& path) override {
    return base_->remove(path);
  }
  expected<void> make_dir(const std::string& dir) override {
    return base_->make_dir(dir);
  }
  expected<void> sync_dir(const std::string& dir) override {
    return base_->sync_dir(dir);
  }
  expected<std::uint64_t> free_bytes(const std::string& dir) override {
    return base_->free_bytes(dir);
  }
  expected<std::shared_ptr<void>> lock(const std::string& dir) override {
    return base_->lock(dir);
  }

private:
  class faulty_file final : public file {
  public:
    faulty_file(std::unique_ptr<file> base, std::string path,
                fault_file_system& fs)
      : base_(std::move(base)), path_(std::move(path)), fs_(fs) {}
    expected<void> write_at(std::uint64_t offset, const void* data,
                            std::size_t size) override {
      return base_->write_at(offset, data, size);
    }
    expected<std::size_t> read_at(std::uint64_t offset, void* data,
                                  std::size_t size) override {
      if (fs_.failing_reads_)
        return io_error(EIO, "read", path_);
      return base_->read_at(offset, data, size);
    }
    expected<void> sync() override {
      ++fs_.syncs_;
      if (fs_.failing_)
        return io_error(EIO, "fdatasync", path_);
      return base_->sync();
    }
    expected<void> truncate(std::uint64_t size) override {
      return base_->truncate(size);
    }
    expected<std::uint64_t> size() override {
      return base_->size();
    }

  private:
    std::unique_ptr<file> base_;
    std::string path_;
    fault_file_system& fs_;
  };

  std::shared_ptr<file_system> base_;
  std::atomic<bool> failing_{false};
  std::atomic<bool> failing_reads_{false};
  std::atomic<std::uint64_t> syncs_{0};
};

} // namespace courier::durable::testing

#pragma once

// A file layer that simulates a power loss (LevelDB's FaultInjectionEnv,
// in memory). Every write and truncate since a file's last sync is kept
// aside; every create, rename and remove since the directory's last sync
// too. crash_image() makes what a disk could hold after the power went
// out at that instant: synced data intact, each unsynced write kept,
// dropped or torn (a random prefix of it), and a random prefix of the
// unsynced directory changes (directory journals keep their order).
//
// The image can be taken at a chosen operation (crash_at_operation), from
// inside that operation: the crash lands wherever the store happens to be.
//
// Thread safety: all functions are thread-safe.

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "courier/durable/file_system.hpp"

namespace courier::durable::testing {

class power_loss_file_system
  : public file_system,
    public std::enable_shared_from_this<power_loss_file_system> {
public:
  /// What a crash image contains: file name (no directory) to bytes.
  using image = std::map<std::string, std::string>;

  explicit power_loss_file_system(std::string dir, image start = {},
                                  std::uint64_t seed = 1)
    : dir_(std::move(dir)), rng_(seed) {
    for (auto& [name, bytes] : start) {
      auto node = std::make_shared<inode>();
      node->durable = node->live = bytes;
      live_[name] = node;
    }
    durable_ = live_;
  }

  /// At the n-th operation from now (1 = the next), take crash_image().
  void crash_at_operation(std::uint64_t n) {
    std::lock_guard guard{mu_};
    crash_at_ = ops_ + n;
  }

  /// The image taken at the chosen operation, if it was reached.
  std::optional<image> taken() {
    std::lock_guard guard{mu_};
    return taken_;
  }

  /// How many operations ran so far.
  std::uint64_t operations() {
    std::lock_guard guard{mu_};
    return ops_;
  }

  /// Counts of what crash images did to unsynced writes.
  struct tally {
    std::uint64_t kept = 0;
    std::uint64_t dropped = 0;
    std::uint64_t torn = 0;
  };
  tally counts() {
    std::lock_guard guard{mu_};
    return tally_;
  }

  image crash_image() {
    std::lock_guard guard{mu_};
    return crash_image_locked();
  }

  // -- file_system --------------------------------------------------------

  expected<std::unique_ptr<file>> open(const std::string& path,
                                       bool create) override {
    std::lock_guard guard{mu_};
    tick_locked();
    auto name = name_of(path);
    auto i = live_.find(name);
    if (i == live_.end()) {
      if (!create)
        return io_error(ENOENT, "open", path);
      auto node = std::make_shared<inode>();
      live_[name] = node;
      dir_ops_.push_back({dir_op::create, name, {}, node});
      return std::unique_ptr<file>{new sim_file(shared_from_this(), node)};
    }
    return std::unique_ptr<file>{new sim_file(shared_from_this(), i->second)};
  }

  expected<std::vector<std::string>> list(const std::string&) override {
    std::lock_guard guard{mu_};
    std::vector<std::string> out;
    for (auto& [name, node] : live_)
      out.push_back(name);
    return out;
  }

  expected<void> rename(const std::string& from,
                        const std::string& to) override {
    std::lock_guard guard{mu_};
    tick_locked();
    auto a = name_of(from);
    auto b = name_of(to);
    auto i = live_.find(a);
    if (i == live_.end())
      return io_error(ENOENT, "rename", from);
    auto node = i->second;
    live_.erase(i);
    live_[b] = node;
    dir_ops_.push_back({dir_op::rename, a, b, node});
    return {};
  }

  expected<void> remove(const std::string& path) override {
    std::lock_guard guard{mu_};
    tick_locked();
    auto name = name_of(path);
    if (live_.erase(name) != 0)
      dir_ops_.push_back({dir_op::remove, name, {}, nullptr});
    return {};
  }

  expected<void> make_dir(const std::string&) override {
    return {};
  }

  expected<void> sync_dir(const std::string&) override {
    std::lock_guard guard{mu_};
    tick_locked();
    durable_ = live_;
    dir_ops_.clear();
    return {};
  }

  expected<std::shared_ptr<void>> lock(const std::string&) override {
    // One store at a time by construction: the tests open them in turn.
    return std::shared_ptr<void>{};
  }

  expected<std::uint64_t> free_bytes(const std::string&) override {
    return std::uint64_t{1} << 40;
  }

private:
  struct pending_op {
    bool truncate = false;
    std::uint64_t offset = 0;
    std::string data;
  };

  struct inode {
    std::string durable;
    std::string live;
    std::vector<pending_op> pending;
  };

  struct dir_op {
    enum kind_t { create, rename, remove } kind;
    std::string name;
    std::string to;
    std::shared_ptr<inode> node;
  };

  class sim_file final : public file {
  public:
    sim_file(std::shared_ptr<power_loss_file_system> fs,
             std::shared_ptr<inode> node)
      : fs_(std::move(fs)), node_(std::move(node)) {}

    expected<void> write_at(std::uint64_t offset, const void* data,
                            std::size_t size) override {
      std::lock_guard guard{fs_->mu_};
      fs_->tick_locked();
      std::string bytes(static_cast<const char*>(data), size);
      put(node_->live, offset, bytes);
      node_->pending.push_back({false, offset, std::move(bytes)});
      return {};
    }

    expected<std::size_t> read_at(std::uint64_t offset, void* data,
                                  std::size_t size) override {
      std::lock_guard guard{fs_->mu_};
      if (offset >= node_->live.size())
        return std::size_t{0};
      auto n = std::min<std::size_t>(size, node_->live.size() - offset);
      std::memcpy(data, node_->live.data() + offset, n);
      return n;
    }

    expected<void> sync() override {
      std::lock_guard guard{fs_->mu_};
      fs_->tick_locked();
      node_->durable = node_->live;
      node_->pending.clear();
      return {};
    }

    expected<void> truncate(std::uint64_t size) override {
      std::lock_guard guard{fs_->mu_};
      fs_->tick_locked();
      node_->live.resize(size);
      node_->pending.push_back({true, size, {}});
      return {};
    }

    expected<std::uint64_t> size() override {
      std::lock_guard guard{fs_->mu_};
      return std::uint64_t{node_->live.size()};
    }

  private:
    std::shared_ptr<power_loss_file_system> fs_;
    std::shared_ptr<inode> node_;
  };

  static void put(std::string& target, std::uint64_t offset,
                  const std::string& bytes) {
    if (target.size() < offset + bytes.size())
      target.resize(offset + bytes.size(), '\0');
    std::copy(bytes.begin(), bytes.end(), target.begin() + offset);
  }

  static std::string name_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
  }

  void tick_locked() {
    if (++ops_ == crash_at_)
      taken_ = crash_image_locked();
  }

  image crash_image_locked() {
    auto names = durable_;
    std::uniform_int_distribution<std::size_t> prefix(0, dir_ops_.size());
    auto keep_ops = prefix(rng_);
    for (std::size_t i = 0; i < keep_ops; ++i) {
      auto& op = dir_ops_[i];
      if (op.kind == dir_op::create) {
        names[op.name] = op.node;
      } else if (op.kind == dir_op::rename) {
        names.erase(op.name);
        names[op.to] = op.node;
      } else {
        names.erase(op.name);
      }
    }
    image out;
    for (auto& [name, node] : names) {
      std::string bytes = node->durable;
      for (auto& op : node->pending) {
        auto fate = std::uniform_int_distribution<int>(0, 2)(rng_);
        if (fate == 0) {
          ++tally_.dropped;
          continue;
        }
        if (op.truncate) {
          ++tally_.kept;
          bytes.resize(op.offset);
          continue;
        }
        if (fate == 1) {
          ++tally_.kept;
          put(bytes, op.offset, op.data);
        } else {
          ++tally_.torn;
          auto cut = std::uniform_int_distribution<std::size_t>(
            0, op.data.empty() ? 0 : op.data.size() - 1)(rng_);
          put(bytes, op.offset, op.data.substr(0, cut));
        }
      }
      out[name] = std::move(bytes);
    }
    return out;
  }

  std::string dir_;
  std::mutex mu_;
  std::mt19937_64 rng_;
  std::map<std::string, std::shared_ptr<inode>> live_;
  std::map<std::string, std::shared_ptr<inode>> durable_;
  std::vector<dir_op> dir_ops_;
  std::uint64_t ops_ = 0;
  std::uint64_t crash_at_ = 0;
  std::optional<image> taken_;
  tally tally_;
};

} // namespace courier::durable::testing

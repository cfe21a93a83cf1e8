#pragma once

// Recovery's reading of the segments (recovery.cpp): a thread of its own
// reads them while the opening thread decodes.

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "courier/durable/file_system.hpp"
#include "format.hpp"

namespace courier::durable::detail {

/// Reads the segments front to back on a thread of its own, in chunks of
/// 1 MiB into a few reused buffers, while the opening thread decodes them:
/// the kernel's share of reading (page cache, copies) runs on another CPU.
/// A record that straddles chunks is stitched together in a buffer of its
/// own.
class segment_reader {
public:
  struct job {
    file* f = nullptr;
    std::uint64_t size = 0;
  };

  explicit segment_reader(std::vector<job> jobs) : jobs_(std::move(jobs)) {
    for (int i = 0; i < 4; ++i)
      free_.push_back(std::make_unique_for_overwrite<char[]>(chunk_bytes));
    thread_ = std::thread{[this] { read_all(); }};
  }

  ~segment_reader() {
    stop();
  }

  segment_reader(const segment_reader&) = delete;
  segment_reader& operator=(const segment_reader&) = delete;

  /// Stops the thread (before a file is cut, and when done).
  void stop() {
    {
      std::lock_guard guard{mu_};
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
      thread_.join();
  }

  /// Moves on to the next job's segment.
  expected<void> start_segment() {
    if (job_ != no_job)
      while (!ended_)
        if (auto ok = advance(); !ok)
          return ok;
    ++job_;
    ended_ = false;
    return {};
  }

  /// The bytes from file offset `offset` on that are in memory: a whole
  /// record if the file holds one there (its header's length, if sane,
  /// says how much that is), fewer only at the end of the file. Valid
  /// until the next call.
  expected<std::string_view> record_at(std::uint64_t offset) {
    if (auto ok = reach(offset); !ok)
      return ok.error();
    if (!cur_.buf)
      return std::string_view{};
    std::string_view have{
      cur_.buf.get() + (offset - cur_.at),
      static_cast<std::size_t>(cur_.at + cur_.len - offset)};
    auto need = wanted(have);
    if (have.size() >= need)
      return have;
    stitch_.assign(have);
    while (stitch_.size() < need) {
      auto from = offset + stitch_.size();
      if (auto ok = reach(from); !ok)
        return ok.error();
      if (!cur_.buf)
        break; // the file ends inside the record
      auto take = std::min<std::uint64_t>(need - stitch_.size(),
                                          cur_.at + cur_.len - from);
      stitch_.append(cur_.buf.get() + (from - cur_.at),
                     static_cast<std::size_t>(take));
      need = wanted(stitch_);
    }
    return std::string_view{stitch_};
  }

private:
  static constexpr std::size_t chunk_bytes = 1u << 20;
  static constexpr std::size_t no_job = static_cast<std::size_t>(-1);

  struct chunk {
    std::size_t job = 0;
    std::uint64_t at = 0;
    std::size_t len = 0; // 0: the end of its job
    std::unique_ptr<char[]> buf;
    std::optional<error> failed;
  };

  /// How many bytes the record at the start of `v` needs.
  static std::size_t wanted(std::string_view v) {
    if (v.size() < format::record_header_size)
      return format::record_header_size;
    auto length = format::load_u32(v.data() + 4);
    if (length > format::max_record_body)
      return v.size(); // read_record says what is wrong
    return format::record_header_size + length;
  }

  /// Makes cur_ the chunk holding `offset`, or none at the end.
  expected<void> reach(std::uint64_t offset) {
    while (!ended_ && (!cur_.buf || offset >= cur_.at + cur_.len))
      if (auto ok = advance(); !ok)
        return ok;
    if (ended_)
      cur_ = chunk{};
    return {};
  }

  /// Gives cur_'s buffer back and takes the next chunk of this job.
  expected<void> advance() {
    std::unique_lock guard{mu_};
    if (cur_.buf) {
      free_.push_back(std::move(cur_.buf));
      cv_.notify_all();
    }
    cv_.wait(guard, [&] { return !ready_.empty(); });
    cur_ = std::move(ready_.front());
    ready_.pop_front();
    if (cur_.failed)
      return *cur_.failed;
    if (cur_.len == 0) {
      ended_ = true;
      if (cur_.buf)
        free_.push_back(std::move(cur_.buf));
      cv_.notify_all();
    }
    return {};
  }

  /// The reading thread.
  void read_all() {
    for (std::size_t j = 0; j < jobs_.size(); ++j) {
      std::uint64_t at = 0;
      for (;;) {
        chunk c;
        c.job = j;
        c.at = at;
        {
          std::unique_lock guard{mu_};
          cv_.wait(guard, [&] { return stop_ || !free_.empty(); });
          if (stop_)
            return;
          c.buf = std::move(free_.back());
          free_.pop_back();
        }
        auto want = static_cast<std::size_t>(
          std::min<std::uint64_t>(chunk_bytes, jobs_[j].size - at));
        if (want > 0) {
          auto got = jobs_[j].f->read_at(at, c.buf.get(), want);
          if (!got)
            c.failed = got.error();
          else
            c.len = *got;
        }
        bool last = c.len == 0 || c.failed;
        at += c.len;
        {
          std::lock_guard guard{mu_};
          ready_.push_back(std::move(c));
        }
        cv_.notify_all();
        if (last)
          break;
      }
    }
  }

  const std::vector<job> jobs_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<chunk> ready_;
  std::vector<std::unique_ptr<char[]>> free_;
  bool stop_ = false;
  std::thread thread_;
  // The decoding thread's side.
  std::size_t job_ = no_job;
  bool ended_ = false;
  chunk cur_;
  std::string stitch_;
};

} // namespace courier::durable::detail

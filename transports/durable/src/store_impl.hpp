#pragma once

// The store's insides, split by concern: store.cpp (the operations on the
// in-memory state), apply.cpp (what a durable record changes, or undoing
// it after a full disk), writer.cpp (batches, segments, group commit, the
// writer and maintenance threads), recovery.cpp (open: scan, truncate,
// rebuild), compaction.cpp, and store_api.cpp (the public wrappers).
//
// Lock order: commit_mu_ (the commit token), then mu_ (the state), then
// queue_mu_ (the writer's queue); compaction_mu_ before mu_. Nobody holds
// queue_mu_ while taking mu_, and nobody takes commit_mu_ (blocking)
// while holding mu_.

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "courier/durable/store.hpp"
#include "dedup_window.hpp"
#include "format.hpp"

namespace courier::durable {

class store::impl {
public:
  explicit impl(store_options options);

  // -- state ---------------------------------------------------------------

  enum class message_stage : std::uint8_t { queued, claimed, dead };

  struct message_state {
    std::uint64_t id = 0;
    std::string queue;
    std::string payload;
    message_options options;
    /// When it was stored, with boottime_ns rebased into this boot.
    clock_reading stored_at;
    std::uint32_t attempts = 0;
    message_stage stage = message_stage::queued;
    /// The current claim counted an attempt.
    bool counted = false;
    /// A removal, death or replay of it waits for its batch.
    bool busy = false;
    dead_reason reason = dead_reason::none;
    std::string detail;
    std::int64_t died_wall_ns = 0;
    /// The segment holding its message record, and that record's size.
    std::uint64_t segment = 0;
    std::uint64_t record_bytes = 0;
  };

  struct queue_state {
    /// Ordering key: (7 - priority, id).
    using key = std::pair<std::uint8_t, std::uint64_t>;
    /// Messages that are neither dead nor pending, claimed included.
    std::set<key> all;
    /// The claimable subset of `all`.
    std::set<key> ready;
    std::uint64_t in_flight = 0;
    /// Appends waiting for their batch (count toward the quota).
    std::uint64_t pending = 0;
    /// Payload bytes of `all` and the pending appends.
    std::uint64_t bytes = 0;
  };

  struct segment_info {
    std::uint64_t bytes = 0;
    /// Bytes of message records of live messages (the rest is garbage).
    std::uint64_t live_bytes = 0;
    /// Written by compaction: holds only live records.
    bool compacted = false;
  };

  /// One item for the writer: a record (or none: an acknowledgement that
  /// must follow everything before it) and what to do once it is durable.
  struct entry {
    bool has_record = false;
    format::record_type type{};
    std::string body;
    std::uint64_t id = 0;
    std::unique_ptr<message_state> message;
    append_callback on_append;
    done_callback on_done;
    bool duplicate = false;
    /// Set by the writer: where the record went.
    std::uint64_t segment = 0;
    std::uint64_t record_bytes = 0;
  };

  // store.cpp (operations); apply.cpp (apply_locked, roll_back_locked)
  void append(std::string_view queue, std::string payload,
              const message_options& options, append_callback done);
  expected<std::vector<stored_message>> claim(std::string_view queue,
                                              std::size_t max, bool counted);
  expected<void> release(std::uint64_t id,
                         std::chrono::milliseconds retry_after);
  /// Puts `m` (no longer claimed) back in its queue, at once or after
  /// `retry_after`.
  void requeue_locked(message_state& m, std::chrono::milliseconds retry_after);
  /// Writes `m`'s attempt count with the next batch.
  void submit_attempts_locked(const message_state& m);
  void complete(std::uint64_t id, done_callback done);
  void fail(std::uint64_t id, std::string reason, done_callback done,
            std::chrono::milliseconds retry_after);
  std::vector<stored_message> peek(std::string_view queue,
                                   std::size_t max) const;
  std::vector<queue_info> queues() const;
  std::vector<dead_letter> dead_letters() const;
  std::size_t dead_letter_count() const {
    std::lock_guard guard{mu_};
    return dead_.size();
  }
  void replay(std::uint64_t id, done_callback done);
  void purge(std::string_view queue,
             std::function<void(expected<std::size_t>)> done);
  void discard(std::uint64_t id, done_callback done);
  /// Submits the removal of `m` (marked busy until it is durable).
  void remove_locked(message_state& m, done_callback done);
  std::size_t expire_due();
  void flush(done_callback done);
  expected<void> status() const;
  void close();

  /// Applies a durable entry to the state (writer thread, mu_ held).
  void apply_locked(entry& e);
  /// Undoes what submitting `e` reserved, after its batch failed with a
  /// disk-full error (writer thread, mu_ held).
  void roll_back_locked(entry& e);

  // writer.cpp
  void start_threads();
  /// Queues `e` for the next batch and wakes the writer thread (unless
  /// the calling thread is leading, see try_lead).
  void submit_locked(entry e);
  void writer_loop();
  /// True when queue_ holds a whole batch (queue_mu_ held).
  bool batch_full_locked() const;
  /// Moves the next batch out of queue_ (queue_mu_ held).
  void take_batch_locked(std::vector<entry>& batch);
  /// Writes, syncs, applies and acknowledges `batch` (commit_mu_ held).
  void commit(std::vector<entry>& batch, std::string& buffer);
  /// Leader-based group commit (LevelDB's writer queue): a thread that is
  /// about to wait for its own submission commits the queued batch itself
  /// when no one else is committing, sparing two thread hand-offs. Returns
  /// false if someone else commits. Only without a group commit window.
  bool try_lead();
  /// Marks the calling thread as leading while it submits.
  struct leading_scope {
    leading_scope();
    ~leading_scope();
  };
  void maintenance_loop();
  /// Stops the store for good with `why` (data_loss for the pending ones).
  void stop_store(error why, std::vector<entry>& batch);
  expected<void> start_segment(std::uint64_t number,
                               std::uint64_t first_sequence);

  // recovery.cpp
  expected<void> recover();

  // compaction.cpp
  expected<void> compact();

  std::string segment_path(std::uint64_t number) const;

  // helpers (store.cpp)
  /// Reads a dead (replay) record's body into `m`, which becomes dead
  /// (queued again); false if the body is malformed.
  static bool read_dead(std::string_view body, message_state& m);
  static bool read_replay(std::string_view body, message_state& m);
  void index_locked(message_state& m);
  /// Takes `m` out of its queue's sets and counts (not out of messages_).
  void unindex_locked(message_state& m);
  void enqueue_ready_locked(message_state& m);
  void kill_locked(message_state& m, dead_reason reason, std::string detail,
                   done_callback done);
  std::optional<dead_reason> expired_locked(const message_state& m,
                                            std::int64_t now) const;
  stored_message copy_out(const message_state& m, std::int64_t now) const;
  void add_deadlines_locked(const message_state& m);
  std::optional<error> refusal_locked() const;
  /// Message `id` if it is at `stage` and not busy; else fails `done`
  /// (after unlocking `guard`) and returns null.
  message_state* find_locked(std::unique_lock<std::mutex>& guard,
                             std::uint64_t id, message_stage stage,
                             done_callback& done);
  bool disk_full_locked();

  store_options opt_;
  std::shared_ptr<file_system> fs_;
  /// The directory's lock, held while the store is open.
  std::shared_ptr<void> lock_;
  std::shared_ptr<clock_source> clock_;
  recovery_report report_;

  mutable std::mutex mu_;
  std::unordered_map<std::uint64_t, message_state> messages_;
  std::map<std::string, queue_state, std::less<>> queues_;
  std::set<std::uint64_t> dead_;
  /// (deadline on this boot's BOOTTIME, message id)
  std::multimap<std::int64_t, std::uint64_t> deadlines_;
  /// Failed messages waiting out their retry_after: (steady ns, id).
  std::multimap<std::int64_t, std::uint64_t> delayed_;
  detail::dedup_window dedup_;
  std::set<std::tuple<std::uint64_t, std::uint32_t, std::uint64_t>>
    pending_dedup_;
  std::uint64_t total_messages_ = 0;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t next_id_ = 1;
  std::optional<error> stopped_;
  bool closed_ = false;
  bool disk_full_ = false;
  std::int64_t last_space_probe_ns_ = 0;
  std::map<std::uint64_t, segment_info> segments_;
  std::uint64_t active_number_ = 0;
  bool compaction_wanted_ = false;
  std::int64_t last_clock_record_ns_ = 0;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<entry> queue_;
  /// Bytes of the records in queue_ (with their headers).
  std::size_t queued_bytes_ = 0;
  /// When the oldest entry in queue_ arrived.
  std::chrono::steady_clock::time_point first_queued_;
  bool writer_stop_ = false;
  std::condition_variable maintenance_cv_;
  bool maintenance_stop_ = false;

  // Owned by whoever holds commit_mu_ (recover() before the threads run).
  std::unique_ptr<file> active_file_;
  std::uint64_t active_size_ = 0;
  std::uint64_t next_sequence_ = 1;

  /// The commit token: whoever holds it writes the active segment.
  std::mutex commit_mu_;
  std::mutex compaction_mu_;
  std::thread writer_;
  std::thread maintenance_;
};

} // namespace courier::durable

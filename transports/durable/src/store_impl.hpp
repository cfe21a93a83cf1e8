#pragma once

// The store's insides, split by concern: store.cpp (the operations on the
// in-memory state), apply.cpp (what a durable record changes, or undoing
// it after a full disk), writer.cpp (batches, segments, group commit, the
// writer and maintenance threads), recovery.cpp (open: scan, truncate,
// rebuild), reads.cpp (payloads read back from the records), compaction.cpp,
// and store_api.cpp (the public wrappers). The index itself is
// message_table.hpp.
//
// Lock order: commit_mu_ (the commit token), then mu_ (the state), then
// queue_mu_ (the writer's queue); compaction_mu_ before mu_. Nobody holds
// queue_mu_ while taking mu_, and nobody takes commit_mu_ (blocking)
// while holding mu_.

#include <array>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include "courier/durable/store.hpp"
#include "dedup_window.hpp"
#include "format.hpp"
#include "message_table.hpp"

namespace courier::durable {

class store::impl {
public:
  explicit impl(store_options options);

  // -- state ---------------------------------------------------------------

  using message_stage = detail::message_stage;
  using message_state = detail::message_slot;

  /// What a dead letter has besides its slot (dead letters are rare).
  struct dead_info {
    dead_reason reason = dead_reason::none;
    std::string detail;
    std::int64_t died_wall_ns = 0;
  };

  /// A queue's order: priority (7 first), then id. Claims take from the
  /// front of `fresh`, a FIFO per priority of ids in append order, and
  /// from `returned`, the messages a claim took once that are claimable
  /// again (released, failed, rolled back, replayed): a release puts a
  /// message back at its place without touching the FIFO. Both may hold
  /// ids of messages that left since (purged, expired); a claim skips
  /// them (lazy deletion).
  struct queue_state {
    std::string name;
    /// Made when a priority is first used (an empty std::deque holds
    /// 600 bytes; most queues use one priority).
    std::array<std::unique_ptr<std::deque<std::uint64_t>>, 8> fresh;
    std::deque<std::uint64_t>& fifo(std::uint8_t priority) {
      auto& f = fresh[priority];
      if (!f)
        f = std::make_unique<std::deque<std::uint64_t>>();
      return *f;
    }
    /// (7 - priority, id)
    std::set<std::pair<std::uint8_t, std::uint64_t>> returned;
    /// Messages that are neither dead nor pending, claimed included.
    std::uint64_t depth = 0;
    std::uint64_t in_flight = 0;
    /// Appends waiting for their batch (count toward the quota).
    std::uint64_t pending = 0;
    /// Payload bytes of the members and the pending appends.
    std::uint64_t bytes = 0;
  };

  struct segment_info {
    std::uint64_t bytes = 0;
    /// Bytes of message records of live messages (the rest is garbage).
    std::uint64_t live_bytes = 0;
    /// Written by compaction: holds only live records.
    bool compacted = false;
    /// Open for reading payloads (shared: a read outside mu_ keeps a
    /// segment that compaction deletes readable).
    std::shared_ptr<file> f;
  };

  /// Where a message's record is, for reading it outside mu_.
  struct record_location {
    std::uint64_t id = 0;
    std::shared_ptr<file> f;
    std::uint64_t segment = 0;
    std::uint64_t offset = 0;
    std::uint32_t bytes = 0;
    /// Its bytes are in the caller's buffer already (fill_recent_locked).
    bool filled = false;
  };

  /// One item for the writer: a record (or none: an acknowledgement that
  /// must follow everything before it) and what to do once it is durable.
  struct entry {
    bool has_record = false;
    format::record_type type{};
    std::string body;
    std::uint64_t id = 0;
    /// A message record: the message's slot, added once durable, and its
    /// producer triple (de-duplication).
    message_state message;
    std::uint64_t producer_id = 0;
    std::uint32_t producer_epoch = 0;
    std::uint64_t sequence = 0;
    append_callback on_append;
    done_callback on_done;
    bool duplicate = false;
    /// The record's size, header included (0: none), set when submitted.
    std::uint64_t record_bytes = 0;
    /// Set by the writer: where the record went.
    std::uint64_t segment = 0;
    std::uint64_t offset = 0;
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
  void requeue_locked(std::uint64_t id, message_state& m,
                      std::chrono::milliseconds retry_after);
  /// Writes `m`'s attempt count with the next batch.
  void submit_attempts_locked(std::uint64_t id, const message_state& m);
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
  void remove_locked(std::uint64_t id, message_state& m, done_callback done);
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
  /// The same with the record's body given apart (e.body stays as it is).
  void submit_locked(entry e, std::string_view body);
  void writer_loop();
  /// True when queue_ holds a whole batch (queue_mu_ held).
  bool batch_full_locked() const;
  /// Moves the next batch out of queue_, its records' bytes into
  /// `records` (queue_mu_ held).
  void take_batch_locked(std::vector<entry>& batch, std::string& records);
  /// Writes, syncs, applies and acknowledges `batch` (commit_mu_ held).
  void commit(std::vector<entry>& batch, std::string& buffer);
  /// Leader-based group commit (LevelDB's writer queue): a thread that is
  /// about to wait for its own submission commits the queued batch itself
  /// when no one else is committing, sparing two thread hand-offs. Returns
  /// false if someone else commits. Only without a group commit window.
  bool try_lead();
  /// With a group commit window: waits (holding queue_mu_ through
  /// `guard`) until the queued batch should be committed.
  void wait_for_batch_locked(std::unique_lock<std::mutex>& guard);
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
  /// Reads a dead record's body into `d`; false if it is malformed.
  static bool read_dead(std::string_view body, dead_info& d);
  /// Reads a replay record's body: when the message was stored again.
  static bool read_replay(std::string_view body, clock_reading& at);
  /// The index of queue `name`, added if new.
  std::uint32_t queue_index_locked(std::string_view name);
  /// Adds message `id` (in its slot, queued or dead) to its queue's
  /// counts (a new one to the back of its FIFO) and its timers.
  void index_locked(std::uint64_t id, message_state& m, bool fresh);
  /// Takes `m` out of its queue's counts (not out of messages_).
  void unindex_locked(message_state& m);
  /// `m` is claimable again: back where a claim finds it.
  void enqueue_ready_locked(std::uint64_t id, message_state& m);
  void kill_locked(std::uint64_t id, message_state& m, dead_reason reason,
                   std::string detail, done_callback done);
  std::optional<dead_reason> expired_locked(const message_state& m,
                                            std::int64_t now) const;
  record_location locate_locked(std::uint64_t id, const message_state& m) const;
  /// Copies the records at `where` that recent_bytes_ holds into `buffer`
  /// (each at the sum of the sizes before it) and marks them filled.
  void fill_recent_locked(std::vector<record_location>& where,
                          std::string& buffer) const;
  /// Keeps the batch just written at `offset` of `segment` in
  /// recent_bytes_ (writer, mu_ held).
  void remember_recent_locked(std::uint64_t segment, std::uint64_t offset,
                              std::string_view bytes);
  /// Reads the message records at `where` (neighbours with one read; the
  /// filled ones are in `buffer` already) and returns their bodies,
  /// decoded into views of `buffer`; data_loss naming the file and offset
  /// if one cannot be read or is not the message record it should be.
  /// Without mu_.
  expected<std::vector<format::message_view>>
  read_records(const std::vector<record_location>& where,
               std::string& buffer) const;
  /// copy_out() of messages `ids` (in states `states`) with their records
  /// read from `where`; leaves out a message whose record cannot be read.
  std::vector<stored_message>
  read_out(const std::vector<std::uint64_t>& ids,
           const std::vector<record_location>& where,
           const std::vector<message_state>& states) const;
  /// The message as callers see it, its payload from `body`.
  stored_message copy_out(std::uint64_t id, const message_state& m,
                          const format::message_view& body,
                          std::int64_t now) const;
  void add_deadlines_locked(std::uint64_t id, const message_state& m);
  std::optional<error> refusal_locked() const;
  /// Message `id` if it is at `stage` and not busy; else fails `done`
  /// (after unlocking `guard`) and returns null.
  message_state* find_locked(std::unique_lock<std::mutex>& guard,
                             std::uint64_t id, message_stage stage,
                             done_callback& done);
  bool disk_full_locked();

  store_options opt_;
  /// A window and a quiet time: batches close when appends stop.
  bool quiet_close_ = opt_.group_commit_window.count() > 0
                      && opt_.group_commit_quiet.count() > 0;
  std::shared_ptr<file_system> fs_;
  /// The directory's lock, held while the store is open.
  std::shared_ptr<void> lock_;
  std::shared_ptr<clock_source> clock_;
  recovery_report report_;

  mutable std::mutex mu_;
  detail::message_table messages_;
  /// Indexed by message_state::queue; never shrinks (a node has one queue
  /// per destination and lane).
  std::deque<queue_state> queues_;
  std::map<std::string, std::uint32_t, std::less<>> queue_names_;
  /// The dead letters, by id.
  std::map<std::uint64_t, dead_info> dead_;
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
  /// The last 1 to 2 MiB committed to the active segment: a claim of a
  /// message appended lately copies its record from here instead of
  /// reading the file (a consumer that keeps up makes no system call).
  std::string recent_bytes_;
  std::uint64_t recent_segment_ = 0;
  /// The segment offset of recent_bytes_[0].
  std::uint64_t recent_at_ = 0;
  std::uint64_t active_number_ = 0;
  bool compaction_wanted_ = false;
  std::int64_t last_clock_record_ns_ = 0;

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::vector<entry> queue_;
  /// The records of queue_'s entries, back to back, their headers to be
  /// filled in by the commit.
  std::string queued_records_;
  /// Bytes of the records in queue_ (with their headers).
  std::size_t queued_bytes_ = 0;
  /// When the oldest entry in queue_ arrived.
  std::chrono::steady_clock::time_point first_queued_;
  /// When the last append joined the queue (kept only with a window and
  /// a quiet time).
  std::chrono::steady_clock::time_point last_queued_;
  bool writer_stop_ = false;
  std::condition_variable maintenance_cv_;
  bool maintenance_stop_ = false;

  // Owned by whoever holds commit_mu_ (recover() before the threads run).
  std::shared_ptr<file> active_file_;
  /// A leader's batch (try_lead), kept for their buffers' room.
  std::vector<entry> lead_batch_;
  std::string lead_records_;
  std::uint64_t active_size_ = 0;
  std::uint64_t next_sequence_ = 1;

  /// The commit token: whoever holds it writes the active segment.
  std::mutex commit_mu_;
  std::mutex compaction_mu_;
  std::thread writer_;
  std::thread maintenance_;
};

} // namespace courier::durable

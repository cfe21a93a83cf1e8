#pragma once

// The durable store: named queues of messages on disk, for MSMQ-style
// store-and-forward (ARCHITECTURE.md section 6). A node puts a durable
// message in a queue (its outgoing queue per destination, or the target's
// incoming queue), the store acknowledges once the message is fsync'd, a
// consumer claims messages in order and completes them after its handler
// returned, which removes them. Failed attempts are counted; after
// max_attempts, or when a timer runs out, a message moves to the dead
// letters with a reason, from where it can be replayed.
//
// The format on disk is docs/disk-format.md; the bounds are in
// docs/operations.md ("The durable store").

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "courier/durable/clock.hpp"
#include "courier/durable/file_system.hpp"
#include "courier/error.hpp"

namespace courier::durable {

/// Limits of one queue, or of the whole store. A post over either fails at
/// once with `resource_exhausted`; nothing is dropped.
struct quota {
  std::uint64_t max_messages = 0;
  /// Payload bytes.
  std::uint64_t max_bytes = 0;
};

struct dead_letter;

struct store_options {
  /// The store's directory; created if absent. One store per directory.
  std::string directory;
  /// How long the writer waits after the first append of a batch for more
  /// to join it. Zero: a batch is whatever arrived while the previous
  /// fsync ran (one fsync per message for a lone synchronous writer).
  std::chrono::microseconds group_commit_window{0};
  /// Inside the window, a batch also closes once no append has joined it
  /// for this long: waiting longer only delays the appends already in it
  /// (with 4 synchronous writers, all four are in the batch a few
  /// microseconds after the last commit's acknowledgements). Zero: the
  /// batch waits out the whole window.
  std::chrono::microseconds group_commit_quiet{100};
  /// A batch closes at this many bytes even inside the window.
  std::size_t max_batch_bytes = 4u << 20;
  /// A batch closes at this many records even inside the window (0: no
  /// limit but the bytes).
  std::size_t max_batch_messages = 0;
  /// A segment is sealed and a new one started past this size.
  std::uint64_t segment_bytes = 64u << 20;
  /// Payloads above this are refused with `invalid_argument`.
  std::size_t max_message_bytes = 4u << 20;
  quota queue_quota{100'000, 64u << 20};
  /// Counts every queue and the dead letters.
  quota store_quota{1'000'000, 512u << 20};
  /// A message failed this many times goes to the dead letters (poison).
  std::uint32_t max_attempts = 5;
  /// De-duplication: per (producer, epoch), sequences within this distance
  /// of the highest one are remembered one by one; older ones are
  /// duplicates.
  std::uint32_t dedup_window = 1024;
  /// (producer, epoch) pairs remembered; the least recently used one is
  /// forgotten beyond this.
  std::size_t dedup_max_producers = 65'536;
  /// Compact sealed segments once they hold this many bytes of handled
  /// records and more than half of them are garbage.
  std::uint64_t compaction_garbage_bytes = 32u << 20;
  bool compact_automatically = true;
  /// How often the store looks for expired messages on its own.
  std::chrono::milliseconds expiry_interval{100};
  /// After a disk-full error, appends fail at once until the file system
  /// has this much free again (checked at most every 20 ms).
  std::uint64_t resume_free_bytes = 1u << 20;
  /// The file layer; null means posix_file_system().
  std::shared_ptr<file_system> files;
  /// The clocks; null means system_clock_source().
  std::shared_ptr<clock_source> clock;
  /// Called once a message has become a dead letter (its dead record is
  /// durable): expired, poison, with its payload read back from its record
  /// (empty if that read fails). Runs on the store's writer thread or on
  /// the thread whose call found it dead; must not block and must not call
  /// the store's *_and_wait functions.
  std::function<void(const dead_letter&)> on_dead_letter;
};

/// How one message is stored. A producer id of 0 means no de-duplication.
struct message_options {
  std::uint64_t producer_id = 0;
  std::uint32_t producer_epoch = 0;
  std::uint64_t sequence = 0;
  /// 0 (lowest) to 7: a queue hands out higher priorities first, and equal
  /// priorities in the order they were appended.
  std::uint8_t priority = 3;
  /// Zero means no limit. Both timers run from the append; a node appends
  /// to a target's incoming queue with time_to_reach_queue zero (it has
  /// reached it) and time_to_be_received reduced by stored_message::age.
  std::chrono::nanoseconds time_to_reach_queue{0};
  std::chrono::nanoseconds time_to_be_received{0};
};

/// Why a message became a dead letter.
enum class dead_reason : std::uint8_t {
  none = 0,
  time_to_reach_queue = 1,
  time_to_be_received = 2,
  /// It failed max_attempts times.
  poison = 3,
};

std::string_view to_string(dead_reason reason) noexcept;

struct append_result {
  /// The message's id in this store (unique, increasing in append order).
  std::uint64_t id = 0;
  /// True when (producer, epoch, sequence) was seen before: nothing was
  /// stored and `id` is 0; the original is durable when this arrives.
  bool duplicate = false;
};

/// A message as read from the store (a copy).
struct stored_message {
  std::uint64_t id = 0;
  std::string queue;
  std::string payload;
  message_options options;
  /// Failed attempts so far, or claims of this one included for claim().
  std::uint32_t attempts = 0;
  /// Wall-clock time of the append (for people; expiry does not read it).
  std::int64_t stored_wall_ns = 0;
  /// How long it has been stored, on the monotonic clocks.
  std::chrono::nanoseconds age{0};
};

struct dead_letter {
  stored_message message;
  dead_reason reason = dead_reason::none;
  std::string detail;
  std::int64_t died_wall_ns = 0;
};

struct queue_info {
  std::string name;
  /// Messages waiting or in flight (not dead letters).
  std::uint64_t depth = 0;
  std::uint64_t in_flight = 0;
  std::uint64_t bytes = 0;
  /// The oldest message's append time (wall clock), 0 when empty.
  std::int64_t oldest_wall_ns = 0;
};

/// What open() found.
struct recovery_report {
  std::size_t segments = 0;
  std::uint64_t records = 0;
  std::uint64_t messages = 0;
  std::uint64_t dead_letters = 0;
  /// Bytes cut from the end of the last segment (a torn tail), and where.
  std::uint64_t truncated_bytes = 0;
  std::string truncated_file;
  std::uint64_t truncated_at = 0;
};

/// The durable store. Open with store::open(); destroy (or close()) to
/// stop its two threads (the writer and the maintenance thread).
///
/// Completion callbacks run on the writer thread after the batch's fsync
/// (or inline, on the caller's thread, when the call fails at once); they
/// must not block and must not call the store's *_and_wait functions.
///
/// Once an fsync (or a write other than disk full) fails, the store stops:
/// everything pending fails with `data_loss`, later calls with
/// `unavailable`, until the directory is opened again.
///
/// Thread safety: all functions are thread-safe.
class store {
public:
  using append_callback = std::function<void(expected<append_result>)>;
  using done_callback = std::function<void(expected<void>)>;

  /// Opens (and recovers) the store in `options.directory`. Fails with
  /// `data_loss` naming the file and offset if a record before the tail is
  /// corrupt, `failed_precondition` if another store has the directory
  /// open, `unimplemented` without SSE4.2, `invalid_argument` for bad
  /// options. Blocks while it reads the whole log.
  [[nodiscard]] static expected<std::unique_ptr<store>>
  open(store_options options);

  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

  /// Appends a message to `queue`. `done` gets the id once the message is
  /// durable, or at once: `resource_exhausted` (quota, disk full),
  /// `invalid_argument` (bad queue name, priority, size), `unavailable`
  /// (stopped). A duplicate (producer, epoch, sequence) is acknowledged
  /// with duplicate = true and not stored.
  void append(std::string_view queue, std::string payload,
              const message_options& options, append_callback done);

  /// append() that waits for the outcome. Blocks until the fsync.
  [[nodiscard]] expected<append_result>
  append_and_wait(std::string_view queue, std::string payload,
                  const message_options& options = {});

  /// Takes up to `max` messages from the front of `queue` for handling,
  /// in order (priority, then append order), counting an attempt on each;
  /// they stay stored, invisible to other claims, until complete() or
  /// fail(), or until the store is reopened. Expired messages met on the
  /// way go to the dead letters. The payloads are read from the segments
  /// (the page cache, unless the store was just opened or the messages are
  /// old); a record that cannot be read fails the claim with `data_loss`
  /// naming it, and leaves the messages to claim again. Never waits for an
  /// fsync: the attempt counts are written with the next batch; to count
  /// an attempt whose handler may kill the process (poison by crash loop),
  /// call flush() before running the handlers.
  [[nodiscard]] expected<std::vector<stored_message>>
  claim(std::string_view queue, std::size_t max = 1);

  /// claim() that counts no attempt and writes nothing: for a queue whose
  /// consumer only moves messages on (a node's outgoing queue, where a
  /// route that is down is no fault of the message). Messages claimed so
  /// are given back with release(), or removed with complete().
  [[nodiscard]] expected<std::vector<stored_message>>
  claim_uncounted(std::string_view queue, std::size_t max = 1);

  /// Gives claimed message `id` back to its place in the queue, visible
  /// again after `retry_after` (kept in memory only), as if this claim had
  /// not happened: an attempt it counted is taken back (written with the
  /// next batch). For a handler that never ran (its actor was away).
  /// `not_found` if `id` is not claimed.
  [[nodiscard]] expected<void>
  release(std::uint64_t id, std::chrono::milliseconds retry_after = {});

  /// The handler of claimed message `id` returned: removes the message.
  /// `done` runs once the removal is durable. `not_found` if `id` is not
  /// claimed.
  void complete(std::uint64_t id, done_callback done);
  [[nodiscard]] expected<void> complete_and_wait(std::uint64_t id);

  /// The handler of claimed message `id` failed: the message goes back to
  /// its place in the queue (visible again after `retry_after`, a delay kept
  /// in memory only: after a reopen it is visible at once), or, at
  /// max_attempts, to the dead letters as poison with `reason`.
  void fail(std::uint64_t id, std::string reason, done_callback done,
            std::chrono::milliseconds retry_after = {});
  [[nodiscard]] expected<void>
  fail_and_wait(std::uint64_t id, std::string reason,
                std::chrono::milliseconds retry_after = {});

  /// Up to `max` messages at the front of `queue` (claimed ones included),
  /// without claiming them. One pass over the whole index (for people and
  /// for a node's start, not for a message's path); a message whose record
  /// cannot be read is left out (claim() says why).
  std::vector<stored_message> peek(std::string_view queue,
                                   std::size_t max = 10) const;

  /// Every queue with messages.
  std::vector<queue_info> queues() const;

  /// The dead letters, oldest first (one whose record cannot be read is
  /// left out).
  std::vector<dead_letter> dead_letters() const;

  /// How many dead letters there are (without copying them).
  std::size_t dead_letter_count() const;

  /// Puts dead letter `id` back at its place in its queue with zero
  /// attempts and its timers restarted. Waits until durable.
  [[nodiscard]] expected<void> replay(std::uint64_t id);

  /// Removes every message of `queue` that is not claimed (claimed ones
  /// finish their handling). Waits until durable; returns how many.
  [[nodiscard]] expected<std::size_t> purge(std::string_view queue);

  /// Removes dead letter `id` for good. Waits until durable; `not_found`
  /// if there is no such dead letter.
  [[nodiscard]] expected<void> discard(std::uint64_t id);

  /// Moves every message whose timer ran out to the dead letters now (the
  /// store also does it every expiry_interval); returns how many.
  std::size_t expire_due();

  /// Rewrites the live records of all sealed segments into one and
  /// deletes them. Blocks until done. The store also compacts by itself
  /// (compact_automatically).
  [[nodiscard]] expected<void> compact();

  /// Waits until everything submitted so far is durable.
  [[nodiscard]] expected<void> flush();

  /// Ok while running; the error that stopped the store otherwise.
  [[nodiscard]] expected<void> status() const;

  const recovery_report& recovery() const noexcept;

  /// Stops the threads after the pending batch; later calls fail with
  /// `unavailable`. Blocks until the threads are gone.
  void close();

  class impl;

private:
  explicit store(std::unique_ptr<impl> self);
  std::unique_ptr<impl> self_;
};

} // namespace courier::durable

#pragma once

// A single-producer, single-consumer byte ring in shared memory, carrying
// whole messages between two processes on one host. The memory is an
// anonymous sealed memfd handed to the peer as a file descriptor (SCM_RIGHTS);
// nothing is ever named in /dev/shm. The byte layout is documented in
// transports/shm/ring-format.md and courier/shm/ring_format.hpp.
//
// Neither side trusts the other: the shared memory holds no lock, every
// position and length read from it is validated, and a peer that breaks the
// format makes the ring fail with errc::data_loss, never crash or hang.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "courier/deadline.hpp"
#include "courier/error.hpp"
#include "courier/shm/fwd.hpp"

namespace courier::shm {

/// How a producer waits for room, or a consumer for data.
enum class wait_policy : std::uint8_t {
  /// Polls and never sleeps in the kernel; after each spin budget it yields
  /// the CPU (sched_yield) so that a peer on the same core can run.
  spin,
  /// Polls for the spin budget, then sleeps on a futex until woken.
  hybrid,
  /// Sleeps on a futex at once.
  block,
};

/// Returns "spin", "hybrid" or "block".
std::string_view to_string(wait_policy policy) noexcept;

/// The largest max_message_size a ring accepts: 1 GiB.
inline constexpr std::size_t max_message_size_limit = std::size_t{1} << 30;

/// The longest spin budget a ring accepts: 1 second.
inline constexpr std::chrono::nanoseconds max_spin_budget
  = std::chrono::seconds{1};

/// Settings of one end of a ring; each end has its own.
///
/// Thread safety: a value type.
struct ring_options {
  /// The largest message this end writes or assembles, at most
  /// max_message_size_limit. Larger ones fail with resource_exhausted.
  std::size_t max_message_size = std::size_t{4} << 20;

  /// How this end waits. The ends may use different policies.
  wait_policy policy = wait_policy::hybrid;

  /// How long spin and hybrid poll before yielding (spin) or sleeping
  /// (hybrid); at most max_spin_budget.
  std::chrono::nanoseconds spin_budget = std::chrono::microseconds{50};

  /// Offer the CPU to other runnable threads (sched_yield) every few
  /// microseconds while spinning. Costs a system call per look at the clock;
  /// keeps a spinning reader from starving the threads that do the work on
  /// a machine with fewer cores than busy threads.
  bool yield_while_spinning = false;
};

/// A mapped, sealed shared-memory segment holding one ring: a 4 KiB header
/// and a data area of `capacity` bytes. One side creates it and passes fd()
/// to the peer, which attaches to it.
///
/// Thread safety: a move-only value; distinct objects may be used
/// concurrently. A segment is handed to one producer or consumer.
class segment {
public:
  static constexpr std::size_t min_capacity = 4096;
  static constexpr std::size_t max_capacity = std::size_t{1} << 30;

  /// Creates an anonymous memfd of header + `capacity` bytes, seals its size
  /// and maps it. Fails with invalid_argument unless `capacity` is a power of
  /// two within [min_capacity, max_capacity], with unavailable when the
  /// operating system refuses.
  [[nodiscard]] static expected<segment> create(std::size_t capacity);

  /// Takes ownership of `fd`, received from a peer, validates it and maps
  /// it. Fails with invalid_argument (and closes `fd`) unless it is a memfd
  /// sealed against shrinking, growing and further sealing whose size and
  /// header (magic, version, capacity) describe a ring.
  [[nodiscard]] static expected<segment> attach(int fd);

  segment(segment&& other) noexcept;
  segment& operator=(segment&& other) noexcept;
  segment(const segment&) = delete;
  segment& operator=(const segment&) = delete;

  /// Unmaps the memory and closes the file descriptor.
  ~segment();

  /// The file descriptor to send to the peer; still owned by this segment.
  int fd() const noexcept {
    return fd_;
  }

  /// Size of the data area in bytes.
  std::size_t capacity() const noexcept {
    return capacity_;
  }

  /// False for a moved-from segment.
  bool valid() const noexcept {
    return base_ != nullptr;
  }

private:
  friend class producer;
  friend class consumer;

  segment(int fd, std::byte* base, std::size_t capacity) noexcept;

  void reset() noexcept;

  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t capacity_ = 0;
};

/// The writing end of a ring. Messages larger than a quarter of the ring are
/// split into fragments; a message larger than the whole ring goes through
/// as long as the consumer keeps reading.
///
/// Thread safety: write() from one thread at a time; close() and
/// peer_closed() from any thread, also while write() waits. Destroying the
/// producer closes it.
class producer {
public:
  /// Becomes the producer of the ring in `memory`. Fails with
  /// invalid_argument for bad options, data_loss when the ring's positions
  /// are inconsistent.
  [[nodiscard]] static expected<producer> open(segment memory,
                                               ring_options options = {});

  producer(producer&&) noexcept = default;
  producer& operator=(producer&&) noexcept;
  producer(const producer&) = delete;
  producer& operator=(const producer&) = delete;
  ~producer();

  /// Writes one message, waiting (per the wait policy) while the ring is
  /// full. Fails with resource_exhausted if it exceeds max_message_size,
  /// deadline_exceeded when `until` passes first, unavailable once the
  /// consumer closed, cancelled once this producer was closed, data_loss when
  /// the consumer corrupted the ring. A message cut short by any of these is
  /// abandoned: the consumer never sees a part of it.
  [[nodiscard]] expected<void> write(std::span<const std::byte> message,
                                     deadline until);

  /// Writes the concatenation of `head` and `body` as one message, without
  /// joining them first. Otherwise as write(message, until).
  [[nodiscard]] expected<void> write(std::span<const std::byte> head,
                                     std::span<const std::byte> body,
                                     deadline until);

  /// True when a message of `size` bytes can be written now without
  /// waiting for the consumer (or when write() would fail at once); false
  /// for one larger than the ring. Same thread rules as write().
  [[nodiscard]] bool fits(std::size_t size);

  /// Tells the consumer no more messages come (it reads those already
  /// written, then gets unavailable) and wakes any waiting call on either
  /// side. Idempotent.
  void close() noexcept;

  /// Bounds every wait for room from now on, the one under way included, by
  /// `at`: past it, write() fails with deadline_exceeded (abandoning a
  /// message cut short). Callable from any thread, also while write()
  /// waits.
  void limit_waits(deadline::clock::time_point at) noexcept;

  /// True once the consumer closed its end.
  [[nodiscard]] bool peer_closed() const noexcept;

  /// Size of the ring's data area in bytes.
  std::size_t capacity() const noexcept {
    return memory_.capacity();
  }

private:
  producer(segment memory, ring_options options, std::uint64_t written,
           std::uint64_t read) noexcept;

  expected<void> write_parts(std::span<const std::byte> head,
                             std::span<const std::byte> body, deadline until);
  expected<void> wait_for_room(std::size_t bytes, deadline until);
  std::optional<expected<void>> refresh_read(std::size_t bytes);
  expected<void> write_record(std::uint32_t flags,
                              std::span<const std::byte> head,
                              std::span<const std::byte> body, deadline until);
  std::uint64_t free_bytes();
  void publish() noexcept;
  error mark_broken(std::string reason);

  segment memory_;
  ring_options options_;
  std::uint64_t written_ = 0;   // our write position, published or not
  std::uint64_t read_seen_ = 0; // the consumer's position, last validated
  bool abort_pending_ = false;  // a message was cut short mid-way
  std::string broken_;          // why the ring is unusable; empty if it is not
  // See limit_waits(); a time point's count, max for none. Boxed: the
  // producer moves.
  std::unique_ptr<std::atomic<deadline::clock::rep>> wait_limit_
    = std::make_unique<std::atomic<deadline::clock::rep>>(
      deadline::clock::time_point::max().time_since_epoch().count());
};

/// The reading end of a ring. Treats the shared memory as hostile: a
/// position or record that breaks the format fails with data_loss and
/// leaves the ring unusable.
///
/// Thread safety: read() and try_read() from one thread at a time; close()
/// and peer_closed() from any thread, also while read() waits. Destroying the
/// consumer closes it.
class consumer {
public:
  /// Becomes the consumer of the ring in `memory`. Fails with
  /// invalid_argument for bad options, data_loss when the ring's read
  /// position is malformed.
  [[nodiscard]] static expected<consumer> open(segment memory,
                                               ring_options options = {});

  consumer(consumer&&) noexcept = default;
  consumer& operator=(consumer&&) noexcept;
  consumer(const consumer&) = delete;
  consumer& operator=(const consumer&) = delete;
  ~consumer();

  /// Reads the next message into `out` (replacing its contents), waiting
  /// (per the wait policy) while the ring is empty. Fails with
  /// deadline_exceeded when `until` passes first, unavailable once the
  /// producer closed and every message was read, cancelled once this
  /// consumer was closed, resource_exhausted for a message larger than
  /// max_message_size (skipped; the next read continues after it), data_loss
  /// when the producer broke the format. A message whose fragments are still
  /// arriving when `until` passes is kept and finished by the next call.
  [[nodiscard]] expected<void> read(std::vector<std::byte>& out,
                                    deadline until);

  /// Reads the next message into `out` if a whole one is there. Returns
  /// false when there is none yet (`out` is then empty); fails as read().
  [[nodiscard]] expected<bool> try_read(std::vector<std::byte>& out);

  /// Waits, per `policy` and this end's spin budget, until the producer has
  /// published bytes not read yet or either end closed, without reading
  /// anything: the next read() or try_read() then has work. Looks only at
  /// the shared positions, so it is safe while another thread reads (one
  /// thread waits here, one at a time reads). Fails with deadline_exceeded.
  [[nodiscard]] expected<void> wait_unread(deadline until,
                                           wait_policy policy) const;

  /// Lowers (or raises again, up to the max_message_size it was opened
  /// with) the largest message the next reads accept; larger ones fail as
  /// in read(), without their bytes being kept. From the reading thread.
  void limit_messages(std::size_t max_size) noexcept;

  /// True while a message's fragments are partly read (the rest is due).
  [[nodiscard]] bool mid_message() const noexcept {
    return assembling_ || discarding_;
  }

  /// Tells the producer no more messages are read (its writes fail with
  /// unavailable) and wakes any waiting call on either side. Idempotent.
  void close() noexcept;

  /// True once the producer closed its end (messages may still be unread).
  [[nodiscard]] bool peer_closed() const noexcept;

  /// Size of the ring's data area in bytes.
  std::size_t capacity() const noexcept {
    return memory_.capacity();
  }

private:
  consumer(segment memory, ring_options options, std::uint64_t read) noexcept;

  expected<bool> read_message(std::vector<std::byte>& out, deadline until,
                              bool wait);
  expected<bool> wait_for_data(deadline until, bool wait);
  std::optional<expected<void>> refresh_written();
  void publish() noexcept;
  error mark_broken(std::string reason);

  segment memory_;
  ring_options options_;
  std::size_t message_cap_ = 0;    // max_message_size as opened
  std::uint64_t read_ = 0;         // our read position
  std::uint64_t written_seen_ = 0; // the producer's position, last validated
  bool assembling_ = false;        // inside a message, keeping its fragments
  bool discarding_ = false;        // inside a message too large to keep
  std::vector<std::byte> partial_; // fragments kept across calls
  std::string broken_;             // why the ring is unusable; empty if not
};

} // namespace courier::shm

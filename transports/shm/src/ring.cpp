// producer and consumer: the ring protocol of ring-format.md.
//
// Waking protocol (no lost wakeups, no syscall on the fast path): a side
// about to sleep stores 1 in its sleeping word, then rechecks its condition,
// then sleeps with FUTEX_WAIT only while the word is still 1. The other side
// publishes its position, then looks at the sleeping word; only if it is
// non-zero does it reset the word to 0 and issue FUTEX_WAKE. Both the
// announcement and the publication are sequentially consistent, so at least
// one side sees the other's write: either the sleeper sees the new position
// and does not sleep, or the publisher sees the announcement and wakes it
// (and because it resets the word first, a FUTEX_WAIT that starts late
// returns at once).

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "courier/shm/ring.hpp"
#include "courier/shm/ring_format.hpp"
#include "os.hpp"

namespace courier::shm {

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free,
              "cross-process positions need lock-free 64-bit atomics");
static_assert(std::atomic_ref<std::uint32_t>::is_always_lock_free,
              "cross-process futex words need lock-free 32-bit atomics");

std::string_view to_string(wait_policy policy) noexcept {
  switch (policy) {
    case wait_policy::spin:
      return "spin";
    case wait_policy::hybrid:
      return "hybrid";
    case wait_policy::block:
      return "block";
  }
  return "unknown";
}

namespace {

constexpr auto seq_cst = std::memory_order_seq_cst;

std::atomic_ref<std::uint64_t> position(std::byte* base,
                                        std::size_t offset) noexcept {
  return std::atomic_ref<std::uint64_t>{
    *reinterpret_cast<std::uint64_t*>(base + offset)};
}

std::uint32_t* word_ptr(std::byte* base, std::size_t offset) noexcept {
  return reinterpret_cast<std::uint32_t*>(base + offset);
}

std::atomic_ref<std::uint32_t> word(std::byte* base,
                                    std::size_t offset) noexcept {
  return std::atomic_ref<std::uint32_t>{*word_ptr(base, offset)};
}

/// Wakes the peer sleeping on the word at `offset`, if it said it sleeps.
/// The caller has just published with a seq_cst store.
void wake_if_sleeping(std::byte* base, std::size_t offset) noexcept {
  auto sleeping = word(base, offset);
  if (sleeping.load(seq_cst) != 0 && sleeping.exchange(0, seq_cst) != 0)
    os::wake_all(word_ptr(base, offset));
}

/// Wakes whoever sleeps on the word at `offset`, unconditionally.
void wake(std::byte* base, std::size_t offset) noexcept {
  word(base, offset).store(0, seq_cst);
  os::wake_all(word_ptr(base, offset));
}

expected<void> check_options(const ring_options& options) {
  if (options.max_message_size > max_message_size_limit)
    return error{errc::invalid_argument,
                 "max_message_size " + std::to_string(options.max_message_size)
                   + " exceeds the limit of "
                   + std::to_string(max_message_size_limit) + " bytes"};
  if (options.spin_budget < std::chrono::nanoseconds::zero()
      || options.spin_budget > max_spin_budget)
    return error{errc::invalid_argument,
                 "spin_budget must be between 0 and 1 second"};
  switch (options.policy) {
    case wait_policy::spin:
    case wait_policy::hybrid:
    case wait_policy::block:
      return {};
  }
  return error{errc::invalid_argument, "unknown wait policy"};
}

/// Waits until `check` returns an outcome, per `options.policy`, sleeping
/// (if at all) on the shared word `sleeping`. `check` returns nullopt to
/// keep waiting; its loads must be seq_cst (see the protocol above).
/// The earlier of `until` and `*limit` (a time point's count; none if null).
deadline earliest(deadline until,
                  const std::atomic<deadline::clock::rep>* limit) noexcept {
  if (limit == nullptr)
    return until;
  auto at = deadline::clock::time_point{
    deadline::clock::duration{limit->load(seq_cst)}};
  return at < until.at() ? deadline{at} : until;
}

template <class Check>
expected<void> wait_until(Check&& check, std::uint32_t* sleeping,
                          const ring_options& options, deadline until,
                          const char* timeout_message,
                          const std::atomic<deadline::clock::rep>* limit
                          = nullptr) {
  using clock = deadline::clock;
  // Reading the clock costs more than a poll: look at it every 64 polls.
  constexpr unsigned polls_per_clock_read = 64;
  if (options.policy != wait_policy::block) {
    auto budget_end = clock::now() + options.spin_budget;
    for (unsigned polls = 1;; ++polls) {
      if (auto outcome = check())
        return std::move(*outcome);
      os::cpu_relax();
      if (polls % polls_per_clock_read != 0)
        continue;
      auto now = clock::now();
      if (earliest(until, limit).expired(now))
        return error{errc::deadline_exceeded, timeout_message};
      if (options.yield_while_spinning)
        os::yield_cpu();
      if (now >= budget_end) {
        if (options.policy == wait_policy::hybrid)
          break;
        os::yield_cpu();
        budget_end = clock::now() + options.spin_budget;
      }
    }
  }
  auto announce = std::atomic_ref<std::uint32_t>{*sleeping};
  for (;;) {
    if (auto outcome = check())
      return std::move(*outcome);
    announce.store(1, seq_cst);
    // Read after announcing: a limit set later also clears the word, so
    // the wait below returns at once (see producer::limit_waits).
    auto bound = earliest(until, limit);
    if (bound.expired()) {
      announce.store(0, std::memory_order_relaxed);
      return error{errc::deadline_exceeded, timeout_message};
    }
    if (auto outcome = check()) {
      announce.store(0, std::memory_order_relaxed);
      return std::move(*outcome);
    }
    os::wait_on(sleeping, 1, bound);
    announce.store(0, std::memory_order_relaxed);
  }
}

/// The part of [from, to) of the concatenation that lies in `part`, which
/// starts at `part_offset` of the concatenation.
std::span<const std::byte> slice(std::span<const std::byte> part,
                                 std::size_t part_offset, std::size_t from,
                                 std::size_t to) noexcept {
  auto begin = std::clamp(from, part_offset, part_offset + part.size());
  auto end = std::clamp(to, part_offset, part_offset + part.size());
  return part.subspan(begin - part_offset, end - begin);
}

/// The meaningful first 8 bytes of a record header; 8 reserved bytes follow.
struct record_header {
  std::uint32_t length;
  std::uint32_t flags;
};

static_assert(sizeof(record_header) == 8);
static_assert(format::record_header_size >= sizeof(record_header));

/// Writes a record header, reserved bytes zeroed.
void store_record_header(std::byte* at, std::uint32_t length,
                         std::uint32_t flags) noexcept {
  std::byte header[format::record_header_size] = {};
  std::memcpy(header, &length, sizeof length);
  std::memcpy(header + sizeof length, &flags, sizeof flags);
  std::memcpy(at, header, sizeof header);
}

record_header load_record_header(std::byte* at) noexcept {
  // Records are 16-byte aligned: length and flags are one aligned word.
  auto word
    = std::atomic_ref<std::uint64_t>{*reinterpret_cast<std::uint64_t*>(at)}
        .load(std::memory_order_relaxed);
  record_header header;
  std::memcpy(&header, &word, sizeof header);
  return header;
}

} // namespace

// -- producer -----------------------------------------------------------------

expected<producer> producer::open(segment memory, ring_options options) {
  if (!memory.valid())
    return error{errc::invalid_argument, "the segment was moved from"};
  if (auto ok = check_options(options); !ok)
    return ok.error();
  auto* base = memory.base_;
  auto written = position(base, format::write_position_offset).load(seq_cst);
  auto read = position(base, format::read_position_offset).load(seq_cst);
  if (written % format::record_alignment != 0
      || read % format::record_alignment != 0 || read > written
      || written - read > memory.capacity())
    return error{errc::data_loss,
                 "the ring's positions are inconsistent (write "
                   + std::to_string(written) + ", read " + std::to_string(read)
                   + ")"};
  return producer{std::move(memory), options, written, read};
}

producer::producer(segment memory, ring_options options, std::uint64_t written,
                   std::uint64_t read) noexcept
  : memory_(std::move(memory)), options_(options), written_(written),
    read_seen_(read) {}

producer& producer::operator=(producer&& other) noexcept {
  if (this != &other) {
    close();
    memory_ = std::move(other.memory_);
    options_ = other.options_;
    written_ = other.written_;
    read_seen_ = other.read_seen_;
    abort_pending_ = other.abort_pending_;
    broken_ = std::move(other.broken_);
    wait_limit_ = std::move(other.wait_limit_);
  }
  return *this;
}

producer::~producer() {
  close();
}

void producer::close() noexcept {
  if (!memory_.valid())
    return;
  auto* base = memory_.base_;
  word(base, format::producer_closed_offset).store(1, seq_cst);
  wake(base, format::consumer_sleeping_offset);
  wake(base, format::producer_sleeping_offset); // our own write(), if waiting
}

void producer::limit_waits(deadline::clock::time_point at) noexcept {
  COURIER_RUNTIME_ASSERT(memory_.valid(), "producer used after move");
  wait_limit_->store(at.time_since_epoch().count(), seq_cst);
  wake(memory_.base_, format::producer_sleeping_offset); // to look again
}

bool producer::peer_closed() const noexcept {
  COURIER_RUNTIME_ASSERT(memory_.valid(), "producer used after move");
  return word(memory_.base_, format::consumer_closed_offset).load(seq_cst) != 0;
}

expected<void> producer::write(std::span<const std::byte> message,
                               deadline until) {
  return write_parts(message, {}, until);
}

expected<void> producer::write(std::span<const std::byte> head,
                               std::span<const std::byte> body,
                               deadline until) {
  return write_parts(head, body, until);
}

error producer::mark_broken(std::string reason) {
  broken_ = "the consumer corrupted the ring: " + std::move(reason);
  return error{errc::data_loss, broken_};
}

expected<void> producer::write_parts(std::span<const std::byte> head,
                                     std::span<const std::byte> body,
                                     deadline until) {
  COURIER_RUNTIME_ASSERT(memory_.valid(), "producer used after move");
  if (!broken_.empty())
    return error{errc::data_loss, broken_};
  auto* base = memory_.base_;
  if (word(base, format::producer_closed_offset).load(seq_cst) != 0)
    return error{errc::cancelled, "the producer was closed"};
  if (word(base, format::consumer_closed_offset).load(seq_cst) != 0)
    return error{errc::unavailable, "the consumer closed the ring"};
  auto total = head.size() + body.size();
  if (total > options_.max_message_size)
    return error{errc::resource_exhausted,
                 "message of " + std::to_string(total)
                   + " bytes exceeds max_message_size "
                   + std::to_string(options_.max_message_size)};
  if (abort_pending_) {
    if (auto ok = write_record(format::flag_abort, {}, {}, until); !ok)
      return ok;
    abort_pending_ = false;
  }
  auto max_fragment = format::max_fragment_size(memory_.capacity());
  std::size_t offset = 0;
  do {
    auto length = std::min(total - offset, max_fragment);
    std::uint32_t flags = 0;
    if (offset == 0)
      flags |= format::flag_first;
    if (offset + length == total)
      flags |= format::flag_last;
    auto ok
      = write_record(flags, slice(head, 0, offset, offset + length),
                     slice(body, head.size(), offset, offset + length), until);
    if (!ok) {
      if (offset == 0 || ok.code() == errc::data_loss)
        return ok;
      // The consumer holds fragments of this message: tell it to drop them
      // before the next message.
      abort_pending_ = true;
      return error{ok.code(), ok.error().message() + " (after "
                                + std::to_string(offset) + " of "
                                + std::to_string(total)
                                + " bytes; the message is abandoned)"};
    }
    offset += length;
  } while (offset < total);
  return {};
}

bool producer::fits(std::size_t size) {
  COURIER_RUNTIME_ASSERT(memory_.valid(), "producer used after move");
  if (!broken_.empty() || size > options_.max_message_size)
    return true; // write() fails at once
  // The records write_parts() makes, and the padding of one wrap.
  auto max_fragment = format::max_fragment_size(memory_.capacity());
  std::size_t need = abort_pending_ ? format::record_size(0) : 0;
  std::size_t offset = 0;
  do {
    auto length = std::min(size - offset, max_fragment);
    need += format::record_size(length);
    offset += length;
  } while (offset < size);
  need += format::record_size(max_fragment);
  if (need > memory_.capacity())
    return false;
  if (free_bytes() >= need) // by the consumer's last known position
    return true;
  return refresh_read(need).has_value(); // room, or closed or broken
}

std::uint64_t producer::free_bytes() {
  return memory_.capacity() - (written_ - read_seen_);
}

std::optional<expected<void>> producer::refresh_read(std::size_t bytes) {
  auto* base = memory_.base_;
  auto read = position(base, format::read_position_offset).load(seq_cst);
  if (read != read_seen_) {
    if (read % format::record_alignment != 0 || read < read_seen_
        || read > written_)
      return mark_broken("read position " + std::to_string(read)
                         + " is not within [" + std::to_string(read_seen_)
                         + ", " + std::to_string(written_)
                         + "] or not 16-byte aligned");
    read_seen_ = read;
  }
  if (free_bytes() >= bytes)
    return expected<void>{};
  if (word(base, format::consumer_closed_offset).load(seq_cst) != 0)
    return error{errc::unavailable, "the consumer closed the ring"};
  if (word(base, format::producer_closed_offset).load(seq_cst) != 0)
    return error{errc::cancelled, "the producer was closed"};
  return std::nullopt;
}

expected<void> producer::wait_for_room(std::size_t bytes, deadline until) {
  return wait_until([this, bytes] { return refresh_read(bytes); },
                    word_ptr(memory_.base_, format::producer_sleeping_offset),
                    options_, until, "the ring stayed full until the deadline",
                    wait_limit_.get());
}

expected<void> producer::write_record(std::uint32_t flags,
                                      std::span<const std::byte> head,
                                      std::span<const std::byte> body,
                                      deadline until) {
  auto capacity = memory_.capacity();
  auto length = head.size() + body.size();
  auto size = format::record_size(length);
  auto offset = written_ & (capacity - 1);
  auto contiguous = capacity - offset;
  // Records never cross the end of the ring; a wrap record pads up to it.
  auto padding = size > contiguous ? contiguous : 0;
  if (free_bytes() < padding + size)
    if (auto ok = wait_for_room(padding + size, until); !ok)
      return ok;
  auto* data = memory_.base_ + format::header_size;
  if (padding != 0) {
    store_record_header(
      data + offset,
      static_cast<std::uint32_t>(padding - format::record_header_size),
      format::flag_wrap);
    written_ += padding;
    offset = 0;
  }
  store_record_header(data + offset, static_cast<std::uint32_t>(length), flags);
  auto* payload = data + offset + format::record_header_size;
  if (!head.empty())
    std::memcpy(payload, head.data(), head.size());
  if (!body.empty())
    std::memcpy(payload + head.size(), body.data(), body.size());
  written_ += size;
  publish();
  return {};
}

void producer::publish() noexcept {
  auto* base = memory_.base_;
  position(base, format::write_position_offset).store(written_, seq_cst);
  wake_if_sleeping(base, format::consumer_sleeping_offset);
}

// -- consumer -----------------------------------------------------------------

expected<consumer> consumer::open(segment memory, ring_options options) {
  if (!memory.valid())
    return error{errc::invalid_argument, "the segment was moved from"};
  if (auto ok = check_options(options); !ok)
    return ok.error();
  auto read
    = position(memory.base_, format::read_position_offset).load(seq_cst);
  if (read % format::record_alignment != 0)
    return error{errc::data_loss, "the ring's read position "
                                    + std::to_string(read)
                                    + " is not 16-byte aligned"};
  return consumer{std::move(memory), options, read};
}

consumer::consumer(segment memory, ring_options options,
                   std::uint64_t read) noexcept
  : memory_(std::move(memory)), options_(options),
    message_cap_(options.max_message_size), read_(read),
    written_seen_(read) {}

void consumer::limit_messages(std::size_t max_size) noexcept {
  options_.max_message_size = std::min(max_size, message_cap_);
}

consumer& consumer::operator=(consumer&& other) noexcept {
  if (this != &other) {
    close();
    memory_ = std::move(other.memory_);
    options_ = other.options_;
    message_cap_ = other.message_cap_;
    read_ = other.read_;
    written_seen_ = other.written_seen_;
    assembling_ = other.assembling_;
    discarding_ = other.discarding_;
    partial_ = std::move(other.partial_);
    broken_ = std::move(other.broken_);
  }
  return *this;
}

consumer::~consumer() {
  close();
}

void consumer::close() noexcept {
  if (!memory_.valid())
    return;
  auto* base = memory_.base_;
  word(base, format::consumer_closed_offset).store(1, seq_cst);
  wake(base, format::producer_sleeping_offset);
  wake(base, format::consumer_sleeping_offset); // our own read(), if waiting
}

bool consumer::peer_closed() const noexcept {
  COURIER_RUNTIME_ASSERT(memory_.valid(), "consumer used after move");
  return word(memory_.base_, format::producer_closed_offset).load(seq_cst) != 0;
}

expected<void> consumer::read(std::vector<std::byte>& out, deadline until) {
  auto got = read_message(out, until, true);
  if (!got)
    return std::move(got).error();
  return {};
}

expected<void> consumer::wait_unread(deadline until,
                                     wait_policy policy) const {
  COURIER_RUNTIME_ASSERT(memory_.valid(), "consumer used after move");
  auto* base = memory_.base_;
  auto options = options_;
  options.policy = policy;
  return wait_until(
    [base]() -> std::optional<expected<void>> {
      if (position(base, format::write_position_offset).load(seq_cst)
            != position(base, format::read_position_offset).load(seq_cst)
          || word(base, format::producer_closed_offset).load(seq_cst) != 0
          || word(base, format::consumer_closed_offset).load(seq_cst) != 0)
        return expected<void>{}; // a read has something to say
      return std::nullopt;
    },
    word_ptr(base, format::consumer_sleeping_offset), options, until,
    "nothing arrived before the deadline");
}

expected<bool> consumer::try_read(std::vector<std::byte>& out) {
  // An expired deadline bounds the work even if the producer streams
  // fragments as fast as they are read.
  return read_message(out, deadline{deadline::clock::time_point{}}, false);
}

error consumer::mark_broken(std::string reason) {
  broken_ = "the producer corrupted the ring: " + std::move(reason);
  return error{errc::data_loss, broken_};
}

void consumer::publish() noexcept {
  auto* base = memory_.base_;
  position(base, format::read_position_offset).store(read_, seq_cst);
  wake_if_sleeping(base, format::producer_sleeping_offset);
}

std::optional<expected<void>> consumer::refresh_written() {
  auto* base = memory_.base_;
  auto validate = [this](std::uint64_t written) -> expected<void> {
    if (written % format::record_alignment != 0 || written < written_seen_
        || written - read_ > memory_.capacity())
      return mark_broken("write position " + std::to_string(written)
                         + " is not within [" + std::to_string(written_seen_)
                         + ", " + std::to_string(read_ + memory_.capacity())
                         + "] or not 16-byte aligned");
    written_seen_ = written;
    return {};
  };
  auto written = position(base, format::write_position_offset).load(seq_cst);
  if (written != written_seen_)
    return validate(written);
  if (word(base, format::producer_closed_offset).load(seq_cst) != 0) {
    // Everything written before the close is visible now.
    written = position(base, format::write_position_offset).load(seq_cst);
    if (written != written_seen_)
      return validate(written);
    if (assembling_ || discarding_)
      return error{errc::unavailable,
                   "the producer closed the ring in the middle of a message"};
    return error{errc::unavailable, "the producer closed the ring"};
  }
  if (word(base, format::consumer_closed_offset).load(seq_cst) != 0)
    return error{errc::cancelled, "the consumer was closed"};
  return std::nullopt;
}

expected<bool> consumer::wait_for_data(deadline until, bool wait) {
  if (!wait) {
    auto outcome = refresh_written();
    if (!outcome)
      return false;
    if (!*outcome)
      return outcome->error();
    return true;
  }
  auto ok
    = wait_until([this] { return refresh_written(); },
                 word_ptr(memory_.base_, format::consumer_sleeping_offset),
                 options_, until, "no message arrived before the deadline");
  if (!ok)
    return ok.error();
  return true;
}

expected<bool> consumer::read_message(std::vector<std::byte>& out,
                                      deadline until, bool wait) {
  COURIER_RUNTIME_ASSERT(memory_.valid(), "consumer used after move");
  if (!broken_.empty())
    return error{errc::data_loss, broken_};
  auto* base = memory_.base_;
  if (word(base, format::consumer_closed_offset).load(seq_cst) != 0)
    return error{errc::cancelled, "the consumer was closed"};
  out.clear();
  if (assembling_)
    out.swap(partial_);
  // Keeps a message's fragments for the next call.
  auto keep_partial = [&] {
    if (assembling_)
      partial_.swap(out);
    out.clear();
  };
  auto corrupt = [&](std::string reason) {
    keep_partial();
    partial_.clear();
    assembling_ = false;
    discarding_ = false;
    return mark_broken(std::move(reason) + " at position "
                       + std::to_string(read_));
  };
  const auto capacity = memory_.capacity();
  const auto max_fragment = format::max_fragment_size(capacity);
  auto* data = base + format::header_size;
  // Bounds the records handled per call when the producer keeps streaming
  // fragments of a message, so that the deadline still counts.
  constexpr unsigned records_per_clock_read = 256;
  for (unsigned records = 1;; ++records) {
    if (read_ == written_seen_) {
      auto got = wait_for_data(until, wait);
      if (!got || !*got) {
        keep_partial();
        return got;
      }
    }
    if (records % records_per_clock_read == 0 && until.expired()) {
      keep_partial();
      if (!wait)
        return false;
      return error{errc::deadline_exceeded,
                   "the message was still arriving at the deadline"};
    }
    // read_ < written_seen_ <= read_ + capacity, both multiples of 8.
    const auto available = written_seen_ - read_;
    const auto offset = read_ & (capacity - 1);
    const auto contiguous = capacity - offset;
    // Copied once: the producer may change the memory under our feet.
    // One atomic load: the producer may change the memory under our feet,
    // and a plain copy could be re-read by the compiler after validation.
    auto header = load_record_header(data + offset);
    if ((header.flags & ~format::known_flags) != 0)
      return corrupt("unknown record flags " + std::to_string(header.flags));
    if ((header.flags & format::flag_wrap) != 0) {
      if (header.flags != format::flag_wrap
          || header.length != contiguous - format::record_header_size)
        return corrupt("malformed wrap record");
      if (contiguous > available)
        return corrupt("wrap record beyond the write position");
      read_ += contiguous;
      publish();
      continue;
    }
    if ((header.flags & format::flag_abort) != 0) {
      if (header.flags != format::flag_abort || header.length != 0)
        return corrupt("malformed abort record");
      if (!assembling_ && !discarding_)
        return corrupt("abort record outside a message");
      assembling_ = false;
      discarding_ = false;
      out.clear();
      read_ += format::record_header_size;
      publish();
      continue;
    }
    if (header.length > max_fragment)
      return corrupt("record length " + std::to_string(header.length)
                     + " exceeds the largest fragment of "
                     + std::to_string(max_fragment) + " bytes");
    const auto size = format::record_size(header.length);
    if (size > contiguous)
      return corrupt("record crosses the end of the ring");
    if (size > available)
      return corrupt("record extends beyond the write position");
    const bool first = (header.flags & format::flag_first) != 0;
    const bool last = (header.flags & format::flag_last) != 0;
    if (first && (assembling_ || discarding_))
      return corrupt("a message starts inside another");
    if (!first && !assembling_ && !discarding_)
      return corrupt("a fragment without a first fragment");
    read_ += size;
    if (discarding_) {
      discarding_ = !last;
      publish();
      continue;
    }
    const auto* payload = data + offset + format::record_header_size;
    if (out.size() + header.length > options_.max_message_size) {
      auto seen = out.size() + header.length;
      assembling_ = false;
      discarding_ = !last;
      out.clear();
      publish();
      return error{errc::resource_exhausted,
                   "a message of at least " + std::to_string(seen)
                     + " bytes exceeds max_message_size "
                     + std::to_string(options_.max_message_size)
                     + "; it is skipped"};
    }
    try {
      out.insert(out.end(), payload, payload + header.length);
    } catch (const std::bad_alloc&) {
      assembling_ = false;
      discarding_ = !last;
      out.clear();
      publish();
      return error{errc::resource_exhausted,
                   "out of memory assembling a message; it is skipped"};
    }
    assembling_ = !last;
    publish();
    if (last)
      return true;
  }
}

} // namespace courier::shm

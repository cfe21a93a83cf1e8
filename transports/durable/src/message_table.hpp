#pragma once

// The store's messages in memory: one fixed-size slot per message, found
// by id. Ids increase in append order and most messages leave in about
// that order, so the slots live in a deque indexed by id - base: an append
// is a push_back, a lookup an index, and recovery builds the table without
// an allocation per message. A slot whose message has left stays empty
// until everything before it has left too (lazy deletion); the few
// messages that stay long (dead letters, a claim never finished) move to
// an ordered map when they would pin a mostly empty table.
//
// The payload is not here: a slot names where the message's record lies
// (segment, offset, size) and the store reads it when a caller wants it.

#include <cstdint>
#include <deque>
#include <map>
#include <memory>

namespace courier::durable::detail {

enum class message_stage : std::uint8_t { absent, queued, claimed, dead };

/// 80 bytes; docs/operations.md states the cost per queued message.
struct message_slot {
  /// The segment holding its message record, the record's offset in it
  /// and its size (header included).
  std::uint64_t segment = 0;
  std::uint64_t offset = 0;
  /// When it was stored, on this boot's CLOCK_BOOTTIME, and on the wall
  /// clock.
  std::int64_t stored_ns = 0;
  std::int64_t stored_wall_ns = 0;
  /// The timers (0: none).
  std::int64_t reach_ns = 0;
  std::int64_t receive_ns = 0;
  std::uint32_t record_bytes = 0;
  std::uint32_t payload_bytes = 0;
  std::uint32_t attempts = 0;
  /// Index of its queue in the store's queue table.
  std::uint32_t queue = 0;
  std::uint8_t priority = 0;
  message_stage stage = message_stage::absent;
  /// The current claim counted an attempt.
  bool counted = false;
  /// A removal, death or replay of it waits for its batch.
  bool busy = false;
  /// Recovery only: which boot stored_ns is on (an index into recovery's
  /// list of boots) until it is rebased into this one.
  std::uint16_t boot = 0;
};

/// A deque of slots in chunks of 1,024 (std::deque's are 6 slots: an
/// allocation per 6 messages in recovery's hot loop).
class slot_chunks {
public:
  static constexpr std::size_t chunk = 1024;

  std::size_t size() const noexcept {
    return size_;
  }
  bool empty() const noexcept {
    return size_ == 0;
  }
  message_slot& operator[](std::size_t i) {
    i += first_;
    return chunks_[i / chunk][i % chunk];
  }
  const message_slot& operator[](std::size_t i) const {
    i += first_;
    return chunks_[i / chunk][i % chunk];
  }
  message_slot& front() {
    return (*this)[0];
  }
  /// A blank slot at the back.
  message_slot& emplace_back() {
    auto end = first_ + size_;
    if (end == chunks_.size() * chunk) {
      if (spare_)
        chunks_.push_back(std::move(spare_));
      else
        chunks_.push_back(
          std::make_unique_for_overwrite<message_slot[]>(chunk));
    }
    ++size_;
    auto& s = (*this)[size_ - 1];
    s = message_slot{};
    return s;
  }
  void pop_front() {
    ++first_;
    --size_;
    if (first_ == chunk || size_ == 0) {
      // One chunk is kept for the next: a queue that keeps emptying does
      // not allocate.
      spare_ = std::move(chunks_.front());
      chunks_.pop_front();
      first_ = 0;
      if (size_ == 0) {
        chunks_.clear();
      }
    }
  }

private:
  std::deque<std::unique_ptr<message_slot[]>> chunks_;
  std::unique_ptr<message_slot[]> spare_;
  /// Where element 0 is in chunks_.front().
  std::size_t first_ = 0;
  std::size_t size_ = 0;
};

/// Thread safety: none; the store guards it with its mutex.
class message_table {
public:
  /// The message `id`, or null.
  message_slot* find(std::uint64_t id) {
    if (id >= base_ && id - base_ < recent_.size()) {
      auto& s = recent_[id - base_];
      if (s.stage != message_stage::absent)
        return &s;
    }
    if (old_.empty())
      return nullptr;
    auto i = old_.find(id);
    return i != old_.end() ? &i->second : nullptr;
  }

  const message_slot* find(std::uint64_t id) const {
    return const_cast<message_table*>(this)->find(id);
  }

  /// The slot of `id`: a present one as it is, else a new one with stage
  /// queued and the rest blank. References stay valid until erase(id).
  message_slot& insert(std::uint64_t id) {
    if (id == base_ + recent_.size() && !recent_.empty()
        && (old_.empty() || old_.rbegin()->first < base_)) {
      // The usual case: the next id in append order.
      ++size_;
      ++recent_live_;
      auto& s = recent_.emplace_back();
      s.stage = message_stage::queued;
      return s;
    }
    if (auto* present = find(id))
      return *present;
    ++size_;
    if (recent_.empty())
      base_ = id;
    message_slot* s;
    if (id < base_) {
      s = &old_[id];
    } else {
      while (id - base_ >= recent_.size())
        recent_.emplace_back();
      s = &recent_[id - base_];
      ++recent_live_;
    }
    *s = message_slot{};
    s->stage = message_stage::queued;
    return *s;
  }

  /// Removes message `id` if present.
  void erase(std::uint64_t id) {
    if (id >= base_ && id - base_ < recent_.size()
        && recent_[id - base_].stage != message_stage::absent) {
      recent_[id - base_] = message_slot{};
      --recent_live_;
      --size_;
      trim();
    } else if (old_.erase(id) != 0) {
      --size_;
    }
  }

  /// Messages present.
  std::size_t size() const noexcept {
    return size_;
  }

  /// Calls f(id, slot) for every message present, in id order.
  template <class F>
  void for_each(F&& f) {
    visit(*this, f);
  }

  template <class F>
  void for_each(F&& f) const {
    visit(*this, f);
  }

private:
  template <class Self, class F>
  static void visit(Self& self, F& f) {
    auto o = self.old_.begin();
    for (std::size_t i = 0; i < self.recent_.size(); ++i) {
      auto& s = self.recent_[i];
      if (s.stage == message_stage::absent)
        continue;
      auto id = self.base_ + i;
      for (; o != self.old_.end() && o->first < id; ++o)
        f(o->first, o->second);
      f(id, s);
    }
    for (; o != self.old_.end(); ++o)
      f(o->first, o->second);
  }

  void pop_empty_front() {
    while (!recent_.empty() && recent_.front().stage == message_stage::absent) {
      recent_.pop_front();
      ++base_;
    }
  }

  void trim() {
    pop_empty_front();
    // Mostly empty behind a few messages that stay: move the first half's
    // to the map (each slot moves at most once, so it stays O(1) a
    // message amortized).
    if (recent_.size() < 4096 || recent_live_ * 4 > recent_.size())
      return;
    auto half = recent_.size() / 2;
    for (std::size_t i = 0; i < half; ++i)
      if (recent_[i].stage != message_stage::absent) {
        old_.emplace(base_ + i, recent_[i]);
        --recent_live_;
      }
    for (std::size_t i = 0; i < half; ++i)
      recent_.pop_front();
    base_ += half;
    pop_empty_front();
  }

  slot_chunks recent_;
  /// The id of recent_.front().
  std::uint64_t base_ = 0;
  std::size_t recent_live_ = 0;
  std::size_t size_ = 0;
  std::map<std::uint64_t, message_slot> old_;
};

} // namespace courier::durable::detail

#pragma once

// The de-duplication window: per (producer, epoch), the highest sequence
// seen and a bitmap of the `window` sequences below it. A sequence above
// the highest is new; one within the window is new if its bit is clear;
// one older than the window is a duplicate (a producer resending that far
// back has lost its own state). Only durable appends enter it; appends
// still in a batch are tracked by the store separately.

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace courier::durable::detail {

struct producer_key {
  std::uint64_t producer = 0;
  std::uint32_t epoch = 0;
  bool operator==(const producer_key&) const = default;
};

struct producer_key_hash {
  std::size_t operator()(const producer_key& k) const noexcept {
    return std::hash<std::uint64_t>{}(k.producer * 0x9E3779B97F4A7C15ull
                                      ^ k.epoch);
  }
};

/// Thread safety: none; the store guards it with its mutex.
class dedup_window {
public:
  dedup_window(std::uint32_t window, std::size_t max_producers);

  /// True if `seq` of `key` was seen (or is older than the window).
  bool seen(const producer_key& key, std::uint64_t seq) const;

  /// Records `seq` of `key`, forgetting the least recently used key when
  /// more than max_producers are known.
  void mark(const producer_key& key, std::uint64_t seq);

  /// The whole window as a record body (docs/disk-format.md, dedup_table).
  std::string encode() const;

  /// Merges a dedup_table body into the window; false if malformed.
  bool merge(std::string_view body);

  std::size_t producers() const noexcept {
    return entries_.size();
  }

private:
  struct entry {
    std::uint64_t high = 0;
    /// Bit i set: sequence high - 1 - i was seen.
    std::vector<std::uint64_t> bits;
    std::uint64_t last_used = 0;
  };

  void shift(entry& e, std::uint64_t by) const;

  std::uint32_t window_;
  std::size_t max_producers_;
  std::uint64_t clock_ = 0;
  std::unordered_map<producer_key, entry, producer_key_hash> entries_;
};

} // namespace courier::durable::detail

#include "dedup_window.hpp"

#include <algorithm>

#include "format.hpp"

namespace courier::durable::detail {

dedup_window::dedup_window(std::uint32_t window, std::size_t max_producers)
  : window_(std::max<std::uint32_t>(64, (window + 63) / 64 * 64)),
    max_producers_(std::max<std::size_t>(1, max_producers)) {}

bool dedup_window::seen(const producer_key& key, std::uint64_t seq) const {
  auto i = entries_.find(key);
  if (i == entries_.end())
    return false;
  const auto& e = i->second;
  if (seq > e.high)
    return false;
  if (seq == e.high)
    return true;
  auto back = e.high - 1 - seq;
  if (back >= window_)
    return true;
  return (e.bits[back / 64] >> (back % 64)) & 1;
}

void dedup_window::shift(entry& e, std::uint64_t by) const {
  // Moving `high` up by `by`: old bit i becomes bit i + by, and the old
  // high itself becomes bit by - 1.
  auto words = e.bits.size();
  if (by >= window_) {
    std::fill(e.bits.begin(), e.bits.end(), 0);
  } else {
    auto word_shift = by / 64;
    auto bit_shift = by % 64;
    for (std::size_t i = words; i-- > 0;) {
      std::uint64_t v = 0;
      if (i >= word_shift) {
        v = e.bits[i - word_shift] << bit_shift;
        if (bit_shift != 0 && i >= word_shift + 1)
          v |= e.bits[i - word_shift - 1] >> (64 - bit_shift);
      }
      e.bits[i] = v;
    }
  }
  if (e.high != 0 && by - 1 < window_)
    e.bits[(by - 1) / 64] |= std::uint64_t{1} << ((by - 1) % 64);
}

void dedup_window::mark(const producer_key& key, std::uint64_t seq) {
  auto [i, fresh] = entries_.try_emplace(key);
  auto& e = i->second;
  e.last_used = ++clock_;
  if (fresh)
    e.bits.assign(window_ / 64, 0);
  if (seq > e.high) {
    shift(e, seq - e.high);
    e.high = seq;
  } else if (seq < e.high) {
    auto back = e.high - 1 - seq;
    if (back < window_)
      e.bits[back / 64] |= std::uint64_t{1} << (back % 64);
  }
  if (fresh && entries_.size() > max_producers_) {
    auto oldest = entries_.begin();
    for (auto j = entries_.begin(); j != entries_.end(); ++j)
      if (j->second.last_used < oldest->second.last_used)
        oldest = j;
    entries_.erase(oldest);
  }
}

std::string dedup_window::encode() const {
  std::string out;
  format::writer w{out};
  w.u32(window_);
  w.u64(entries_.size());
  for (const auto& [key, e] : entries_) {
    w.u64(key.producer);
    w.u32(key.epoch);
    w.u64(e.high);
    for (auto word : e.bits)
      w.u64(word);
  }
  return out;
}

bool dedup_window::merge(std::string_view body) {
  format::reader r{body};
  auto window = r.u32();
  auto count = r.u64();
  if (window % 64 != 0 || window == 0)
    return false;
  std::vector<std::uint64_t> bits(window / 64);
  for (std::uint64_t n = 0; n < count && r.ok(); ++n) {
    producer_key key;
    key.producer = r.u64();
    key.epoch = r.u32();
    auto high = r.u64();
    for (auto& word : bits)
      word = r.u64();
    if (high == 0)
      continue;
    for (std::uint32_t back = 0; back < window; ++back)
      if ((bits[back / 64] >> (back % 64)) & 1 && high - 1 >= back)
        mark(key, high - 1 - back);
    mark(key, high);
  }
  return r.done();
}

} // namespace courier::durable::detail

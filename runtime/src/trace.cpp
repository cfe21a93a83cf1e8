#include "courier/trace.hpp"

#include <atomic>
#include <chrono>
#include <random>

#include <unistd.h>

#include "tracing.hpp"

namespace courier {

namespace detail {

thread_local constinit const trace_context* scoped_trace = nullptr;

namespace {

/// Random ids: a per-thread xoshiro256** seeded from the kernel once.
/// Ids must be unique, not secret.
class id_source {
public:
  id_source() {
    std::random_device seed;
    static std::atomic<std::uint64_t> threads{0};
    std::uint64_t mix
      = threads.fetch_add(1) ^ static_cast<std::uint64_t>(::getpid())
        ^ static_cast<std::uint64_t>(
          std::chrono::steady_clock::now().time_since_epoch().count());
    for (auto& word : state_) {
      word = (std::uint64_t{seed()} << 32 | seed()) ^ splitmix(mix);
    }
  }

  std::uint64_t next() noexcept {
    const auto result = rotl(state_[1] * 5, 7) * 9;
    const auto t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  /// A non-zero id of `N` bytes.
  template <std::size_t N>
  void fill(std::array<std::uint8_t, N>& out) noexcept {
    do {
      for (std::size_t at = 0; at < N; at += 8) {
        auto word = next();
        std::memcpy(out.data() + at, &word, 8);
      }
    } while (all_zero(out));
  }

private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept {
    return (x << k) | (x >> (64 - k));
  }

  static std::uint64_t splitmix(std::uint64_t& x) noexcept {
    auto z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  template <std::size_t N>
  static bool all_zero(const std::array<std::uint8_t, N>& bytes) noexcept {
    for (auto b : bytes)
      if (b != 0)
        return false;
    return true;
  }

  std::uint64_t state_[4];
};

id_source& ids() {
  thread_local id_source source;
  return source;
}

template <std::size_t N>
std::string hex(const std::array<std::uint8_t, N>& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(2 * N, '0');
  for (std::size_t i = 0; i < N; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  return out;
}

int digit(char c) noexcept {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1; // W3C: lowercase only
}

template <std::size_t N>
bool unhex(std::string_view text, std::array<std::uint8_t, N>& out) noexcept {
  if (text.size() != 2 * N)
    return false;
  for (std::size_t i = 0; i < N; ++i) {
    int high = digit(text[2 * i]);
    int low = digit(text[2 * i + 1]);
    if (high < 0 || low < 0)
      return false;
    out[i] = static_cast<std::uint8_t>(high << 4 | low);
  }
  return true;
}

} // namespace

} // namespace detail

std::string trace_context::trace_id_hex() const {
  return valid() ? detail::hex(trace_id) : std::string{};
}

std::string trace_context::span_id_hex() const {
  return valid() ? detail::hex(span_id) : std::string{};
}

std::string trace_context::traceparent() const {
  if (!valid())
    return {};
  std::array<std::uint8_t, 1> f{flags};
  return "00-" + detail::hex(trace_id) + "-" + detail::hex(span_id) + "-"
         + detail::hex(f);
}

std::optional<trace_context> trace_context::parse(std::string_view text) {
  // version "-" trace-id "-" parent-id "-" trace-flags: 2+1+32+1+16+1+2.
  // A later version may append fields after a '-'.
  if (text.size() < 55 || text[2] != '-' || text[35] != '-' || text[52] != '-'
      || (text.size() > 55 && text[55] != '-'))
    return std::nullopt;
  std::array<std::uint8_t, 1> version{};
  std::array<std::uint8_t, 1> flags{};
  trace_context out;
  if (!detail::unhex(text.substr(0, 2), version) || version[0] == 0xff
      || (version[0] == 0 && text.size() != 55)
      || !detail::unhex(text.substr(3, 32), out.trace_id)
      || !detail::unhex(text.substr(36, 16), out.span_id)
      || !detail::unhex(text.substr(53, 2), flags))
    return std::nullopt;
  out.flags = flags[0];
  std::array<std::uint8_t, 8> zero_span{};
  if (!out.valid() || out.span_id == zero_span)
    return std::nullopt;
  return out;
}

trace_context trace_context::start() {
  trace_context out;
  detail::ids().fill(out.trace_id);
  detail::ids().fill(out.span_id);
  out.flags = 1; // sampled
  return out;
}

trace_context trace_context::child() const {
  if (!valid())
    return start();
  trace_context out = *this;
  detail::ids().fill(out.span_id);
  return out;
}

trace_scope::trace_scope(const trace_context& parent) noexcept
  : parent_(parent), previous_(detail::scoped_trace) {
  detail::scoped_trace = &parent_;
}

trace_scope::~trace_scope() {
  detail::scoped_trace = previous_;
}

} // namespace courier

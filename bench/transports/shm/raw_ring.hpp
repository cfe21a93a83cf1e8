#pragma once

// The raw twin of Courier's shared-memory ring, for benchmarks: a minimal
// SPSC byte ring with the same record layout (16-byte header, 16-byte
// alignment) and wrap padding, the same cached-position trick and the same
// wait policies, but no fragmentation, no validation, no deadlines, no close
// flags. Under the spin policy it also skips the seq_cst publish and the look
// at the peer's sleeping word, because it knows the peer never sleeps;
// Courier cannot assume that (each end picks its own policy).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <span>
#include <vector>

#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "courier/shm/ring.hpp"

namespace courier::bench::raw_ring {

using clock_type = std::chrono::steady_clock;
using courier::shm::wait_policy;

inline constexpr std::chrono::nanoseconds default_spin_budget
  = std::chrono::microseconds{50};


constexpr std::uint32_t flag_wrap = 4;

struct header {
  alignas(128) std::atomic<std::uint64_t> written{0};
  alignas(128) std::atomic<std::uint64_t> read{0};
  alignas(128) std::atomic<std::uint32_t> consumer_sleeping{0};
  alignas(128) std::atomic<std::uint32_t> producer_sleeping{0};
};

struct memory {
  header* head = nullptr;
  std::byte* data = nullptr;
  std::size_t capacity = 0;
};

/// Anonymous shared memory for one ring, inherited across fork(); head is
/// null when mmap fails.
inline memory make(std::size_t capacity) {
  void* base = ::mmap(nullptr, 4096 + capacity, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (base == MAP_FAILED)
    return {};
  return {new (base) header, static_cast<std::byte*>(base) + 4096, capacity};
}

inline void release(memory& m) {
  ::munmap(m.head, 4096 + m.capacity);
}

inline std::uint32_t* futex_word(std::atomic<std::uint32_t>& word) {
  return reinterpret_cast<std::uint32_t*>(&word);
}

/// How one end waits: as courier::shm::ring_options.
struct wait_settings {
  wait_policy policy = wait_policy::hybrid;
  std::chrono::nanoseconds spin_budget = default_spin_budget;
  bool yield_while_spinning = false;
};

template <class Ready>
void wait(Ready ready, std::atomic<std::uint32_t>& sleeping,
          const wait_settings& how) {
  auto policy = how.policy;
  auto spin_budget = how.spin_budget;
  if (policy != wait_policy::block) {
    clock_type::time_point budget_end{};
    for (unsigned polls = 1;; ++polls) {
      if (ready())
        return;
      __builtin_ia32_pause();
      if (polls % 64 != 0)
        continue;
      auto now = clock_type::now();
      if (how.yield_while_spinning)
        ::sched_yield();
      if (polls == 64)
        budget_end = now + spin_budget;
      if (now < budget_end)
        continue;
      if (policy == wait_policy::hybrid)
        break;
      ::sched_yield();
      budget_end = clock_type::now() + spin_budget;
    }
  }
  for (;;) {
    if (ready())
      return;
    sleeping.store(1);
    if (ready()) {
      sleeping.store(0, std::memory_order_relaxed);
      return;
    }
    ::syscall(SYS_futex, futex_word(sleeping), FUTEX_WAIT, 1, nullptr, nullptr,
              0);
    sleeping.store(0, std::memory_order_relaxed);
  }
}

inline void publish(std::atomic<std::uint64_t>& position, std::uint64_t value,
             std::atomic<std::uint32_t>& peer_sleeping, wait_policy policy) {
  if (policy == wait_policy::spin) {
    position.store(value, std::memory_order_release);
    return;
  }
  position.store(value);
  if (peer_sleeping.load() != 0 && peer_sleeping.exchange(0) != 0)
    ::syscall(SYS_futex, futex_word(peer_sleeping), FUTEX_WAKE, 1, nullptr,
              nullptr, 0);
}

// Courier's record layout: a 16-byte header, 16-byte alignment.
constexpr std::size_t header_size = 16;

inline std::size_t record_size(std::size_t length) {
  return header_size + ((length + 15) & ~std::size_t{15});
}

class producer {
public:
  producer(memory m, wait_settings how) : m_(m), how_(how) {
  }

  bool write(std::span<const std::byte> message) {
    auto size = record_size(message.size());
    auto offset = written_ & (m_.capacity - 1);
    auto contiguous = m_.capacity - offset;
    auto padding = size > contiguous ? contiguous : 0;
    auto need = padding + size;
    if (m_.capacity - (written_ - read_) < need) {
      wait(
        [&] {
          read_ = m_.head->read.load(std::memory_order_acquire);
          return m_.capacity - (written_ - read_) >= need;
        },
        m_.head->producer_sleeping, how_);
    }
    if (padding != 0) {
      std::uint32_t wrap[2]
        = {static_cast<std::uint32_t>(padding - header_size), flag_wrap};
      std::memcpy(m_.data + offset, wrap, 8);
      written_ += padding;
      offset = 0;
    }
    std::uint32_t record[2] = {static_cast<std::uint32_t>(message.size()), 0};
    std::memcpy(m_.data + offset, record, 8);
    std::memcpy(m_.data + offset + header_size, message.data(), message.size());
    written_ += size;
    publish(m_.head->written, written_, m_.head->consumer_sleeping,
            how_.policy);
    return true;
  }

private:
  memory m_;
  wait_settings how_;
  std::uint64_t written_ = 0;
  std::uint64_t read_ = 0;
};

class consumer {
public:
  consumer(memory m, wait_settings how) : m_(m), how_(how) {
  }

  bool read(std::vector<std::byte>& out) {
    for (;;) {
      if (read_ == written_) {
        wait(
          [&] {
            written_ = m_.head->written.load(std::memory_order_acquire);
            return written_ != read_;
          },
          m_.head->consumer_sleeping, how_);
      }
      auto offset = read_ & (m_.capacity - 1);
      std::uint32_t record[2];
      std::memcpy(record, m_.data + offset, 8);
      if (record[1] & flag_wrap) {
        read_ += m_.capacity - offset;
        continue;
      }
      if (out.size() != record[0])
        out.resize(record[0]);
      std::memcpy(out.data(), m_.data + offset + header_size, record[0]);
      read_ += record_size(record[0]);
      publish(m_.head->read, read_, m_.head->producer_sleeping, how_.policy);
      return true;
    }
  }

private:
  memory m_;
  wait_settings how_;
  std::uint64_t read_ = 0;
  std::uint64_t written_ = 0;
};


} // namespace courier::bench::raw_ring

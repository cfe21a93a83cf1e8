#pragma once

// The operating-system calls the ring needs, and nothing else. Everything
// here is implemented in os_linux.cpp; a port (CreateFileMapping and
// WaitOnAddress-style waits on Windows) replaces that one file.

#include <cstddef>
#include <cstdint>

#include "courier/deadline.hpp"
#include "courier/error.hpp"

namespace courier::shm::os {

/// Creates anonymous shared memory of `size` bytes, zero-filled, whose size
/// is sealed; returns its descriptor (close-on-exec).
expected<int> create_sealed_memory(std::size_t size);

/// Checks that `fd` is shared memory sealed against shrinking, growing and
/// further sealing, and returns its size. Fails with invalid_argument.
expected<std::size_t> sealed_memory_size(int fd);

/// Maps `size` bytes of `fd` read-write and shared, with the pages present.
expected<std::byte*> map_shared(int fd, std::size_t size);

void unmap(std::byte* base, std::size_t size) noexcept;

void close_descriptor(int fd) noexcept;

/// Sleeps while `*word == expected`, until woken, `until` passes or a
/// spurious wakeup; the caller rechecks its condition. `word` lives in
/// memory shared between processes.
void wait_on(std::uint32_t* word, std::uint32_t expected,
             deadline until) noexcept;

/// Wakes every thread, in any process, sleeping in wait_on(word, ...).
void wake_all(std::uint32_t* word) noexcept;

/// Gives the CPU to another runnable thread, if any.
void yield_cpu() noexcept;

/// A hint to the CPU that the caller is busy-waiting.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

} // namespace courier::shm::os

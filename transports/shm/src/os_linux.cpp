// Linux implementation of os.hpp: memfd, seals, mmap and futexes.

#include "os.hpp"

#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

namespace courier::shm::os {

namespace {

constexpr int required_seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

std::string describe_errno(const char* call, int err) {
  return std::string{call} + " failed: " + std::strerror(err);
}

long futex(std::uint32_t* word, int op, std::uint32_t value,
           const timespec* timeout) noexcept {
  // Not FUTEX_PRIVATE_FLAG: the word is shared with another process.
  return ::syscall(SYS_futex, word, op, value, timeout, nullptr, 0);
}

} // namespace

expected<int> create_sealed_memory(std::size_t size) {
  int fd = ::memfd_create("courier-shm-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return error{errc::unavailable, describe_errno("memfd_create", errno)};
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    auto err = errno;
    ::close(fd);
    return error{errc::unavailable, describe_errno("ftruncate", err)};
  }
  if (::fcntl(fd, F_ADD_SEALS, required_seals) != 0) {
    auto err = errno;
    ::close(fd);
    return error{errc::unavailable, describe_errno("fcntl(F_ADD_SEALS)", err)};
  }
  return fd;
}

expected<std::size_t> sealed_memory_size(int fd) {
  struct stat info {};
  if (::fstat(fd, &info) != 0)
    return error{errc::invalid_argument, describe_errno("fstat", errno)};
  if (!S_ISREG(info.st_mode))
    return error{errc::invalid_argument,
                 "the descriptor is not shared memory (not a regular file)"};
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0)
    return error{errc::invalid_argument,
                 "the descriptor is not a sealable memfd: "
                   + describe_errno("fcntl(F_GET_SEALS)", errno)};
  if ((seals & required_seals) != required_seals)
    return error{errc::invalid_argument,
                 "the memfd is not sealed against shrinking, growing and "
                 "further sealing (seals "
                   + std::to_string(seals) + ")"};
  if (info.st_size < 0)
    return error{errc::invalid_argument, "the memfd has a negative size"};
  return static_cast<std::size_t>(info.st_size);
}

expected<std::byte*> map_shared(int fd, std::size_t size) {
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_POPULATE, fd, 0);
  if (base == MAP_FAILED)
    return error{errc::unavailable, describe_errno("mmap", errno)};
  return static_cast<std::byte*>(base);
}

void unmap(std::byte* base, std::size_t size) noexcept {
  ::munmap(base, size);
}

void close_descriptor(int fd) noexcept {
  ::close(fd);
}

void wait_on(std::uint32_t* word, std::uint32_t expected,
             deadline until) noexcept {
  if (until.is_never()) {
    futex(word, FUTEX_WAIT, expected, nullptr);
    return;
  }
  auto left = until.remaining();
  if (left <= deadline::clock::duration::zero())
    return;
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
  timespec timeout{};
  timeout.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
  timeout.tv_nsec = static_cast<long>(ns % 1'000'000'000);
  // EINTR, EAGAIN (the word changed) and ETIMEDOUT all mean: recheck.
  futex(word, FUTEX_WAIT, expected, &timeout);
}

void wake_all(std::uint32_t* word) noexcept {
  futex(word, FUTEX_WAKE, INT_MAX, nullptr);
}

void yield_cpu() noexcept {
  ::sched_yield();
}

} // namespace courier::shm::os

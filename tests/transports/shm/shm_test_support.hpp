#pragma once

// Helpers for the shared-memory ring tests: fork()ed child processes that
// are always reaped, a test's own ("hostile peer's") mapping of a ring, and
// message contents that can be checked.

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "courier/shm/ring.hpp"
#include "courier/shm/ring_format.hpp"
#include "test_support.hpp"

namespace courier::shm::testing {

using namespace std::chrono_literals;
using courier::testing::eventually;
using courier::testing::patience;

/// A fork()ed child running `body`; its return value is the exit code. The
/// child never returns into Catch2 and runs no destructors (_exit). The
/// destructor kills and reaps a child still running.
class child_process {
public:
  template <class Body>
  static child_process spawn(Body&& body) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
      int code = 97;
      try {
        code = body();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: exception: %s\n", e.what());
        code = 98;
      } catch (...) {
        code = 99;
      }
      std::fflush(nullptr);
      ::_exit(code);
    }
    return child_process{pid};
  }

  child_process(child_process&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)) {}

  child_process& operator=(child_process&&) = delete;

  ~child_process() {
    kill();
  }

  /// Kills the child (SIGKILL) and reaps it.
  void kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  bool started() const {
    return pid_ > 0;
  }

  /// Waits for the child to exit and returns its exit code, 128 + signal if
  /// killed, or -1 if it is still running after `timeout` (it is then killed
  /// by the destructor).
  int wait_for_exit(std::chrono::milliseconds timeout = patience) {
    if (pid_ <= 0)
      return -1;
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd >= 0) {
      pollfd entry{pidfd, POLLIN, 0};
      int ready = ::poll(&entry, 1, static_cast<int>(timeout.count()));
      ::close(pidfd);
      if (ready <= 0)
        return -1;
    }
    int status = 0;
    if (::waitpid(pid_, &status, 0) != pid_)
      return -1;
    pid_ = -1;
    if (WIFEXITED(status))
      return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
  }

private:
  explicit child_process(pid_t pid) : pid_(pid) {}

  pid_t pid_;
};

/// The test's own mapping of a ring's memory, as a peer (honest or not)
/// sees it: raw bytes at the offsets of ring-format.md.
class raw_view {
public:
  explicit raw_view(int fd) {
    struct stat info {};
    REQUIRE(::fstat(fd, &info) == 0);
    size_ = static_cast<std::size_t>(info.st_size);
    void* base
      = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    REQUIRE(base != MAP_FAILED);
    base_ = static_cast<std::byte*>(base);
    capacity_ = size_ - format::header_size;
  }

  raw_view(const raw_view&) = delete;
  raw_view& operator=(const raw_view&) = delete;

  ~raw_view() {
    ::munmap(base_, size_);
  }

  std::atomic_ref<std::uint64_t> u64(std::size_t offset) {
    return std::atomic_ref<std::uint64_t>{
      *reinterpret_cast<std::uint64_t*>(base_ + offset)};
  }

  std::atomic_ref<std::uint32_t> u32(std::size_t offset) {
    return std::atomic_ref<std::uint32_t>{
      *reinterpret_cast<std::uint32_t*>(base_ + offset)};
  }

  std::atomic_ref<std::uint64_t> write_position() {
    return u64(format::write_position_offset);
  }

  std::atomic_ref<std::uint64_t> read_position() {
    return u64(format::read_position_offset);
  }

  bool consumer_sleeping() {
    return u32(format::consumer_sleeping_offset).load() != 0;
  }

  bool producer_sleeping() {
    return u32(format::producer_sleeping_offset).load() != 0;
  }

  /// Writes a record header at ring position `position` (mod capacity).
  void put_record(std::uint64_t position, std::uint32_t length,
                  std::uint32_t flags) {
    std::uint32_t words[2] = {length, flags};
    std::memcpy(data() + (position & (capacity_ - 1)), words, sizeof words);
  }

  std::byte* base() {
    return base_;
  }

  std::byte* data() {
    return base_ + format::header_size;
  }

  std::size_t capacity() const {
    return capacity_;
  }

private:
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

/// Bytes of message `seed`, `size` long; the same seed gives the same bytes.
inline std::vector<std::byte> make_message(std::uint64_t seed,
                                           std::size_t size) {
  std::vector<std::byte> out(size);
  auto x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<std::byte>(x);
  }
  return out;
}

inline bool is_message(std::span<const std::byte> got, std::uint64_t seed,
                       std::size_t size) {
  if (got.size() != size)
    return false;
  if (size == 0)
    return true;
  auto expected = make_message(seed, size);
  return std::memcmp(got.data(), expected.data(), size) == 0;
}

/// A second mapping of `memory`, through a duplicated descriptor: what a
/// peer process gets from attach() after receiving fd() over SCM_RIGHTS.
inline segment attach_copy(const segment& memory) {
  auto copy = segment::attach(::dup(memory.fd()));
  REQUIRE(copy);
  return std::move(*copy);
}

/// A producer and a consumer on one ring in this process, plus a raw view.
struct ring_pair {
  explicit ring_pair(std::size_t capacity, ring_options producer_options = {},
                     ring_options consumer_options = {}) {
    auto memory = segment::create(capacity);
    REQUIRE(memory);
    raw.emplace(memory->fd());
    auto c = consumer::open(attach_copy(*memory), consumer_options);
    REQUIRE(c);
    reader.emplace(std::move(*c));
    auto p = producer::open(std::move(*memory), producer_options);
    REQUIRE(p);
    writer.emplace(std::move(*p));
  }

  std::optional<raw_view> raw;
  std::optional<producer> writer;
  std::optional<consumer> reader;
};

inline ring_options with_policy(wait_policy policy) {
  ring_options options;
  options.policy = policy;
  return options;
}

/// An already expired deadline: the call succeeds only if it need not wait.
inline deadline no_wait() {
  return deadline{deadline::clock::time_point{}};
}

inline std::span<const std::byte> bytes_of(const std::vector<std::byte>& v) {
  return {v.data(), v.size()};
}

} // namespace courier::shm::testing

// segment: creating, validating and mapping a ring's shared memory. The
// operating-system calls are in os_linux.cpp.

#include <atomic>
#include <bit>
#include <cstring>
#include <string>
#include <utility>

#include "courier/shm/ring.hpp"
#include "courier/shm/ring_format.hpp"
#include "os.hpp"

namespace courier::shm {

namespace {

bool valid_capacity(std::uint64_t capacity) noexcept {
  return capacity >= segment::min_capacity && capacity <= segment::max_capacity
         && std::has_single_bit(capacity);
}

/// Reads a field of the shared header exactly once (the peer may change it
/// at any time; a plain read could be repeated by the compiler).
template <class T>
T load_field(std::byte* base, std::size_t offset) noexcept {
  return std::atomic_ref<T>{*reinterpret_cast<T*>(base + offset)}.load(
    std::memory_order_relaxed);
}

template <class T>
void store_field(std::byte* base, std::size_t offset, T value) noexcept {
  std::memcpy(base + offset, &value, sizeof value);
}

} // namespace

expected<segment> segment::create(std::size_t capacity) {
  if (!valid_capacity(capacity))
    return error{errc::invalid_argument,
                 "ring capacity " + std::to_string(capacity)
                   + " is not a power of two between "
                   + std::to_string(min_capacity) + " and "
                   + std::to_string(max_capacity) + " bytes"};
  auto size = format::header_size + capacity;
  auto fd = os::create_sealed_memory(size);
  if (!fd)
    return fd.error();
  auto base = os::map_shared(*fd, size);
  if (!base) {
    os::close_descriptor(*fd);
    return base.error();
  }
  // The memory starts zeroed: positions 0, nobody sleeping, nobody closed.
  std::memcpy(*base + format::magic_offset, format::magic.data(),
              format::magic.size());
  store_field<std::uint32_t>(*base, format::version_offset, format::version);
  store_field<std::uint32_t>(*base, format::header_size_offset,
                             static_cast<std::uint32_t>(format::header_size));
  store_field<std::uint64_t>(*base, format::capacity_offset, capacity);
  return segment{*fd, *base, capacity};
}

expected<segment> segment::attach(int fd) {
  if (fd < 0)
    return error{errc::invalid_argument,
                 "cannot attach to a ring segment: " + std::to_string(fd)
                   + " is not a file descriptor"};
  auto refuse = [fd](const std::string& why) {
    os::close_descriptor(fd);
    return error{errc::invalid_argument,
                 "cannot attach to a ring segment: " + why};
  };
  auto size = os::sealed_memory_size(fd);
  if (!size)
    return refuse(size.error().message());
  if (*size < format::header_size + min_capacity
      || *size > format::header_size + max_capacity)
    return refuse("its size is " + std::to_string(*size)
                  + " bytes, not a 4096-byte header plus a capacity between "
                  + std::to_string(min_capacity) + " and "
                  + std::to_string(max_capacity) + " bytes");
  auto base = os::map_shared(fd, *size);
  if (!base)
    return refuse(base.error().message());
  // Each field is read once: the peer may change the memory at any time, and
  // only these copies are used from here on.
  auto fail = [&](const std::string& why) {
    os::unmap(*base, *size);
    return refuse(why);
  };
  if (std::memcmp(*base + format::magic_offset, format::magic.data(),
                  format::magic.size())
      != 0)
    return fail("wrong magic (not a Courier ring)");
  auto version = load_field<std::uint32_t>(*base, format::version_offset);
  if (version != format::version)
    return fail("format version " + std::to_string(version) + ", expected "
                + std::to_string(format::version));
  auto header = load_field<std::uint32_t>(*base, format::header_size_offset);
  if (header != format::header_size)
    return fail("header size " + std::to_string(header) + ", expected "
                + std::to_string(format::header_size));
  auto capacity = load_field<std::uint64_t>(*base, format::capacity_offset);
  if (!valid_capacity(capacity))
    return fail(
      "capacity " + std::to_string(capacity) + " is not a power of two between "
      + std::to_string(min_capacity) + " and " + std::to_string(max_capacity));
  if (format::header_size + capacity != *size)
    return fail("capacity " + std::to_string(capacity)
                + " does not match the memfd's size of " + std::to_string(*size)
                + " bytes");
  return segment{fd, *base, static_cast<std::size_t>(capacity)};
}

segment::segment(int fd, std::byte* base, std::size_t capacity) noexcept
  : fd_(fd), base_(base), capacity_(capacity) {}

segment::segment(segment&& other) noexcept
  : fd_(std::exchange(other.fd_, -1)),
    base_(std::exchange(other.base_, nullptr)),
    capacity_(std::exchange(other.capacity_, 0)) {}

segment& segment::operator=(segment&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    base_ = std::exchange(other.base_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

segment::~segment() {
  reset();
}

void segment::reset() noexcept {
  if (base_ != nullptr)
    os::unmap(base_, format::header_size + capacity_);
  if (fd_ >= 0)
    os::close_descriptor(fd_);
  fd_ = -1;
  base_ = nullptr;
  capacity_ = 0;
}

} // namespace courier::shm

// segment: creation, and attach() refusing memory that is not a sealed ring.

#include <cstring>
#include <filesystem>
#include <set>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm_test_support.hpp"

using namespace courier;
using namespace courier::shm;
using namespace courier::shm::testing;

namespace {

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

/// A hand-made memfd of `size` bytes holding a valid ring header for
/// `capacity`, sealed or not; `tamper` may then change the header.
template <class Tamper>
int make_memfd(std::size_t size, std::uint64_t capacity, bool allow_sealing,
               bool seal, Tamper tamper) {
  int fd = ::memfd_create(
    "courier-shm-test", MFD_CLOEXEC | (allow_sealing ? MFD_ALLOW_SEALING : 0));
  REQUIRE(fd >= 0);
  REQUIRE(::ftruncate(fd, static_cast<off_t>(size)) == 0);
  std::vector<std::byte> header(format::header_size);
  std::memcpy(header.data() + format::magic_offset, format::magic.data(),
              format::magic.size());
  std::uint32_t version = format::version;
  std::memcpy(header.data() + format::version_offset, &version, 4);
  std::uint32_t header_size = format::header_size;
  std::memcpy(header.data() + format::header_size_offset, &header_size, 4);
  std::memcpy(header.data() + format::capacity_offset, &capacity, 8);
  tamper(header.data());
  auto n = std::min(size, header.size());
  REQUIRE(::pwrite(fd, header.data(), n, 0) == static_cast<ssize_t>(n));
  if (seal)
    REQUIRE(::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
            == 0);
  return fd;
}

int make_memfd(std::size_t size, std::uint64_t capacity, bool allow_sealing,
               bool seal) {
  return make_memfd(size, capacity, allow_sealing, seal, [](std::byte*) {});
}

void require_refused(int fd, const std::string& words) {
  auto attached = segment::attach(fd);
  REQUIRE_FALSE(attached);
  CHECK(attached.code() == errc::invalid_argument);
  CHECK_THAT(attached.error().message(), Catch::Contains(words));
  CHECK_FALSE(is_open(fd));
}

std::set<std::string> dev_shm_entries() {
  std::set<std::string> names;
  std::error_code ec;
  for (auto& entry : std::filesystem::directory_iterator{"/dev/shm", ec})
    names.insert(entry.path().filename().string());
  return names;
}

/// Descriptors of this process that refer to a ring's memfd.
int open_ring_descriptors() {
  int count = 0;
  std::error_code ec;
  for (auto& entry : std::filesystem::directory_iterator{"/proc/self/fd", ec}) {
    auto target = std::filesystem::read_symlink(entry.path(), ec);
    if (!ec
        && target.string().find("memfd:courier-shm-ring") != std::string::npos)
      ++count;
  }
  return count;
}

} // namespace

TEST_CASE("create accepts power-of-two capacities from 4 KiB to 1 GiB only",
          "[shm]") {
  for (std::size_t bad :
       {std::size_t{0}, std::size_t{1}, std::size_t{2048}, std::size_t{4095},
        std::size_t{5000}, std::size_t{3} << 20, std::size_t{1} << 31}) {
    INFO("capacity " << bad);
    auto memory = segment::create(bad);
    REQUIRE_FALSE(memory);
    CHECK(memory.code() == errc::invalid_argument);
  }
  for (std::size_t good : {std::size_t{4096}, std::size_t{1} << 16}) {
    auto memory = segment::create(good);
    REQUIRE(memory);
    CHECK(memory->capacity() == good);
    CHECK(memory->fd() >= 0);
  }
}

TEST_CASE("attach accepts a segment made by create and sees its capacity",
          "[shm]") {
  auto memory = segment::create(1 << 14);
  REQUIRE(memory);
  auto copy = segment::attach(::dup(memory->fd()));
  REQUIRE(copy);
  CHECK(copy->capacity() == memory->capacity());
}

TEST_CASE("attach refuses a memfd that was never sealed", "[shm]") {
  SECTION("created without sealing allowed") {
    require_refused(make_memfd(4096 + 4096, 4096, false, false), "sealed");
  }
  SECTION("sealable but without seals") {
    require_refused(make_memfd(4096 + 4096, 4096, true, false), "sealed");
  }
}

TEST_CASE("attach refuses a memfd too small or too large for a ring", "[shm]") {
  SECTION("smaller than the header") {
    require_refused(make_memfd(100, 4096, true, true), "size");
  }
  SECTION("a header and a data area under 4 KiB") {
    require_refused(make_memfd(4096 + 1024, 1024, true, true), "size");
  }
  SECTION("a size that does not match the capacity in the header") {
    require_refused(make_memfd(4096 + 8192, 4096, true, true),
                    "does not match");
  }
  SECTION("a capacity that is not a power of two") {
    require_refused(make_memfd(4096 + 6000, 6000, true, true), "power of two");
  }
}

TEST_CASE("attach refuses a header with the wrong magic or version", "[shm]") {
  SECTION("wrong magic") {
    require_refused(make_memfd(4096 + 4096, 4096, true, true,
                               [](std::byte* h) { h[0] = std::byte{'X'}; }),
                    "magic");
  }
  SECTION("wrong version") {
    require_refused(make_memfd(4096 + 4096, 4096, true, true,
                               [](std::byte* h) {
                                 std::uint32_t v = format::version + 1;
                                 std::memcpy(h + format::version_offset, &v, 4);
                               }),
                    "version");
  }
  SECTION("wrong header size") {
    require_refused(make_memfd(4096 + 4096, 4096, true, true,
                               [](std::byte* h) {
                                 std::uint32_t v = 64;
                                 std::memcpy(h + format::header_size_offset, &v,
                                             4);
                               }),
                    "header size");
  }
}

TEST_CASE("attach refuses descriptors that are not shared memory", "[shm]") {
  SECTION("a pipe") {
    int ends[2];
    REQUIRE(::pipe(ends) == 0);
    ::close(ends[1]);
    require_refused(ends[0], "not shared memory");
  }
  SECTION("/dev/null") {
    int fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    require_refused(fd, "not shared memory");
  }
  SECTION("a negative descriptor") {
    auto attached = segment::attach(-1);
    REQUIRE_FALSE(attached);
    CHECK(attached.code() == errc::invalid_argument);
  }
}

TEST_CASE("rings leave nothing in /dev/shm and no descriptor open", "[shm]") {
  auto before = dev_shm_entries();
  REQUIRE(open_ring_descriptors() == 0);
  {
    auto memory = segment::create(1 << 16);
    REQUIRE(memory);
    int fd = memory->fd();
    auto reader = consumer::open(std::move(*memory));
    REQUIRE(reader);
    CHECK(open_ring_descriptors() == 1);
    auto child = child_process::spawn([fd] {
      auto copy = segment::attach(::dup(fd));
      if (!copy)
        return 1;
      auto writer = producer::open(std::move(*copy));
      if (!writer)
        return 2;
      auto message = make_message(1, 1000);
      if (!writer->write(bytes_of(message), patience))
        return 3;
      writer->close();
      return 0;
    });
    std::vector<std::byte> out;
    REQUIRE(reader->read(out, patience));
    CHECK(is_message(out, 1, 1000));
    CHECK(reader->read(out, patience).code() == errc::unavailable);
    REQUIRE(child.wait_for_exit() == 0);
  }
  CHECK(open_ring_descriptors() == 0);
  CHECK(dev_shm_entries() == before);
}

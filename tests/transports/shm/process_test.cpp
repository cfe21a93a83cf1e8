// Rings between two real processes: the parent creates the memfds, the
// fork()ed child attaches to duplicates of their descriptors (what it would
// get over SCM_RIGHTS). Children report through their exit code.

#include <random>

#include "shm_test_support.hpp"

using namespace courier;
using namespace courier::shm;
using namespace courier::shm::testing;

namespace {

/// Sizes of a message stream: mostly small, some spanning many fragments.
std::vector<std::size_t> random_sizes(std::size_t count, std::size_t large,
                                      std::uint64_t seed) {
  std::mt19937_64 rng{seed};
  std::vector<std::size_t> sizes(count);
  for (auto& size : sizes)
    size = rng() % 10 == 0 ? rng() % large : rng() % 512;
  return sizes;
}

template <class End>
std::optional<End> open_in_child(int fd, ring_options options) {
  auto memory = segment::attach(::dup(fd));
  if (!memory) {
    std::fprintf(stderr, "child: %s\n", memory.error().to_string().c_str());
    return std::nullopt;
  }
  auto end = End::open(std::move(*memory), options);
  if (!end)
    return std::nullopt;
  return std::move(*end);
}

void report(const char* what, const error& err) {
  std::fprintf(stderr, "child: %s: %s\n", what, err.to_string().c_str());
}

} // namespace

TEST_CASE("100k messages of random sizes from a child process arrive in "
          "order",
          "[shm]") {
  constexpr std::size_t count = 100'000;
  auto sizes = random_sizes(count, 12'000, 1234);
  auto memory = segment::create(1 << 14);
  REQUIRE(memory);
  int fd = memory->fd();
  auto reader = consumer::open(std::move(*memory));
  REQUIRE(reader);
  auto child = child_process::spawn([&] {
    auto writer = open_in_child<producer>(fd, {});
    if (!writer)
      return 1;
    for (std::size_t i = 0; i < count; ++i) {
      auto message = make_message(i, sizes[i]);
      if (auto ok = writer->write(bytes_of(message), patience); !ok) {
        report("write", ok.error());
        return 2;
      }
    }
    writer->close();
    return 0;
  });
  std::vector<std::byte> out;
  for (std::size_t i = 0; i < count; ++i) {
    auto got = reader->read(out, patience);
    if (!got)
      FAIL("message " << i << ": " << got.error().to_string());
    if (!is_message(out, i, sizes[i]))
      FAIL("message " << i << " is not the one sent (" << out.size()
                      << " bytes, expected " << sizes[i] << ")");
  }
  CHECK(reader->read(out, patience).code() == errc::unavailable);
  CHECK(child.wait_for_exit() == 0);
}

TEST_CASE("a message three times the ring's size goes through while the "
          "consumer reads",
          "[shm]") {
  constexpr std::size_t capacity = 1 << 16;
  constexpr std::size_t big = 3 * capacity + 1000;
  auto memory = segment::create(capacity);
  REQUIRE(memory);
  int fd = memory->fd();
  auto reader = consumer::open(std::move(*memory));
  REQUIRE(reader);
  auto child = child_process::spawn([fd] {
    auto writer = open_in_child<producer>(fd, {});
    if (!writer)
      return 1;
    auto message = make_message(1, big);
    auto small = make_message(2, 10);
    if (!writer->write(bytes_of(message), patience)
        || !writer->write(bytes_of(small), patience))
      return 2;
    writer->close();
    return 0;
  });
  std::vector<std::byte> out;
  REQUIRE(reader->read(out, patience));
  CHECK(is_message(out, 1, big));
  REQUIRE(reader->read(out, patience));
  CHECK(is_message(out, 2, 10));
  CHECK(reader->read(out, patience).code() == errc::unavailable);
  CHECK(child.wait_for_exit() == 0);
}

TEST_CASE("messages cross to a child process and back under each wait "
          "policy",
          "[shm]") {
  auto [ours, theirs]
    = GENERATE(std::pair{wait_policy::spin, wait_policy::spin},
               std::pair{wait_policy::hybrid, wait_policy::hybrid},
               std::pair{wait_policy::block, wait_policy::block},
               std::pair{wait_policy::spin, wait_policy::block},
               std::pair{wait_policy::block, wait_policy::spin});
  INFO("parent " << to_string(ours) << ", child " << to_string(theirs));
  constexpr std::size_t count = 3000;
  auto sizes = random_sizes(count, 40'000, 99);
  auto there = segment::create(1 << 14);
  auto back = segment::create(1 << 14);
  REQUIRE(there);
  REQUIRE(back);
  int there_fd = there->fd();
  int back_fd = back->fd();
  auto writer = producer::open(std::move(*there), with_policy(ours));
  auto reader = consumer::open(std::move(*back), with_policy(ours));
  REQUIRE(writer);
  REQUIRE(reader);
  auto child = child_process::spawn([&, theirs = theirs] {
    auto in = open_in_child<consumer>(there_fd, with_policy(theirs));
    auto out = open_in_child<producer>(back_fd, with_policy(theirs));
    if (!in || !out)
      return 1;
    std::vector<std::byte> message;
    for (;;) {
      auto got = in->read(message, patience);
      if (got.code() == errc::unavailable)
        break;
      if (!got) {
        report("read", got.error());
        return 2;
      }
      if (auto ok = out->write(bytes_of(message), patience); !ok) {
        report("write", ok.error());
        return 3;
      }
    }
    out->close();
    return 0;
  });
  std::vector<std::byte> echo;
  for (std::size_t i = 0; i < count; ++i) {
    auto message = make_message(i, sizes[i]);
    auto sent = writer->write(bytes_of(message), patience);
    if (!sent)
      FAIL("write " << i << ": " << sent.error().to_string());
    auto got = reader->read(echo, patience);
    if (!got)
      FAIL("read " << i << ": " << got.error().to_string());
    if (echo != message)
      FAIL("echo " << i << " differs");
  }
  writer->close();
  CHECK(reader->read(echo, patience).code() == errc::unavailable);
  CHECK(child.wait_for_exit() == 0);
}

TEST_CASE("closing an end in one process wakes the peer blocked in the "
          "other",
          "[shm]") {
  auto memory = segment::create(4096);
  REQUIRE(memory);
  int fd = memory->fd();
  auto blocking = with_policy(wait_policy::block);
  SECTION("a reader blocked on an empty ring gets unavailable") {
    auto reader = consumer::open(std::move(*memory), blocking);
    REQUIRE(reader);
    auto child = child_process::spawn([fd] {
      raw_view raw{fd};
      auto writer = open_in_child<producer>(fd, {});
      if (!writer)
        return 1;
      if (!eventually([&] { return raw.consumer_sleeping(); }))
        return 2;
      writer->close();
      return 0;
    });
    std::vector<std::byte> out;
    CHECK(reader->read(out, patience).code() == errc::unavailable);
    CHECK(child.wait_for_exit() == 0);
  }
  SECTION("a writer blocked on a full ring gets unavailable") {
    auto writer = producer::open(std::move(*memory), blocking);
    REQUIRE(writer);
    auto message = make_message(1, 1000);
    for (int i = 0; i < 4; ++i)
      REQUIRE(writer->write(bytes_of(message), no_wait()));
    auto child = child_process::spawn([fd] {
      raw_view raw{fd};
      auto reader = open_in_child<consumer>(fd, {});
      if (!reader)
        return 1;
      if (!eventually([&] { return raw.producer_sleeping(); }))
        return 2;
      reader->close();
      return 0;
    });
    CHECK(writer->write(bytes_of(message), patience).code()
          == errc::unavailable);
    CHECK(child.wait_for_exit() == 0);
  }
}

TEST_CASE("a writer facing a killed reader waits only until its deadline",
          "[shm]") {
  auto memory = segment::create(4096);
  REQUIRE(memory);
  int fd = memory->fd();
  auto writer = producer::open(std::move(*memory));
  REQUIRE(writer);
  auto child = child_process::spawn([fd] {
    auto reader = open_in_child<consumer>(fd, {});
    if (!reader)
      return 1;
    std::vector<std::byte> out;
    if (!reader->read(out, patience))
      return 2;
    ::pause(); // until killed
    return 3;
  });
  // Four messages fill the ring; the fifth goes in once the child read one.
  auto message = make_message(1, 1000);
  for (int i = 0; i < 5; ++i)
    REQUIRE(writer->write(bytes_of(message), patience));
  child.kill();
  auto written = writer->write(bytes_of(message), 100ms);
  REQUIRE_FALSE(written);
  CHECK(written.code() == errc::deadline_exceeded);
}

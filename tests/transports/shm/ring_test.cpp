// producer and consumer in one process (the peer's mapping is a second
// attach() of the same memfd): messages, limits, deadlines, closing.

#include <future>
#include <random>
#include <thread>

#include "shm_test_support.hpp"

using namespace courier;
using namespace courier::shm;
using namespace courier::shm::testing;

namespace {

/// Writes messages of `size` bytes without waiting until the ring is full;
/// returns how many went in.
int fill(producer& writer, std::size_t size) {
  auto message = make_message(0, size);
  int count = 0;
  for (;;) {
    auto ok = writer.write(bytes_of(message), no_wait());
    if (!ok) {
      REQUIRE(ok.code() == errc::deadline_exceeded);
      return count;
    }
    ++count;
  }
}

} // namespace

TEST_CASE("a message written to the ring is read back unchanged", "[shm]") {
  ring_pair ring{1 << 16};
  auto size
    = GENERATE(std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{8},
               std::size_t{100}, format::max_fragment_size(1 << 16),
               format::max_fragment_size(1 << 16) + 1, std::size_t{40000});
  INFO("size " << size);
  auto message = make_message(size, size);
  REQUIRE(ring.writer->write(bytes_of(message), patience));
  std::vector<std::byte> out{std::byte{1}, std::byte{2}};
  REQUIRE(ring.reader->read(out, patience));
  CHECK(is_message(out, size, size));
}

TEST_CASE("try_read on an empty ring returns false and an empty buffer",
          "[shm]") {
  ring_pair ring{4096};
  std::vector<std::byte> out{std::byte{1}};
  auto got = ring.reader->try_read(out);
  REQUIRE(got);
  CHECK_FALSE(*got);
  CHECK(out.empty());
  auto message = make_message(3, 30);
  REQUIRE(ring.writer->write(bytes_of(message), patience));
  got = ring.reader->try_read(out);
  REQUIRE(got);
  CHECK(*got);
  CHECK(is_message(out, 3, 30));
}

TEST_CASE("a two-part write arrives as one message", "[shm]") {
  ring_pair ring{1 << 14};
  auto [head_size, body_size]
    = GENERATE(std::pair<std::size_t, std::size_t>{0, 0},
               std::pair<std::size_t, std::size_t>{16, 0},
               std::pair<std::size_t, std::size_t>{0, 16},
               std::pair<std::size_t, std::size_t>{24, 1000},
               std::pair<std::size_t, std::size_t>{1500, 3000},
               std::pair<std::size_t, std::size_t>{5000, 7},
               std::pair<std::size_t, std::size_t>{4088, 4088});
  INFO("head " << head_size << ", body " << body_size);
  auto whole = make_message(9, head_size + body_size);
  std::span<const std::byte> all{whole};
  REQUIRE(
    ring.writer->write(all.first(head_size), all.subspan(head_size), patience));
  std::vector<std::byte> out;
  REQUIRE(ring.reader->read(out, patience));
  CHECK(is_message(out, 9, head_size + body_size));
}

TEST_CASE("messages of random sizes wrap around a small ring many times in "
          "order",
          "[shm]") {
  ring_pair ring{4096};
  std::mt19937_64 rng{42};
  std::uniform_int_distribution<std::size_t> size_of{0, 2500};
  std::vector<std::byte> out;
  for (std::uint64_t i = 0; i < 5000; ++i) {
    auto size = size_of(rng);
    auto message = make_message(i, size);
    REQUIRE(ring.writer->write(bytes_of(message), no_wait()));
    REQUIRE(ring.reader->read(out, no_wait()));
    REQUIRE(is_message(out, i, size));
  }
  auto got = ring.reader->try_read(out);
  REQUIRE(got);
  CHECK_FALSE(*got);
}

TEST_CASE("a message over max_message_size is refused with "
          "resource_exhausted",
          "[shm]") {
  ring_options small;
  small.max_message_size = 1000;
  ring_pair ring{1 << 14, small};
  auto big = make_message(1, 1001);
  auto written = ring.writer->write(bytes_of(big), patience);
  REQUIRE_FALSE(written);
  CHECK(written.code() == errc::resource_exhausted);
  std::vector<std::byte> out;
  auto got = ring.reader->try_read(out);
  REQUIRE(got);
  CHECK_FALSE(*got);
  auto fits = make_message(2, 1000);
  REQUIRE(ring.writer->write(bytes_of(fits), patience));
  REQUIRE(ring.reader->read(out, patience));
  CHECK(is_message(out, 2, 1000));
}

TEST_CASE("a consumer skips a message over its max_message_size and reads "
          "the next one",
          "[shm]") {
  ring_options small;
  small.max_message_size = 2000;
  ring_pair ring{1 << 14, {}, small};
  auto size = GENERATE(std::size_t{2001}, std::size_t{9000});
  auto big = make_message(1, size);
  auto next = make_message(2, 100);
  REQUIRE(ring.writer->write(bytes_of(big), patience));
  REQUIRE(ring.writer->write(bytes_of(next), patience));
  std::vector<std::byte> out;
  auto got = ring.reader->read(out, patience);
  REQUIRE_FALSE(got);
  CHECK(got.code() == errc::resource_exhausted);
  CHECK(out.empty());
  REQUIRE(ring.reader->read(out, patience));
  CHECK(is_message(out, 2, 100));
}

TEST_CASE("options beyond the limits are refused with invalid_argument",
          "[shm]") {
  auto memory = segment::create(4096);
  REQUIRE(memory);
  ring_options options;
  SECTION("max_message_size over 1 GiB") {
    options.max_message_size = max_message_size_limit + 1;
  }
  SECTION("a negative spin budget") {
    options.spin_budget = std::chrono::nanoseconds{-1};
  }
  SECTION("a spin budget over a second") {
    options.spin_budget = std::chrono::hours{1};
  }
  auto writer = producer::open(attach_copy(*memory), options);
  REQUIRE_FALSE(writer);
  CHECK(writer.code() == errc::invalid_argument);
  auto reader = consumer::open(std::move(*memory), options);
  REQUIRE_FALSE(reader);
  CHECK(reader.code() == errc::invalid_argument);
}

TEST_CASE("a write to a full ring with no reader fails with "
          "deadline_exceeded",
          "[shm]") {
  auto policy
    = GENERATE(wait_policy::spin, wait_policy::hybrid, wait_policy::block);
  INFO("policy " << to_string(policy));
  ring_pair ring{4096, with_policy(policy)};
  REQUIRE(fill(*ring.writer, 1000) == 4);
  auto message = make_message(5, 1000);
  auto started = deadline::clock::now();
  auto written = ring.writer->write(bytes_of(message), 50ms);
  auto waited = deadline::clock::now() - started;
  REQUIRE_FALSE(written);
  CHECK(written.code() == errc::deadline_exceeded);
  CHECK(waited >= 50ms);
  CHECK(waited < patience);
}

TEST_CASE("a read from an empty ring fails with deadline_exceeded", "[shm]") {
  auto policy
    = GENERATE(wait_policy::spin, wait_policy::hybrid, wait_policy::block);
  INFO("policy " << to_string(policy));
  ring_pair ring{4096, {}, with_policy(policy)};
  std::vector<std::byte> out;
  auto started = deadline::clock::now();
  auto got = ring.reader->read(out, 50ms);
  auto waited = deadline::clock::now() - started;
  REQUIRE_FALSE(got);
  CHECK(got.code() == errc::deadline_exceeded);
  CHECK(waited >= 50ms);
  CHECK(waited < patience);
}

TEST_CASE("a writer blocked on a full ring resumes when the consumer reads",
          "[shm]") {
  auto policy = GENERATE(wait_policy::hybrid, wait_policy::block);
  INFO("policy " << to_string(policy));
  ring_pair ring{4096, with_policy(policy)};
  REQUIRE(fill(*ring.writer, 1000) == 4);
  auto last = make_message(99, 1000);
  auto blocked = std::async(std::launch::async, [&] {
    return ring.writer->write(bytes_of(last), deadline::never());
  });
  // The writer announced that it sleeps: it is blocked, not just slow.
  REQUIRE(eventually([&] { return ring.raw->producer_sleeping(); }));
  CHECK(blocked.wait_for(0s) == std::future_status::timeout);
  std::vector<std::byte> out;
  REQUIRE(ring.reader->read(out, patience));
  REQUIRE(blocked.wait_for(patience) == std::future_status::ready);
  REQUIRE(blocked.get());
  for (int i = 0; i < 3; ++i)
    REQUIRE(ring.reader->read(out, patience));
  REQUIRE(ring.reader->read(out, patience));
  CHECK(is_message(out, 99, 1000));
}

TEST_CASE("a reader blocked on an empty ring wakes for the next message",
          "[shm]") {
  ring_pair ring{4096, {}, with_policy(wait_policy::block)};
  std::vector<std::byte> out;
  auto blocked = std::async(std::launch::async, [&] {
    return ring.reader->read(out, deadline::never());
  });
  REQUIRE(eventually([&] { return ring.raw->consumer_sleeping(); }));
  auto message = make_message(4, 64);
  REQUIRE(ring.writer->write(bytes_of(message), patience));
  REQUIRE(blocked.wait_for(patience) == std::future_status::ready);
  REQUIRE(blocked.get());
  CHECK(is_message(out, 4, 64));
}

TEST_CASE("closing the producer wakes a blocked reader with unavailable",
          "[shm]") {
  auto policy
    = GENERATE(wait_policy::spin, wait_policy::hybrid, wait_policy::block);
  INFO("policy " << to_string(policy));
  ring_pair ring{4096, {}, with_policy(policy)};
  auto message = make_message(8, 200);
  REQUIRE(ring.writer->write(bytes_of(message), patience));
  std::vector<std::byte> out;
  REQUIRE(ring.reader->read(out, patience));
  auto blocked = std::async(std::launch::async, [&] {
    std::vector<std::byte> later;
    return ring.reader->read(later, deadline::never());
  });
  if (policy == wait_policy::block)
    REQUIRE(eventually([&] { return ring.raw->consumer_sleeping(); }));
  ring.writer->close();
  REQUIRE(blocked.wait_for(patience) == std::future_status::ready);
  CHECK(blocked.get().code() == errc::unavailable);
  CHECK(ring.reader->peer_closed());
}

TEST_CASE("messages written before the producer closed are still read",
          "[shm]") {
  ring_pair ring{4096};
  auto message = make_message(8, 200);
  REQUIRE(ring.writer->write(bytes_of(message), patience));
  ring.writer->close();
  std::vector<std::byte> out;
  REQUIRE(ring.reader->read(out, patience));
  CHECK(is_message(out, 8, 200));
  CHECK(ring.reader->read(out, patience).code() == errc::unavailable);
  CHECK(ring.reader->try_read(out).code() == errc::unavailable);
  CHECK(ring.writer->write(bytes_of(message), patience).code()
        == errc::cancelled);
}

TEST_CASE("closing the consumer wakes a blocked writer with unavailable",
          "[shm]") {
  auto policy
    = GENERATE(wait_policy::spin, wait_policy::hybrid, wait_policy::block);
  INFO("policy " << to_string(policy));
  ring_pair ring{4096, with_policy(policy)};
  REQUIRE(fill(*ring.writer, 1000) == 4);
  auto message = make_message(1, 1000);
  auto blocked = std::async(std::launch::async, [&] {
    return ring.writer->write(bytes_of(message), deadline::never());
  });
  if (policy == wait_policy::block)
    REQUIRE(eventually([&] { return ring.raw->producer_sleeping(); }));
  ring.reader->close();
  REQUIRE(blocked.wait_for(patience) == std::future_status::ready);
  CHECK(blocked.get().code() == errc::unavailable);
  CHECK(ring.writer->peer_closed());
  CHECK(ring.writer->write(bytes_of(message), patience).code()
        == errc::unavailable);
}

TEST_CASE("closing an end from another thread cancels its own blocked call",
          "[shm]") {
  ring_pair ring{4096, with_policy(wait_policy::block),
                 with_policy(wait_policy::block)};
  SECTION("a blocked read") {
    auto blocked = std::async(std::launch::async, [&] {
      std::vector<std::byte> out;
      return ring.reader->read(out, deadline::never());
    });
    REQUIRE(eventually([&] { return ring.raw->consumer_sleeping(); }));
    ring.reader->close();
    REQUIRE(blocked.wait_for(patience) == std::future_status::ready);
    CHECK(blocked.get().code() == errc::cancelled);
  }
  SECTION("a blocked write") {
    REQUIRE(fill(*ring.writer, 1000) == 4);
    auto blocked = std::async(std::launch::async, [&] {
      auto message = make_message(1, 1000);
      return ring.writer->write(bytes_of(message), deadline::never());
    });
    REQUIRE(eventually([&] { return ring.raw->producer_sleeping(); }));
    ring.writer->close();
    REQUIRE(blocked.wait_for(patience) == std::future_status::ready);
    CHECK(blocked.get().code() == errc::cancelled);
  }
}

TEST_CASE("destroying the producer closes the ring for the consumer", "[shm]") {
  ring_pair ring{4096};
  ring.writer.reset();
  std::vector<std::byte> out;
  CHECK(ring.reader->read(out, patience).code() == errc::unavailable);
}

TEST_CASE("a write that times out midway is abandoned and the next message "
          "arrives intact",
          "[shm]") {
  ring_pair ring{4096};
  auto big = make_message(1, 10000);
  auto written = ring.writer->write(bytes_of(big), 20ms);
  REQUIRE_FALSE(written);
  CHECK(written.code() == errc::deadline_exceeded);
  CHECK_THAT(written.error().message(), Catch::Contains("abandoned"));
  std::vector<std::byte> out;
  auto got = ring.reader->try_read(out);
  REQUIRE(got);
  CHECK_FALSE(*got);
  auto next = make_message(2, 300);
  REQUIRE(ring.writer->write(bytes_of(next), patience));
  REQUIRE(ring.reader->read(out, patience));
  CHECK(is_message(out, 2, 300));
}

TEST_CASE("a message still arriving at the read deadline is finished by the "
          "next read",
          "[shm]") {
  ring_pair ring{4096};
  auto big = make_message(7, 30000);
  auto writing = std::async(std::launch::async, [&] {
    return ring.writer->write(bytes_of(big), patience);
  });
  std::vector<std::byte> out;
  int timeouts = 0;
  auto until = deadline::clock::now() + patience;
  for (;;) {
    auto got = ring.reader->read(out, 100us);
    if (got)
      break;
    REQUIRE(got.code() == errc::deadline_exceeded);
    CHECK(out.empty());
    ++timeouts;
    REQUIRE(deadline::clock::now() < until);
  }
  CHECK(is_message(out, 7, 30000));
  REQUIRE(writing.get());
  INFO("reads that timed out midway: " << timeouts);
}

// A peer that breaks the ring format: the test writes garbage positions,
// lengths and flags straight into the shared memory. Every case must end in
// data_loss (or another error value), never a crash, a hang or an
// out-of-bounds read; ASan and UBSan builds check the last part.

#include <random>

#include "shm_test_support.hpp"

using namespace courier;
using namespace courier::shm;
using namespace courier::shm::testing;

namespace {

constexpr std::size_t capacity = 4096;
constexpr auto first = format::flag_first;
constexpr auto last = format::flag_last;
constexpr auto whole = format::flag_first | format::flag_last;
constexpr std::uint64_t align = format::record_alignment;
/// Ring bytes of a record carrying 8 payload bytes.
constexpr std::uint64_t small = format::record_size(8);

/// A consumer facing a producer simulated by the test.
struct hostile_producer {
  explicit hostile_producer(std::uint64_t start = 0) {
    auto memory = segment::create(capacity);
    REQUIRE(memory);
    raw.emplace(memory->fd());
    raw->read_position().store(start);
    raw->write_position().store(start);
    auto c = consumer::open(std::move(*memory));
    REQUIRE(c);
    reader.emplace(std::move(*c));
  }

  /// Reads and expects data_loss, then data_loss again (the ring stays
  /// unusable) from both read() and try_read().
  void expect_data_loss(const std::string& words) {
    std::vector<std::byte> out;
    auto got = reader->read(out, 1s);
    REQUIRE_FALSE(got);
    CHECK(got.code() == errc::data_loss);
    CHECK_THAT(got.error().message(), Catch::Contains(words));
    CHECK(out.empty());
    CHECK(reader->read(out, 1s).code() == errc::data_loss);
    CHECK(reader->try_read(out).code() == errc::data_loss);
  }

  std::optional<raw_view> raw;
  std::optional<consumer> reader;
};

} // namespace

TEST_CASE("a write position beyond a ring's length ahead is data_loss",
          "[shm]") {
  hostile_producer peer;
  peer.raw->put_record(0, 8, whole);
  peer.raw->write_position().store(capacity + align);
  peer.expect_data_loss("write position");
}

TEST_CASE("an unaligned write position is data_loss", "[shm]") {
  auto position = GENERATE(std::uint64_t{12}, std::uint64_t{24});
  hostile_producer peer;
  peer.raw->put_record(0, 4, whole);
  peer.raw->write_position().store(position);
  peer.expect_data_loss("write position");
}

TEST_CASE("a write position that moves backwards is data_loss", "[shm]") {
  hostile_producer peer;
  peer.raw->put_record(0, 8, whole);
  peer.raw->put_record(small, 8, whole);
  peer.raw->write_position().store(2 * small);
  std::vector<std::byte> out;
  REQUIRE(peer.reader->read(out, 1s));
  REQUIRE(peer.reader->read(out, 1s));
  peer.raw->write_position().store(small);
  peer.expect_data_loss("write position");
}

TEST_CASE("a record longer than the largest fragment is data_loss", "[shm]") {
  hostile_producer peer;
  peer.raw->put_record(0, 0xFFFFFFF0u, whole);
  peer.raw->write_position().store(capacity);
  peer.expect_data_loss("largest fragment");
}

TEST_CASE("a record extending past the write position is data_loss", "[shm]") {
  hostile_producer peer;
  peer.raw->put_record(0, 100, whole);
  peer.raw->write_position().store(64);
  peer.expect_data_loss("beyond the write position");
}

TEST_CASE("a record crossing the end of the ring is data_loss", "[shm]") {
  hostile_producer peer{capacity - align};
  peer.raw->put_record(capacity - align, 100, whole);
  peer.raw->write_position().store(capacity - align + 256);
  peer.expect_data_loss("crosses the end");
}

TEST_CASE("a record with unknown flags is data_loss", "[shm]") {
  hostile_producer peer;
  peer.raw->put_record(0, 8, whole | 0x100);
  peer.raw->write_position().store(small);
  peer.expect_data_loss("unknown record flags");
}

TEST_CASE("fragments out of order are data_loss", "[shm]") {
  hostile_producer peer;
  SECTION("a last fragment without a first") {
    peer.raw->put_record(0, 8, last);
    peer.raw->write_position().store(small);
    peer.expect_data_loss("without a first");
  }
  SECTION("a zeroed record") {
    peer.raw->write_position().store(align);
    peer.expect_data_loss("without a first");
  }
  SECTION("a first fragment inside a message") {
    peer.raw->put_record(0, 8, first);
    peer.raw->put_record(small, 8, whole);
    peer.raw->write_position().store(2 * small);
    peer.expect_data_loss("starts inside another");
  }
  SECTION("an abort outside a message") {
    peer.raw->put_record(0, 0, format::flag_abort);
    peer.raw->write_position().store(align);
    peer.expect_data_loss("abort record outside");
  }
  SECTION("an abort with a length") {
    peer.raw->put_record(0, 8, first);
    peer.raw->put_record(small, 8, format::flag_abort);
    peer.raw->write_position().store(2 * small);
    peer.expect_data_loss("malformed abort");
  }
}

TEST_CASE("a malformed wrap record is data_loss", "[shm]") {
  constexpr auto padding = static_cast<std::uint32_t>(capacity - align);
  hostile_producer peer;
  SECTION("wrong length") {
    peer.raw->put_record(0, 16, format::flag_wrap);
    peer.raw->write_position().store(capacity);
    peer.expect_data_loss("malformed wrap");
  }
  SECTION("wrap combined with other flags") {
    peer.raw->put_record(0, padding, format::flag_wrap | first);
    peer.raw->write_position().store(capacity);
    peer.expect_data_loss("malformed wrap");
  }
  SECTION("padding beyond the write position") {
    peer.raw->put_record(0, padding, format::flag_wrap);
    peer.raw->write_position().store(64);
    peer.expect_data_loss("wrap record beyond");
  }
}

TEST_CASE("a malformed read position fails the consumer's open with "
          "data_loss",
          "[shm]") {
  auto bad = GENERATE(std::uint64_t{13}, std::uint64_t{24});
  auto memory = segment::create(capacity);
  REQUIRE(memory);
  raw_view raw{memory->fd()};
  raw.read_position().store(bad);
  auto reader = consumer::open(std::move(*memory));
  REQUIRE_FALSE(reader);
  CHECK(reader.code() == errc::data_loss);
}

TEST_CASE("a consumer that corrupts its read position makes writes fail "
          "with data_loss",
          "[shm]") {
  ring_pair ring{capacity};
  auto message = make_message(1, 1000);
  for (int i = 0; i < 4; ++i)
    REQUIRE(ring.writer->write(bytes_of(message), no_wait()));
  auto bad
    = GENERATE(std::uint64_t{13}, std::uint64_t{24}, std::uint64_t{1} << 40);
  ring.raw->read_position().store(bad);
  auto written = ring.writer->write(bytes_of(message), 1s);
  REQUIRE_FALSE(written);
  CHECK(written.code() == errc::data_loss);
  CHECK_THAT(written.error().message(), Catch::Contains("read position"));
  CHECK(ring.writer->write(bytes_of(message), 1s).code() == errc::data_loss);
}

TEST_CASE("random garbage in the shared memory never crashes or hangs the "
          "consumer",
          "[shm]") {
  std::mt19937_64 rng{7};
  std::uniform_int_distribution<int> coin{0, 3};
  int outcomes[4] = {}; // message, empty, data_loss, other error
  for (int round = 0; round < 300; ++round) {
    hostile_producer peer;
    auto* data = peer.raw->data();
    for (std::size_t i = 0; i < capacity; i += 8) {
      // Mostly plausible record headers, some pure noise.
      auto length
        = static_cast<std::uint32_t>(rng() % (coin(rng) ? 64 : 1u << 31));
      auto flags = static_cast<std::uint32_t>(coin(rng) ? rng() % 16 : rng());
      peer.raw->put_record(i, length, flags);
      if (coin(rng) == 0)
        std::memset(data + i, static_cast<int>(rng() & 0xff), 8);
    }
    std::vector<std::byte> out;
    std::uint64_t written = 0;
    for (int step = 0; step < 50; ++step) {
      // Positions move forward, sometimes by nonsense amounts.
      written += coin(rng) ? align * (rng() % 64) : rng() % (2 * capacity);
      peer.raw->write_position().store(written);
      auto got
        = step % 2 ? peer.reader->try_read(out) : [&]() -> expected<bool> {
        auto r = peer.reader->read(out, 1ms);
        if (r)
          return true;
        if (r.code() == errc::deadline_exceeded)
          return false;
        return r.error();
      }();
      if (got) {
        ++outcomes[*got ? 0 : 1];
        CHECK(out.size() <= ring_options{}.max_message_size);
        continue;
      }
      if (got.code() == errc::data_loss) {
        ++outcomes[2];
        break;
      }
      ++outcomes[3];
      CHECK(got.code() == errc::resource_exhausted);
    }
  }
  INFO("messages " << outcomes[0] << ", empty " << outcomes[1] << ", data_loss "
                   << outcomes[2] << ", other " << outcomes[3]);
  CHECK(outcomes[2] > 0);
}

TEST_CASE("bit flips in valid traffic never crash or hang the consumer",
          "[shm]") {
  std::mt19937_64 rng{11};
  int outcomes[4] = {}; // message, empty, data_loss, other error
  ring_options small;
  small.max_message_size = 1500;
  for (int round = 0; round < 300; ++round) {
    ring_pair ring{capacity, {}, small};
    // Some traffic first, so that positions and records sit anywhere.
    std::vector<std::byte> out;
    for (auto n = rng() % 8; n > 0; --n) {
      auto message = make_message(n, rng() % 1400);
      REQUIRE(ring.writer->write(bytes_of(message), no_wait()));
      REQUIRE(ring.reader->read(out, no_wait()));
    }
    for (;;) {
      auto message = make_message(round, rng() % 3000);
      if (!ring.writer->write(bytes_of(message), no_wait()))
        break;
    }
    for (auto flips = 1 + rng() % 16; flips > 0; --flips) {
      auto bit = rng() % (capacity * 8);
      ring.raw->data()[bit / 8] ^= std::byte{1} << (bit % 8);
    }
    for (int step = 0; step < 20; ++step) {
      auto got = ring.reader->try_read(out);
      if (got) {
        ++outcomes[*got ? 0 : 1];
        CHECK(out.size() <= small.max_message_size);
        if (!*got)
          break;
        continue;
      }
      if (got.code() == errc::data_loss) {
        ++outcomes[2];
        break;
      }
      ++outcomes[3];
      CHECK(got.code() == errc::resource_exhausted);
    }
  }
  INFO("messages " << outcomes[0] << ", empty " << outcomes[1] << ", data_loss "
                   << outcomes[2] << ", other " << outcomes[3]);
  CHECK(outcomes[0] > 0);
  CHECK(outcomes[2] > 0);
  CHECK(outcomes[3] > 0);
}

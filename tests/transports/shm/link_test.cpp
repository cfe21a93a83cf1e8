// The shared-memory link: two transports in this process, one link between
// them, a reader that stops reading and a writer that must never wait for
// it.

#include <chrono>
#include <thread>

#include "courier/shm/shm_transport.hpp"
#include "link_pair.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// A 64 KiB ring each way, 1 MiB of queue, and one link.
struct shm_pair : link_pair {
  shm_pair() : link_pair(shm::factory(small_rings()), limits()) {
  }

  static shm::transport_options small_rings() {
    shm::transport_options options;
    options.ring_capacity = 64u << 10;
    return options;
  }

  static transport_limits limits() {
    transport_limits out;
    out.max_frame = 16u << 10;
    out.max_queued = 1u << 20;
    return out;
  }
};

std::string frame_of(std::uint32_t i) {
  std::string frame(10000 + i % 5000, static_cast<char>(i));
  std::memcpy(frame.data(), &i, sizeof i);
  return frame;
}

} // namespace

TEST_CASE("a writer to a stalled reader never waits: frames queue, the "
          "queue is bounded, and writable() says when to go on",
          "[shm]") {
  shm_pair pair;
  pair.receiver->pause_reading(); // the peer stops reading
  std::uint32_t accepted = 0;
  expected<void> written;
  bool turned = false; // writable() went false before the queue was full
  for (; accepted < 1000; ++accepted) {
    auto started = std::chrono::steady_clock::now();
    written = pair.sender->write(frame_of(accepted));
    // Never the 5 s write_timeout, nor any wait for the reader.
    REQUIRE(std::chrono::steady_clock::now() - started < 500ms);
    if (!written)
      break;
    turned = turned || !pair.sender->writable();
  }
  REQUIRE_FALSE(written);
  CHECK(written.code() == errc::resource_exhausted);
  CHECK(turned);
  // 64 KiB in the ring and 1 MiB of queue, no more.
  CHECK(accepted > 60);
  CHECK(accepted < 120);
  CHECK(pair.received->frames.size() == 0);

  pair.receiver->resume_reading();
  REQUIRE(pair.received->frames.wait_for_count(accepted));
  REQUIRE(pair.replies->writable.wait_for_count(1)); // on_writable came
  CHECK(pair.sender->writable());
  auto frames = pair.received->frames.items();
  REQUIRE(frames.size() == accepted);
  for (std::uint32_t i = 0; i < accepted; ++i)
    REQUIRE(frames[i] == frame_of(i));
  // And writes go straight to the ring again.
  REQUIRE(pair.sender->write(frame_of(accepted)));
  REQUIRE(pair.received->frames.wait_for_count(accepted + 1));
}

TEST_CASE("frames queued behind a full ring still leave when the writer "
          "closes its link",
          "[shm]") {
  shm_pair pair;
  pair.receiver->pause_reading();
  constexpr std::uint32_t count = 30; // 300+ KiB: far more than the ring
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(pair.sender->write(frame_of(i)));
  pair.sender->close();
  CHECK(pair.sender->write(frame_of(count)).code() == errc::unavailable);
  pair.receiver->resume_reading();
  REQUIRE(pair.received->frames.wait_for_count(count));
  REQUIRE(pair.received->closed.wait_for_count(1));
  auto frames = pair.received->frames.items();
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(frames[i] == frame_of(i));
}

TEST_CASE("letting go of a link whose peer never reads again takes at most "
          "its write_timeout",
          "[shm]") {
  auto options = shm_pair::small_rings();
  options.write_timeout = std::chrono::milliseconds{200};
  link_pair pair{shm::factory(options), shm_pair::limits()};
  pair.receiver->pause_reading(); // and never resumes
  for (std::uint32_t i = 0; i < 30; ++i)
    REQUIRE(pair.sender->write(frame_of(i)));
  auto started = std::chrono::steady_clock::now();
  pair.sender.reset(); // closes, waits for its writer thread
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(took >= 150ms); // it did give the queue its chance
  CHECK(took < 2s);
}

namespace {

/// The runtime's hello_frame_limit (runtime/src/remote.hpp): the most an
/// accepted link takes from its peer before the handshake is done.
constexpr std::size_t hello_sized = std::size_t{16} << 10;

/// `size` bytes that differ from frame to frame (`seed`) and along the
/// frame, so that a frame delivered cut, shifted or mixed is told apart.
std::string bytes_of(std::uint32_t seed, std::size_t size) {
  std::string out(size, '\0');
  auto x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& c : out) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = static_cast<char>(x);
  }
  return out;
}

/// Default shm options and limits (1 MiB rings, 4 MiB frames); the accepted
/// end lowered to a hello-sized frame before its start, as the runtime does.
struct hello_limited_pair : link_pair {
  hello_limited_pair()
    : link_pair(shm::factory(), {}, {}, [](courier::link& accepted) {
        accepted.limit_frames(hello_sized);
      }) {
  }
};

} // namespace

TEST_CASE("before the hello an shm link takes only a hello-sized frame: a "
          "larger one closes it with resource_exhausted, undelivered",
          "[shm]") {
  hello_limited_pair pair;
  auto at_limit = bytes_of(1, hello_sized);
  auto over = bytes_of(2, std::size_t{1} << 20); // the sender's 4 MiB allows
  REQUIRE(pair.sender->write(at_limit));
  REQUIRE(pair.sender->write(over));

  // Whichever comes first: the close, or (a link that ignored its limit)
  // the large frame.
  REQUIRE(eventually([&] {
    return pair.received->closed.size() > 0
           || pair.received->frames.size() > 1;
  }));
  // on_closed is the last event: the frame at the limit came, whole, and
  // nothing of the one over it.
  auto frames = pair.received->frames.items();
  REQUIRE(frames.size() == 1);
  CHECK(frames.front() == at_limit);
  REQUIRE(pair.received->closed.wait_for_count(1));
  auto reason = pair.received->closed.items().front();
  CHECK(reason.code() == errc::resource_exhausted);
  CHECK(reason.message().find("over the limit of 16384")
        != std::string::npos);
  // The hostile peer learns that its link is gone.
  CHECK(pair.replies->closed.wait_for_count(1));
  CHECK(pair.received->frames.size() == 1);
}

TEST_CASE("an shm link's frame limit, raised after the hello, lets a 1 MiB "
          "frame through",
          "[shm]") {
  hello_limited_pair pair;
  auto hello = bytes_of(3, hello_sized);
  REQUIRE(pair.sender->write(hello));
  REQUIRE(pair.received->frames.wait_for_count(1));
  pair.receiver->limit_frames(std::size_t{4} << 20); // the handshake is done

  auto large = bytes_of(4, std::size_t{1} << 20);
  REQUIRE(pair.sender->write(large));
  // Whichever comes first: the frame, or (a limit left low) the close.
  REQUIRE(eventually([&] {
    return pair.received->frames.size() > 1
           || pair.received->closed.size() > 0;
  }));
  CHECK(pair.received->closed.size() == 0);
  auto frames = pair.received->frames.items();
  REQUIRE(frames.size() == 2);
  CHECK(frames[0] == hello);
  CHECK(frames[1] == large);
}

// The named-pipe link itself: frames of every size, from several threads,
// through a real AF_UNIX socket, with writes that go straight to the socket
// and writes that queue behind a full one.

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <thread>

#include "courier/pipe/pipe_transport.hpp"
#include "link_pair.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// Frame `index` of writer `writer`: a header naming both, then a body whose
/// size (0 to ~300 KiB) and bytes follow from them.
std::string make_frame(std::uint32_t writer, std::uint32_t index) {
  std::uint32_t mix = (writer * 2654435761u) ^ (index * 40503u);
  std::size_t size = index % 10 == 0 ? (mix % 300000) : (mix % 512);
  std::string frame(8 + size, '\0');
  std::memcpy(frame.data(), &writer, 4);
  std::memcpy(frame.data() + 4, &index, 4);
  for (std::size_t i = 0; i < size; ++i)
    frame[8 + i] = static_cast<char>((mix >> (i % 24)) + i);
  return frame;
}

/// A pipe link in a temporary directory.
struct linked_pair : link_pair {
  explicit linked_pair(const transport_limits& limits = {},
                       const std::function<void(recorder&)>& setup = {})
    : link_pair(pipe::factory(), limits, setup) {
  }
};

} // namespace

TEST_CASE("frames of every size arrive whole and in order", "[pipe]") {
  linked_pair pair;
  constexpr std::uint32_t count = 2000;
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(pair.sender->write(make_frame(0, i)));
  REQUIRE(pair.received->frames.wait_for_count(count));
  auto frames = pair.received->frames.items();
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(frames[i] == make_frame(0, i));
}

TEST_CASE("writers on several threads each keep their order", "[pipe]") {
  linked_pair pair;
  constexpr std::uint32_t writers = 4;
  constexpr std::uint32_t per_writer = 1000;
  std::vector<std::thread> threads;
  for (std::uint32_t w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      for (std::uint32_t i = 0; i < per_writer; ++i)
        REQUIRE(pair.sender->write(make_frame(w, i)));
    });
  for (auto& t : threads)
    t.join();
  REQUIRE(pair.received->frames.wait_for_count(writers * per_writer));
  std::vector<std::uint32_t> next(writers, 0);
  for (auto& frame : pair.received->frames.items()) {
    std::uint32_t w = 0;
    std::uint32_t i = 0;
    std::memcpy(&w, frame.data(), 4);
    std::memcpy(&i, frame.data() + 4, 4);
    REQUIRE(w < writers);
    REQUIRE(i == next[w]);
    REQUIRE(frame == make_frame(w, i));
    ++next[w];
  }
}

TEST_CASE("frames of many parts, some referred to, arrive whole and the "
          "referred bytes are let go once written",
          "[pipe]") {
  linked_pair pair;
  constexpr std::uint32_t count = 100;
  std::vector<std::weak_ptr<std::string>> owners;
  std::vector<std::string> expected;
  for (std::uint32_t i = 0; i < count; ++i) {
    // 40 parts (more than one write gathers), owned and referred in turn.
    auto big = std::make_shared<std::string>(make_frame(1, i * 10));
    courier::frame out;
    std::string whole;
    for (int part = 0; part < 20; ++part) {
      auto* at = out.extend(3);
      std::memcpy(at, "abc", 3);
      whole += "abc";
      auto from = big->size() * part / 20;
      auto to = big->size() * (part + 1) / 20;
      out.alias(big->data() + from, to - from);
      whole.append(*big, from, to - from);
    }
    out.keep_alive(big);
    owners.push_back(big);
    expected.push_back(std::move(whole));
    REQUIRE(pair.sender->write(std::move(out)));
  }
  REQUIRE(pair.received->frames.wait_for_count(count));
  auto frames = pair.received->frames.items();
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(frames[i] == expected[i]);
  CHECK(eventually([&] {
    return std::all_of(owners.begin(), owners.end(),
                       [](const auto& w) { return w.expired(); });
  }));
}

TEST_CASE("a large frame is read in two strings where the receiver asks, "
          "small ones whole",
          "[pipe]") {
  // From the first bytes (writer, index) of a large frame: where its run
  // starts and how long it is: at the start, inside, or just after what
  // the link read first; up to the end or not.
  linked_pair pair{{}, [](recorder& r) {
    r.split_rule = [](std::string_view head, std::size_t size) {
      if (head.size() < 8)
        return frame_range{0, 0}; // too little read to tell which frame
      std::uint32_t index = 0;
      std::memcpy(&index, head.data() + 4, 4);
      std::size_t at
        = std::array<std::size_t, 4>{0, 8, 1000, head.size()}[index % 4];
      std::size_t length = index % 3 == 0 ? size - at : (size - at) / 2;
      return frame_range{at, index % 5 == 4 ? 0 : length};
    };
  }};
  auto frame_of = [](std::uint32_t i) {
    auto frame = make_frame(2, i);
    if (i % 2 == 0)
      frame.resize(70000 + i * 3001, static_cast<char>(i)); // large
    return frame;
  };
  constexpr std::uint32_t count = 60;
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(pair.sender->write(frame_of(i)));
  REQUIRE(pair.received->frames.wait_for_count(count));
  auto frames = pair.received->frames.items();
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(frames[i] == frame_of(i));
  // Every cut came as the rule asked for its frame, and joins back into
  // that frame. Which frames are cut depends on how much of each the link
  // had read when it asked (a run may not start beyond that): most of them.
  auto splits = pair.received->splits.items();
  CHECK(!splits.empty());
  for (auto& cut : splits) {
    auto joined = cut.rest;
    joined.insert(cut.bulk_at, cut.bulk);
    REQUIRE(joined.size() >= 8);
    std::uint32_t index = 0;
    std::memcpy(&index, joined.data() + 4, 4);
    REQUIRE(index < count);
    auto whole = frame_of(index);
    CHECK(joined == whole);
    CHECK(index % 2 == 0);
    CHECK(index % 5 != 4);
    auto length = index % 3 == 0 ? whole.size() - cut.bulk_at
                                 : (whole.size() - cut.bulk_at) / 2;
    CHECK(cut.bulk.size() == length);
  }
}

TEST_CASE("a writer that waits while the link is not writable never meets "
          "a full queue, however small the queue was configured",
          "[pipe]") {
  transport_limits limits;
  limits.max_frame = 64u << 10;
  limits.max_queued = 1; // raised by the tier to two of the largest frames
  linked_pair pair{limits};
  // Largest frames and small ones, so the queue holds odd sums.
  auto size_of = [&](std::uint32_t i) {
    return i % 3 == 0 ? limits.max_frame : std::size_t{100} + i;
  };
  constexpr std::uint32_t count = 400;
  for (std::uint32_t i = 0; i < count; ++i) {
    REQUIRE(eventually([&] { return pair.sender->writable(); }));
    REQUIRE(pair.sender->write(std::string(size_of(i), static_cast<char>(i))));
  }
  REQUIRE(pair.received->frames.wait_for_count(count));
  auto frames = pair.received->frames.items();
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(frames[i] == std::string(size_of(i), static_cast<char>(i)));
}

TEST_CASE("a close lets every queued frame out first", "[pipe]") {
  linked_pair pair;
  constexpr std::uint32_t count = 200; // far more than a socket buffer holds
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(pair.sender->write(std::string(64 << 10, static_cast<char>(i))));
  pair.sender->close();
  REQUIRE(pair.received->frames.wait_for_count(count));
  REQUIRE(pair.received->closed.wait_for_count(1));
  CHECK(pair.received->frames.items().back()
        == std::string(64 << 10, static_cast<char>(count - 1)));
  CHECK(pair.sender->write(std::string{"late"}).code() == errc::unavailable);
}

TEST_CASE("the outbound queue is bounded", "[pipe]") {
  transport_limits limits;
  limits.max_queued = 1 << 20;
  linked_pair pair{limits};
  // The receiver does not stop reading, so fill faster than it drains:
  // some write must be refused once 1 MiB waits, and none may be lost
  // before that.
  std::size_t accepted = 0;
  expected<void> written;
  for (int i = 0; i < 10000 && written; ++i)
    if ((written = pair.sender->write(std::string(256 << 10, 'x'))))
      ++accepted;
  REQUIRE_FALSE(written);
  CHECK(written.code() == errc::resource_exhausted);
  REQUIRE(pair.received->frames.wait_for_count(accepted));
}

TEST_CASE("frames read by polling threads and the I/O thread at once arrive "
          "whole and in order, large ones cut where asked",
          "[pipe]") {
  // The latency scheduler's idle threads call transport::poll(), which reads
  // the sockets beside the I/O thread: both take turns on one stream.
  linked_pair pair{{}, [](recorder& r) {
    r.split_rule = [](std::string_view head, std::size_t size) {
      if (head.size() < 8)
        return frame_range{0, 0};
      return frame_range{8, (size - 8) / 2};
    };
  }};
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> polled{0};
  std::vector<std::thread> pollers;
  for (int t = 0; t < 2; ++t)
    pollers.emplace_back([&] {
      while (!done.load())
        if (pair.server->poll())
          polled.fetch_add(1);
    });
  constexpr std::uint32_t count = 3000;
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(pair.sender->write(make_frame(3, i)));
  bool all = pair.received->frames.wait_for_count(count);
  done = true;
  for (auto& poller : pollers)
    poller.join();
  REQUIRE(all);
  auto frames = pair.received->frames.items();
  for (std::uint32_t i = 0; i < count; ++i)
    REQUIRE(frames[i] == make_frame(3, i));
  CHECK(polled.load() > 0); // the pollers did read some
  CHECK(pair.received->closed.items().empty());
}

TEST_CASE("a polled link is read by its pollers alone, and by the I/O thread "
          "again once polling stops or stalls",
          "[pipe]") {
  // While a tier is polled its links leave the I/O thread's epoll (each
  // frame would wake that thread for nothing); the watchdog or
  // polling_stopped() hands them back.
  linked_pair pair;
  std::atomic<bool> polling{false};
  std::thread::id poller_id;
  std::thread poller;
  auto start_polling = [&] {
    polling = true;
    // A slow poller, well within the watchdog's period: were the link
    // still in the reactor, the I/O thread, woken at once, would take
    // nearly every frame before it.
    poller = std::thread{[&] {
      while (polling.load()) {
        pair.server->poll();
        std::this_thread::sleep_for(std::chrono::microseconds{200});
      }
    }};
    poller_id = poller.get_id();
  };
  auto stop_polling = [&] {
    polling = false;
    poller.join();
  };
  std::uint32_t sent = 0;
  // One frame at a time, waiting for each: true once `run` frames in a
  // row were delivered by the poller (the link out of the reactor).
  auto polled_run = [&](int run) {
    int in_a_row = 0;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    while (in_a_row < run && std::chrono::steady_clock::now() < until) {
      REQUIRE(pair.sender->write(make_frame(5, sent)));
      ++sent;
      REQUIRE(pair.received->readers.wait_for_count(sent));
      in_a_row = pair.received->readers.items().back() == poller_id
                   ? in_a_row + 1
                   : 0;
    }
    return in_a_row >= run;
  };
  // One more frame: delivered, and not by the (stopped) poller.
  auto read_by_io_thread = [&] {
    auto start = std::chrono::steady_clock::now();
    REQUIRE(pair.sender->write(make_frame(5, sent)));
    ++sent;
    REQUIRE(pair.received->readers.wait_for_count(sent));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds{1});
    CHECK(pair.received->readers.items().back() != poller_id);
  };

  start_polling();
  REQUIRE(polled_run(200));
  stop_polling(); // stalls: no poll, and no polling_stopped()
  read_by_io_thread();

  start_polling();
  REQUIRE(polled_run(200));
  pair.server->polling_stopped(); // the scheduler's poller goes to sleep
  stop_polling();
  read_by_io_thread();

  auto frames = pair.received->frames.items();
  REQUIRE(frames.size() == sent);
  for (std::uint32_t i = 0; i < sent; ++i)
    REQUIRE(frames[i] == make_frame(5, i));
  CHECK(pair.received->closed.items().empty());
}

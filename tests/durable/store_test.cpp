// The durable store's behaviour on real files: order, priorities,
// recovery, attempts and dead letters, replay, de-duplication, quotas,
// compaction, and the CRC32C it frames records with.

#include <atomic>
#include <set>
#include <thread>

#include "courier/durable/crc32c.hpp"
#include "dedup_window.hpp"
#include "durable_support.hpp"
#include "fault_file_system.hpp"

using namespace courier::durable;
using namespace courier::durable::testing;
using courier::errc;

TEST_CASE("crc32c matches the published check values", "[durable]") {
  REQUIRE(check_crc32c_support());
  CHECK(crc32c("123456789", 9) == 0xE3069283u);
  std::string zeros(32, '\0');
  CHECK(crc32c(zeros.data(), zeros.size()) == 0x8A9136AAu);
  // Extending in pieces equals one pass.
  std::string text = "The quick brown fox jumps over the lazy dog";
  auto whole = crc32c(text.data(), text.size());
  auto part = crc32c(text.data(), 10);
  CHECK(crc32c(text.data() + 10, text.size() - 10, part) == whole);
}

TEST_CASE("messages come back in order after a reopen", "[durable]") {
  temp_dir dir;
  {
    auto s = open_or_fail(small_options(dir.path()));
    auto ids = append_n(*s, "orders", 300);
    CHECK(std::is_sorted(ids.begin(), ids.end()));
    CHECK(segment_files(dir.path()).size() > 3);
  }
  auto s = open_or_fail(small_options(dir.path()));
  CHECK(s->recovery().messages == 300);
  CHECK(s->recovery().truncated_bytes == 0);
  auto got = drain(*s, "orders");
  REQUIRE(got.size() == 300);
  for (int i = 0; i < 300; ++i)
    CHECK(got[i] == "m" + std::to_string(i));
  s.reset();
  // Removals are durable too.
  auto again = open_or_fail(small_options(dir.path()));
  CHECK(again->recovery().messages == 0);
  CHECK(again->queues().empty());
}

TEST_CASE("a store directory is used by one store at a time", "[durable]") {
  temp_dir dir;
  auto first = open_or_fail(small_options(dir.path()));
  auto second = store::open(small_options(dir.path()));
  REQUIRE_FALSE(second);
  CHECK(second.code() == errc::failed_precondition);
  CHECK_THAT(second.error().message(), Catch::Contains("open elsewhere"));
  first.reset();
  CHECK(store::open(small_options(dir.path())));
}

TEST_CASE("a queue hands out higher priorities first, equal ones in order",
          "[durable]") {
  temp_dir dir;
  auto s = open_or_fail(small_options(dir.path()));
  int pri[] = {1, 5, 1, 7, 5, 0};
  for (int i = 0; i < 6; ++i) {
    message_options o;
    o.priority = static_cast<std::uint8_t>(pri[i]);
    REQUIRE(s->append_and_wait("q", std::to_string(i), o));
  }
  auto got = drain(*s, "q");
  CHECK(got == std::vector<std::string>{"3", "1", "4", "0", "2", "5"});
}

TEST_CASE("bad input is refused with invalid_argument", "[durable]") {
  temp_dir dir;
  auto s = open_or_fail(small_options(dir.path()));
  message_options bad_priority;
  bad_priority.priority = 8;
  CHECK(s->append_and_wait("q", "x", bad_priority).code()
        == errc::invalid_argument);
  CHECK(s->append_and_wait("", "x").code() == errc::invalid_argument);
  CHECK(s->append_and_wait(std::string(256, 'q'), "x").code()
        == errc::invalid_argument);
  CHECK(s->append_and_wait("q", std::string((4u << 20) + 1, 'x')).code()
        == errc::invalid_argument);
  CHECK(s->complete_and_wait(12345).code() == errc::not_found);
  CHECK(s->replay(12345).code() == errc::not_found);
  store_options none;
  CHECK(store::open(none).code() == errc::invalid_argument);
}

TEST_CASE("claimed messages are invisible to other claims and return after "
          "a reopen",
          "[durable]") {
  temp_dir dir;
  {
    auto s = open_or_fail(small_options(dir.path()));
    append_n(*s, "q", 3);
    auto first = s->claim("q", 2);
    REQUIRE(first);
    REQUIRE(first->size() == 2);
    CHECK(first->at(0).attempts == 1);
    auto rest = s->claim("q", 5);
    REQUIRE(rest->size() == 1);
    CHECK(rest->at(0).payload == "m2");
    CHECK(s->claim("q", 5)->empty());
    REQUIRE(s->complete_and_wait(first->at(0).id));
    REQUIRE(s->flush());
    auto info = s->queues();
    REQUIRE(info.size() == 1);
    CHECK(info[0].depth == 2);
    CHECK(info[0].in_flight == 2);
  }
  // The process "died" in the handlers of m1 and m2: both come back, with
  // their attempt counted.
  auto s = open_or_fail(small_options(dir.path()));
  auto again = s->claim("q", 5);
  REQUIRE(again->size() == 2);
  CHECK(again->at(0).payload == "m1");
  CHECK(again->at(0).attempts == 2);
}

TEST_CASE("a poison message goes to the dead letters after exactly N "
          "attempts and the ones behind it flow",
          "[durable]") {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.max_attempts = 3;
  auto s = open_or_fail(o);
  append_n(*s, "q", 2);
  int handled = 0;
  for (;;) {
    auto got = s->claim("q", 1);
    REQUIRE(got);
    REQUIRE(got->size() == 1);
    if (got->at(0).payload != "m0") {
      CHECK(got->at(0).payload == "m1");
      REQUIRE(s->complete_and_wait(got->at(0).id));
      break;
    }
    ++handled;
    REQUIRE(s->fail_and_wait(got->at(0).id, "bad order"));
  }
  CHECK(handled == 3);
  auto dead = s->dead_letters();
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].reason == dead_reason::poison);
  CHECK(dead[0].message.payload == "m0");
  CHECK(dead[0].message.attempts == 3);
  CHECK_THAT(dead[0].detail,
             Catch::Contains("failed 3 times") && Catch::Contains("bad order"));
}

TEST_CASE("a message whose handler kills the process N times is poison",
          "[durable]") {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.max_attempts = 2;
  for (int run = 0; run < 2; ++run) {
    auto s = open_or_fail(o);
    if (run == 0)
      append_n(*s, "q", 1);
    auto got = s->claim("q", 1);
    REQUIRE(got->size() == 1);
    REQUIRE(s->flush()); // the attempt is on disk; then the "crash"
  }
  auto s = open_or_fail(o);
  CHECK(s->claim("q", 1)->empty());
  REQUIRE(s->flush());
  auto dead = s->dead_letters();
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].reason == dead_reason::poison);
  CHECK_THAT(dead[0].detail, Catch::Contains("never finished"));
}

TEST_CASE("dead letters are durable, queryable and replayable", "[durable]") {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.max_attempts = 1;
  std::uint64_t id = 0;
  {
    auto s = open_or_fail(o);
    append_n(*s, "q", 1);
    auto got = s->claim("q", 1);
    id = got->at(0).id;
    REQUIRE(s->fail_and_wait(id, "boom"));
  }
  auto s = open_or_fail(o);
  CHECK(s->recovery().dead_letters == 1);
  auto dead = s->dead_letters();
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].message.id == id);
  CHECK(dead[0].died_wall_ns > 0);
  CHECK(s->claim("q", 1)->empty());
  REQUIRE(s->replay(id));
  CHECK(s->dead_letters().empty());
  auto got = s->claim("q", 1);
  REQUIRE(got->size() == 1);
  CHECK(got->at(0).attempts == 1); // a fresh count after the replay
  REQUIRE(s->complete_and_wait(id));
  s.reset();
  auto after = open_or_fail(o);
  CHECK(after->dead_letters().empty());
  CHECK(after->queues().empty());
}

TEST_CASE("the de-duplication window survives a restart and a compaction",
          "[durable]") {
  temp_dir dir;
  auto send = [](store& s, std::uint32_t epoch, std::uint64_t seq) {
    message_options o;
    o.producer_id = 42;
    o.producer_epoch = epoch;
    o.sequence = seq;
    auto r = s.append_and_wait("q", "s" + std::to_string(seq), o);
    REQUIRE(r);
    return r->duplicate;
  };
  {
    auto s = open_or_fail(small_options(dir.path()));
    for (std::uint64_t seq = 1; seq <= 50; ++seq)
      CHECK_FALSE(send(*s, 1, seq));
    CHECK(send(*s, 1, 50));
    // Handled and removed: their records become garbage.
    CHECK(drain(*s, "q").size() == 50);
  }
  {
    auto s = open_or_fail(small_options(dir.path()));
    CHECK(send(*s, 1, 7));
    for (std::uint64_t seq = 40; seq <= 60; ++seq)
      CHECK(send(*s, 1, seq) == (seq <= 50));
    CHECK_FALSE(send(*s, 2, 7)); // a new epoch starts afresh
    CHECK(drain(*s, "q").size() == 11);
    REQUIRE(s->compact());
  }
  CHECK(segment_files(dir.path()).size() <= 2);
  auto s = open_or_fail(small_options(dir.path()));
  CHECK(send(*s, 1, 55));
  CHECK(send(*s, 2, 7));
  CHECK_FALSE(send(*s, 1, 61));
}

TEST_CASE("the de-duplication window remembers gaps below the highest "
          "sequence",
          "[durable]") {
  detail::dedup_window w{128, 2};
  detail::producer_key a{1, 1};
  w.mark(a, 10);
  w.mark(a, 12);
  CHECK(w.seen(a, 10));
  CHECK(w.seen(a, 12));
  CHECK_FALSE(w.seen(a, 11));
  CHECK_FALSE(w.seen(a, 13));
  w.mark(a, 11);
  CHECK(w.seen(a, 11));
  w.mark(a, 300); // 10..12 fall out of the window: older is duplicate
  CHECK(w.seen(a, 100));
  CHECK_FALSE(w.seen(a, 250));
  detail::dedup_window copy{128, 2};
  REQUIRE(copy.merge(w.encode()));
  CHECK(copy.seen(a, 300));
  CHECK_FALSE(copy.seen(a, 250));
  // Beyond max_producers the least recently used pair is forgotten.
  w.mark({2, 1}, 1);
  w.mark({3, 1}, 1);
  CHECK(w.producers() == 2);
  CHECK_FALSE(w.seen(a, 300));
}

TEST_CASE("quotas refuse at once with resource_exhausted and free up",
          "[durable]") {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.queue_quota = {3, 1000};
  o.store_quota = {5, 100'000};
  auto s = open_or_fail(o);
  append_n(*s, "a", 3);
  auto over = s->append_and_wait("a", "x");
  CHECK(over.code() == errc::resource_exhausted);
  CHECK_THAT(over.error().message(), Catch::Contains("'a'"));
  CHECK(s->append_and_wait("a", "").code() == errc::resource_exhausted);
  append_n(*s, "b", 2);
  auto store_over = s->append_and_wait("c", "x");
  CHECK(store_over.code() == errc::resource_exhausted);
  CHECK_THAT(store_over.error().message(), Catch::Contains("store"));
  auto got = s->claim("a", 1);
  REQUIRE(s->complete_and_wait(got->at(0).id));
  CHECK(s->append_and_wait("c", "x"));
  CHECK(s->append_and_wait("b", std::string(2000, 'x')).code()
        == errc::resource_exhausted);
  // A duplicate is acknowledged even at the quota: it takes no room.
}

TEST_CASE("compaction keeps live messages, dead letters and order, and "
          "deletes the rest",
          "[durable]") {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.max_attempts = 1;
  {
    auto s = open_or_fail(o);
    append_n(*s, "q", 400);
    // Handle all but every 40th; kill one.
    for (int i = 0; i < 400; ++i) {
      auto got = s->claim("q", 1);
      REQUIRE(got->size() == 1);
      auto& m = got->at(0);
      if (m.payload == "m0")
        REQUIRE(s->fail_and_wait(m.id, "poison"));
      else if (i % 40 != 0)
        REQUIRE(s->complete_and_wait(m.id));
    }
    auto before = segment_files(dir.path()).size();
    REQUIRE(s->compact());
    CHECK(segment_files(dir.path()).size() < before);
    CHECK(s->dead_letters().size() == 1);
  }
  auto s = open_or_fail(o);
  CHECK(s->recovery().messages == 9);
  CHECK(s->recovery().dead_letters == 1);
  auto left = s->peek("q", 100);
  REQUIRE(left.size() == 9);
  for (std::size_t i = 1; i < left.size(); ++i)
    CHECK(left[i - 1].id < left[i].id);
  CHECK(left[0].payload == "m40");
  // Claimed before the compaction: the attempt count was kept.
  CHECK(left[0].attempts == 1);
  // New appends after a compaction get fresh, larger ids.
  auto r = s->append_and_wait("q", "new");
  REQUIRE(r);
  CHECK(r->id > left.back().id);
}

TEST_CASE("the store compacts by itself once sealed segments are mostly "
          "garbage",
          "[durable]") {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.compact_automatically = true;
  o.compaction_garbage_bytes = 16 * 1024;
  o.expiry_interval = 5ms;
  auto s = open_or_fail(o);
  for (int round = 0; round < 20; ++round) {
    append_n(*s, "q", 20, round * 20);
    drain(*s, "q");
  }
  append_n(*s, "q", 1, 1000);
  // Compaction runs on the maintenance thread; wait for its effect.
  auto until = std::chrono::steady_clock::now() + 10s;
  while (segment_files(dir.path()).size() > 6
         && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms); // a poll interval, not a wait
  CHECK(segment_files(dir.path()).size() <= 6);
  s.reset();
  auto again = open_or_fail(o);
  CHECK(drain(*again, "q") == std::vector<std::string>{"m1000"});
}

TEST_CASE("purge removes the waiting messages of a queue, discard a dead "
          "letter, durably",
          "[durable]") {
  temp_dir dir;
  auto o = small_options(dir.path());
  o.max_attempts = 1;
  std::uint64_t dead_id = 0;
  {
    auto s = open_or_fail(o);
    append_n(*s, "a", 5);
    append_n(*s, "b", 2);
    auto claimed = s->claim("a", 1);
    REQUIRE(claimed->size() == 1);
    auto purged = s->purge("a");
    REQUIRE(purged);
    CHECK(*purged == 4);
    CHECK(*s->purge("nobody") == 0);
    // The claimed one finishes its handling.
    REQUIRE(s->complete_and_wait(claimed->at(0).id));
    auto poison = s->claim("b", 1);
    dead_id = poison->at(0).id;
    REQUIRE(s->fail_and_wait(dead_id, "bad"));
    REQUIRE(s->dead_letters().size() == 1);
  }
  auto s = open_or_fail(o);
  CHECK(s->peek("a").empty());
  CHECK(s->peek("b").size() == 1);
  REQUIRE(s->dead_letters().size() == 1);
  REQUIRE(s->discard(dead_id));
  CHECK(s->discard(dead_id).code() == errc::not_found);
  CHECK(s->dead_letters().empty());
  s.reset();
  auto again = open_or_fail(o);
  CHECK(again->dead_letters().empty());
  CHECK(again->recovery().messages == 1);
}

namespace {

/// A store on real files that counts its fsyncs, with a group commit
/// window and quiet time.
struct windowed_store {
  windowed_store(std::chrono::microseconds window,
                 std::chrono::microseconds quiet) {
    auto o = small_options(dir.path());
    o.segment_bytes = 64u << 20; // no rotation: one fsync per batch
    o.group_commit_window = window;
    o.group_commit_quiet = quiet;
    o.files = files;
    s = open_or_fail(std::move(o));
  }

  /// `writers` threads, started together, each appending `each` messages
  /// and waiting for every ack before the next; the seconds it took.
  double run(int writers, int each) {
    std::atomic<int> ready{0};
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    auto start = std::chrono::steady_clock::now();
    for (int w = 0; w < writers; ++w)
      threads.emplace_back([&] {
        ++ready;
        while (ready < writers)
          std::this_thread::yield();
        for (int i = 0; i < each; ++i)
          if (!s->append_and_wait("q", "m"))
            ++failures;
      });
    for (auto& t : threads)
      t.join();
    CHECK(failures == 0);
    return std::chrono::duration<double>(std::chrono::steady_clock::now()
                                         - start)
      .count();
  }

  temp_dir dir;
  std::shared_ptr<fault_file_system> files
    = std::make_shared<fault_file_system>(posix_file_system());
  std::unique_ptr<store> s;
};

} // namespace

TEST_CASE("a group commit batch closes once appends stop joining it, long "
          "before its window",
          "[durable]") {
  // A 10 s window: were it waited out, 4 writers x 25 acks would take
  // 250 s. With the quiet time each batch closes about 100 us after its
  // last append.
  windowed_store w{10s, 100us};
  auto before = w.files->syncs();
  auto took = w.run(4, 25);
  CHECK(took < 5.0);
  CHECK(w.s->queues().at(0).depth == 100);
  // The writers still share fsyncs: at most one per 4 appends, plus a
  // few for appends that came back late from their ack.
  auto syncs = w.files->syncs() - before;
  INFO("fsyncs: " << syncs);
  CHECK(syncs <= 25 + 25);
}

TEST_CASE("a group commit batch gathers appends that keep arriving within "
          "the quiet time",
          "[durable]") {
  // Four writers start together; with a 200 ms quiet time all four are in
  // the first batch, one fsync for their four appends.
  windowed_store w{10s, 200ms};
  auto before = w.files->syncs();
  auto took = w.run(4, 1);
  CHECK(took >= 0.2);
  CHECK(took < 5.0);
  CHECK(w.files->syncs() - before == 1);
}

TEST_CASE("without a quiet time a group commit batch waits out its window",
          "[durable]") {
  // Three appends one after another: the first may join a batch the
  // store began at open, the next two wait a whole window each.
  windowed_store w{300ms, 0us};
  auto took = w.run(1, 3);
  CHECK(took >= 0.6);
  CHECK(took < 5.0);
}

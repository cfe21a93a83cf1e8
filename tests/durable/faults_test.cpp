// I/O faults: an fsync that fails with EIO stops the store (nothing is
// acknowledged after it), and a full disk (a real tmpfs of a few hundred
// KiB) refuses appends at once and resumes by itself when space frees.

#include <atomic>
#include <future>
#include <set>
#include <thread>

#include <sys/mount.h>

#include "durable_support.hpp"
#include "fault_file_system.hpp"

using namespace courier::durable;
using namespace courier::durable::testing;
using courier::errc;

TEST_CASE("an fsync failing with EIO stops the store: nothing is "
          "acknowledged after it",
          "[durable]") {
  temp_dir dir;
  auto faults = std::make_shared<fault_file_system>(posix_file_system());
  auto o = small_options(dir.path());
  o.files = faults;
  auto s = open_or_fail(o);
  append_n(*s, "q", 20);

  // Four writers; the fault strikes while they run. Outcomes are recorded
  // in the order the store reports them: callbacks run in commit order,
  // and a refusal once the store has stopped comes on the caller's thread.
  std::mutex mu;
  std::vector<courier::errc> outcomes;
  std::set<std::string> acked;
  std::atomic<bool> go{true};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t)
    writers.emplace_back([&, t] {
      for (int i = 0; go; ++i) {
        auto text = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::promise<void> done;
        s->append("q", text, {}, [&, text](courier::expected<append_result> r) {
          std::lock_guard guard{mu};
          outcomes.push_back(r.code());
          if (r)
            acked.insert(text);
          done.set_value();
        });
        done.get_future().wait();
      }
    });
  auto until = std::chrono::steady_clock::now() + 10s;
  while (faults->syncs() < 100 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms); // a poll interval
  faults->fail_syncs();
  until = std::chrono::steady_clock::now() + 10s;
  while (s->status() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(1ms);
  go = false;
  for (auto& w : writers)
    w.join();

  REQUIRE_FALSE(s->status());
  CHECK(s->status().code() == errc::data_loss);
  auto first_failure = std::find_if(outcomes.begin(), outcomes.end(),
                                    [](errc c) { return c != errc::ok; });
  REQUIRE(first_failure != outcomes.end());
  // The failed batch's appends get data_loss (on the writer thread); an
  // append made once the store has stopped gets unavailable at once (on
  // its own thread), which may be recorded first. Never an ok after either.
  CHECK((*first_failure == errc::data_loss
         || *first_failure == errc::unavailable));
  CHECK(std::find(first_failure, outcomes.end(), errc::data_loss)
        != outcomes.end());
  CHECK(std::all_of(first_failure, outcomes.end(),
                    [](errc c) { return c != errc::ok; }));
  auto later = s->append_and_wait("q", "later");
  CHECK(later.code() == errc::unavailable);
  CHECK_THAT(later.error().message(), Catch::Contains("reopen"));
  CHECK(s->claim("q", 1).code() == errc::unavailable);
  s.reset();

  // Reopened on the healthy disk: everything acknowledged is there.
  auto again = open_or_fail(small_options(dir.path()));
  std::set<std::string> found;
  for (auto& m : again->peek("q", 100'000))
    found.insert(m.payload);
  for (auto& text : acked)
    CHECK(found.count(text) == 1);
  CHECK(found.size() >= acked.size() + 20);
}

namespace {

/// A tmpfs of `bytes` mounted on a fresh temp dir, unmounted at the end.
class small_tmpfs {
public:
  explicit small_tmpfs(std::size_t bytes) {
    auto opts = "size=" + std::to_string(bytes);
    mounted_
      = ::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~small_tmpfs() {
    if (mounted_)
      ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const {
    return mounted_;
  }
  const std::string& path() const {
    return dir_.path();
  }

private:
  temp_dir dir_;
  bool mounted_ = false;
};

} // namespace

TEST_CASE("a full disk refuses appends at once with resource_exhausted and "
          "the store resumes when space frees",
          "[durable]") {
  small_tmpfs disk{512 * 1024};
  if (!disk.mounted()) {
    WARN("cannot mount a tmpfs here (needs root): test not run");
    return;
  }
  auto ballast = disk.path() + "/ballast";
  write_all(ballast, std::string(128 * 1024, 'b'));
  auto o = small_options(disk.path() + "/store");
  o.segment_bytes = 64 * 1024;
  o.resume_free_bytes = 64 * 1024;
  auto s = open_or_fail(o);
  std::vector<std::string> acked;
  std::string payload(1000, 'x');
  courier::expected<append_result> r = append_result{};
  for (int i = 0; i < 10'000; ++i) {
    auto start = std::chrono::steady_clock::now();
    r = s->append_and_wait("q", std::to_string(i) + payload);
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(took < 1s);
    if (!r)
      break;
    acked.push_back(std::to_string(i));
  }
  REQUIRE_FALSE(r);
  CHECK(r.code() == errc::resource_exhausted);
  CHECK(acked.size() > 100);
  CHECK(s->status()); // not stopped: a full disk is not a failure
  // Refused at once while still full, without touching the disk.
  auto start = std::chrono::steady_clock::now();
  CHECK(s->append_and_wait("q", payload).code() == errc::resource_exhausted);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  // Handling messages still works (removals are small records)... or the
  // disk is too full even for them; either way nothing is corrupt.
  std::filesystem::remove(ballast);
  auto until = std::chrono::steady_clock::now() + 5s;
  courier::expected<append_result> resumed = append_result{};
  do {
    resumed = s->append_and_wait("q", "resumed");
  } while (!resumed && std::chrono::steady_clock::now() < until
           && (std::this_thread::sleep_for(5ms), true));
  REQUIRE(resumed);
  s.reset();
  auto again = open_or_fail(o);
  auto all = again->peek("q", 100'000);
  REQUIRE(all.size() == acked.size() + 1);
  for (std::size_t i = 0; i < acked.size(); ++i)
    CHECK(all[i].payload == acked[i] + payload);
  CHECK(all.back().payload == "resumed");
}

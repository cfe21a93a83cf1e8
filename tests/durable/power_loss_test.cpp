// Simulated power loss: 500 crash images, each taken at a random file
// operation of a running store (appends from two threads, handling,
// rotation, a compaction). In each, every acknowledged message is
// recovered, every acknowledged removal stays removed, nothing appears
// twice, and torn records are detected and cut off.

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "durable_support.hpp"
#include "power_loss_file_system.hpp"

using namespace courier::durable;
using namespace courier::durable::testing;

namespace {

constexpr const char* sim_dir = "/power-loss";

store_options sim_options(std::shared_ptr<file_system> fs) {
  store_options o;
  o.directory = sim_dir;
  o.files = std::move(fs);
  o.segment_bytes = 4096;
  o.compact_automatically = false;
  return o;
}

struct outcome {
  std::set<std::string> acked;
  /// complete() was called: the removal may be on disk, acknowledged or
  /// not.
  std::set<std::string> removing;
  /// complete() was acknowledged before the crash.
  std::set<std::string> removed;
};

/// Runs the workload on `fs`; what was acknowledged before the image was
/// taken goes into the outcome.
outcome run_workload(const std::shared_ptr<power_loss_file_system>& fs) {
  outcome out;
  std::mutex mu;
  auto s = store::open(sim_options(fs));
  if (!s)
    return out; // the crash struck inside open(): nothing acknowledged
  auto before_crash = [&] { return !fs->taken(); };
  std::vector<std::thread> producers;
  for (int t = 0; t < 2; ++t)
    producers.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        auto text = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = (*s)->append_and_wait("q", text);
        if (r && before_crash()) {
          std::lock_guard guard{mu};
          out.acked.insert(text);
        }
      }
    });
  // Handle some while they append, then compact.
  int handled = 0;
  while (handled < 30) {
    auto got = (*s)->claim("q", 4);
    if (!got)
      break;
    for (auto& m : *got) {
      ++handled;
      {
        std::lock_guard guard{mu};
        out.removing.insert(m.payload);
      }
      if ((*s)->complete_and_wait(m.id) && before_crash()) {
        std::lock_guard guard{mu};
        out.removed.insert(m.payload);
      }
    }
    if (got->empty())
      std::this_thread::yield();
  }
  for (auto& p : producers)
    p.join();
  (void)(*s)->compact();
  append_n(**s, "q", 5, 100);
  (*s)->close();
  return out;
}

} // namespace

TEST_CASE("500 simulated power losses lose no acknowledged message",
          "[durable]") {
  // A dry run tells how many file operations a workload takes.
  auto dry = std::make_shared<power_loss_file_system>(sim_dir);
  run_workload(dry);
  auto total_ops = dry->operations();
  REQUIRE(total_ops > 100);

  std::mt19937_64 rng{Catch::rngSeed()};
  int images = 0;
  int truncated = 0;
  std::uint64_t torn_writes = 0;
  for (int round = 0; round < 500; ++round) {
    auto seed = rng();
    auto fs = std::make_shared<power_loss_file_system>(
      sim_dir, power_loss_file_system::image{}, seed);
    fs->crash_at_operation(1 + seed % total_ops);
    auto seen = run_workload(fs);
    auto image = fs->taken();
    if (!image)
      image = fs->crash_image();
    torn_writes += fs->counts().torn;
    ++images;

    auto after
      = std::make_shared<power_loss_file_system>(sim_dir, *image, seed);
    auto s = store::open(sim_options(after));
    INFO("round " << round << ", crash at operation " << 1 + seed % total_ops
                  << " of " << total_ops);
    REQUIRE(s);
    if ((*s)->recovery().truncated_bytes > 0)
      ++truncated;
    std::multiset<std::string> present;
    std::map<char, std::vector<int>> order;
    for (auto& m : (*s)->peek("q", 1000)) {
      present.insert(m.payload);
      if (m.payload[0] == 't')
        order[m.payload[1]].push_back(std::stoi(m.payload.substr(3)));
    }
    for (auto& text : seen.acked)
      if (seen.removing.count(text) == 0)
        CHECK(present.count(text) == 1);
    for (auto& text : seen.removed)
      CHECK(present.count(text) == 0);
    for (auto& text : present)
      CHECK(present.count(text) == 1);
    for (auto& [producer, seqs] : order)
      CHECK(std::is_sorted(seqs.begin(), seqs.end()));
    // The recovered store works: it takes and keeps a new message.
    REQUIRE((*s)->append_and_wait("q", "after"));
  }
  CHECK(images == 500);
  CHECK(torn_writes > 0);
  CHECK(truncated > 10);
}

// Real crashes: a child process (crash_child.cpp) appends and handles
// durable messages and is killed with SIGKILL at random moments, or stops
// itself at each named crash point; the next child recovers the store and
// goes on, resending from a little before its last acknowledgement. The
// checker counts, in Jepsen's words: lost (acknowledged, never handled),
// duplicated (stored twice, or handled again after its removal was
// acknowledged), unexpected (handled but never sent), reordered.
//
// COURIER_DURABLE_LONG=1 runs ten times the cycles.

#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "courier/durable/crash_point.hpp"
#include "durable_support.hpp"

using namespace courier::durable;
using namespace courier::durable::testing;
using courier::testing::child_process;

namespace {

struct history {
  std::map<std::uint64_t, int> stored;    // "A s 0" per seq
  std::set<std::uint64_t> acked;          // "A s *"
  std::map<std::uint64_t, int> handled;   // "H s" per seq
  std::map<std::uint64_t, int> completed; // "C s" per seq
  std::vector<std::uint64_t> first_handled;
  std::uint64_t highest_acked = 0;
  int handled_after_completion = 0;
  int rehandled = 0;
  bool done = false;

  void feed(const std::string& text) {
    std::istringstream in{text};
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream words{line};
      char kind = 0;
      std::uint64_t seq = 0;
      int dup = 0;
      words >> kind >> seq >> dup;
      if (kind == 'A') {
        acked.insert(seq);
        highest_acked = std::max(highest_acked, seq);
        if (dup == 0)
          ++stored[seq];
      } else if (kind == 'H') {
        if (completed.count(seq) != 0)
          ++handled_after_completion;
        if (handled[seq]++ == 0)
          first_handled.push_back(seq);
        else
          ++rehandled;
      } else if (kind == 'C') {
        ++completed[seq];
      } else if (kind == 'D') {
        done = true;
      }
    }
  }
};

/// Runs one child from the resend point to `last`; kills it after `kill_after`
/// unless it exits first. Returns its wait status.
int run_child(const std::string& dir, history& h, std::uint64_t last,
              std::chrono::milliseconds kill_after,
              const std::string& crash_at = {}) {
  auto first = h.highest_acked > 3 ? h.highest_acked - 3 : 1;
  std::vector<std::string> argv{COURIER_DURABLE_CRASH_CHILD, dir,
                                std::to_string(first), std::to_string(last)};
  if (!crash_at.empty())
    argv.push_back(crash_at);
  child_process child{argv};
  std::string out;
  if (!child.read_all(out, kill_after)) {
    child.kill(SIGKILL);
    std::string rest;
    child.read_all(rest, std::chrono::seconds{10});
    out += rest;
  }
  h.feed(out);
  auto status = child.wait_exit(std::chrono::seconds{10});
  REQUIRE(status);
  return *status;
}

void check(const history& h, std::uint64_t last, int crashes) {
  INFO("acknowledged " << h.acked.size() << ", handled " << h.handled.size()
                       << ", crashes " << crashes);
  REQUIRE(h.done);
  int lost = 0;
  // Handled, not removed on record, never handled again: its removal was
  // durable and the kill only took its "C" line.
  for (auto seq : h.acked)
    if (h.handled.count(seq) == 0)
      ++lost;
  CHECK(lost == 0);
  int stored_twice = 0;
  for (auto& [seq, n] : h.stored)
    if (n > 1)
      ++stored_twice;
  CHECK(stored_twice == 0);
  int completed_twice = 0;
  for (auto& [seq, n] : h.completed)
    if (n > 1)
      ++completed_twice;
  CHECK(completed_twice == 0);
  CHECK(h.handled_after_completion == 0);
  int unexpected = 0;
  for (auto& [seq, n] : h.handled)
    if (seq < 1 || seq > last)
      ++unexpected;
  CHECK(unexpected == 0);
  CHECK(std::is_sorted(h.first_handled.begin(), h.first_handled.end()));
  CHECK(h.first_handled.size() == last);
  // A handler runs again only if the process died between it and its
  // removal: at most once per crash.
  CHECK(h.rehandled <= crashes);
}

/// The crashing children never run out of work.
constexpr std::uint64_t endless = 1'000'000'000;

/// A last child without a crash resends what may be in doubt (the
/// producer appends one at a time, so at most the one after its last
/// acknowledgement was attempted), handles everything left, and ends.
void finish(const std::string& dir, history& h, int crashes) {
  auto last = h.highest_acked + 1;
  auto status = run_child(dir, h, last, std::chrono::seconds{60});
  CHECK(WIFEXITED(status));
  check(h, last, crashes);
}

int cycles(int normal) {
  const char* env = std::getenv("COURIER_DURABLE_LONG");
  return env != nullptr && *env == '1' ? normal * 10 : normal;
}

} // namespace

TEST_CASE("SIGKILL at random moments loses nothing, duplicates nothing and "
          "keeps order",
          "[durable][slow]") {
  temp_dir dir;
  history h;
  std::mt19937_64 rng{Catch::rngSeed()};
  int kills = cycles(25);
  int crashes = 0;
  for (int i = 0; i < kills; ++i) {
    auto after = std::chrono::milliseconds{
      std::uniform_int_distribution<int>(5, 120)(rng)};
    auto status = run_child(dir.path(), h, endless, after);
    if (WIFSIGNALED(status))
      ++crashes;
  }
  CHECK(crashes == kills);
  finish(dir.path(), h, crashes);
}

TEST_CASE("every named crash point is reached and recovered from",
          "[durable][slow]") {
  temp_dir dir;
  history h;
  std::mt19937_64 rng{Catch::rngSeed()};
  const std::vector<std::pair<std::string, int>> points{
    {"before_append", 60},          {"after_append_before_fsync", 60},
    {"after_fsync_before_ack", 60}, {"after_handler_before_removal", 60},
    {"mid_compaction", 2},          {"mid_rotation", 2},
  };
  int rounds = cycles(2);
  int crashes = 0;
  for (int round = 0; round < rounds; ++round)
    for (auto& [point, spread] : points) {
      auto n = std::uniform_int_distribution<int>(1, spread)(rng);
      INFO("crash point " << point << ":" << n);
      auto status = run_child(dir.path(), h, endless, std::chrono::seconds{30},
                              point + ":" + std::to_string(n));
      REQUIRE(WIFEXITED(status));
      CHECK(WEXITSTATUS(status) == crash_exit_status);
      if (WEXITSTATUS(status) == crash_exit_status)
        ++crashes;
    }
  finish(dir.path(), h, crashes);
}

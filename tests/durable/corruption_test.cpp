// Damage on disk: a torn tail is cut off the last segment, and every other
// damage (bit flips, zeroed blocks, a bad record followed by a later
// batch, a shortened sealed segment) stops the store with the file and
// offset, never a silent skip.

#include <map>
#include <random>

#include "durable_support.hpp"

using namespace courier::durable;
using namespace courier::durable::testing;
using courier::errc;

namespace {

constexpr int message_count = 300;

/// A store of `message_count` messages, one batch each, over ~10
/// segments; returns every file's bytes.
std::map<std::string, std::string> make_pristine(const std::string& dir) {
  {
    auto s = open_or_fail(small_options(dir));
    append_n(*s, "q", message_count);
  }
  std::map<std::string, std::string> files;
  for (auto& path : segment_files(dir))
    files[path] = read_all(path);
  return files;
}

void restore(const std::map<std::string, std::string>& files,
             const std::string& dir) {
  for (auto& path : segment_files(dir))
    std::filesystem::remove(path);
  for (auto& [path, bytes] : files)
    write_all(path, bytes);
}

/// The payloads are m0, m1, ..., m<n-1>: a prefix of what was written.
bool is_prefix(const std::vector<std::string>& got) {
  for (std::size_t i = 0; i < got.size(); ++i)
    if (got[i] != "m" + std::to_string(i))
      return false;
  return true;
}

} // namespace

TEST_CASE("a torn tail at a random offset is cut off and the rest recovered",
          "[durable]") {
  temp_dir dir;
  auto pristine = make_pristine(dir.path());
  REQUIRE(pristine.size() >= 5);
  auto last = pristine.rbegin()->first;
  auto& tail = pristine.rbegin()->second;
  std::mt19937_64 rng{Catch::rngSeed()};
  int truncated = 0;
  for (int round = 0; round < 60; ++round) {
    restore(pristine, dir.path());
    auto cut
      = std::uniform_int_distribution<std::size_t>(56, tail.size() - 1)(rng);
    auto bytes = tail.substr(0, cut);
    if (round % 2 == 1) {
      // A torn write may leave garbage, not just a short file.
      auto junk = std::uniform_int_distribution<std::size_t>(1, 300)(rng);
      for (std::size_t i = 0; i < junk; ++i)
        bytes.push_back(static_cast<char>(rng()));
    }
    write_all(last, bytes);
    std::vector<std::string> got;
    {
      auto s = open_or_fail(small_options(dir.path()));
      if (s->recovery().truncated_bytes > 0) {
        ++truncated;
        CHECK(s->recovery().truncated_file == last);
        CHECK(s->recovery().truncated_at <= cut);
      }
      for (auto& m : s->peek("q", message_count))
        got.push_back(m.payload);
      CHECK(is_prefix(got));
      CHECK(got.size() <= message_count);
      CHECK(got.size() > message_count / 2);
      // The store goes on after the cut.
      REQUIRE(s->append_and_wait("q", "after"));
    }
    auto again = open_or_fail(small_options(dir.path()));
    CHECK(again->recovery().truncated_bytes == 0);
    auto all = again->peek("q", message_count + 1);
    REQUIRE(all.size() == got.size() + 1);
    CHECK(all.back().payload == "after");
  }
  CHECK(truncated > 30);
}

TEST_CASE("every single bit flip in a sealed segment is detected",
          "[durable]") {
  temp_dir dir;
  auto pristine = make_pristine(dir.path());
  std::vector<std::string> sealed;
  for (auto& [path, bytes] : pristine)
    if (path != pristine.rbegin()->first)
      sealed.push_back(path);
  std::mt19937_64 rng{Catch::rngSeed()};
  for (int round = 0; round < 150; ++round) {
    restore(pristine, dir.path());
    auto& path = sealed[rng() % sealed.size()];
    auto bytes = pristine.at(path);
    auto at = rng() % bytes.size();
    bytes[at] = static_cast<char>(bytes[at] ^ (1 << (rng() % 8)));
    write_all(path, bytes);
    auto s = store::open(small_options(dir.path()));
    REQUIRE_FALSE(s);
    CHECK(s.code() == errc::data_loss);
    CHECK_THAT(s.error().message(),
               Catch::Contains(path) && Catch::Contains("offset"));
  }
}

TEST_CASE("a zeroed block in a sealed segment is detected", "[durable]") {
  temp_dir dir;
  auto pristine = make_pristine(dir.path());
  std::mt19937_64 rng{Catch::rngSeed()};
  auto first = pristine.begin();
  for (int round = 0; round < 30; ++round) {
    restore(pristine, dir.path());
    auto it
      = std::next(first, static_cast<long>(rng() % (pristine.size() - 1)));
    auto bytes = it->second;
    auto block = (rng() % ((bytes.size() + 511) / 512)) * 512;
    for (std::size_t i = block; i < std::min(bytes.size(), block + 512); ++i)
      bytes[i] = 0;
    write_all(it->first, bytes);
    auto s = store::open(small_options(dir.path()));
    REQUIRE_FALSE(s);
    CHECK(s.code() == errc::data_loss);
    CHECK_THAT(s.error().message(), Catch::Contains(it->first));
  }
}

TEST_CASE("a sealed segment cut short is an error, not a torn tail",
          "[durable]") {
  temp_dir dir;
  auto pristine = make_pristine(dir.path());
  auto& [path, bytes] = *pristine.begin();
  write_all(path, bytes.substr(0, bytes.size() - 7));
  auto s = store::open(small_options(dir.path()));
  REQUIRE_FALSE(s);
  CHECK_THAT(s.error().message(), Catch::Contains("sealed"));
}

TEST_CASE("a bad record in the last segment followed by a later batch is "
          "an error",
          "[durable]") {
  temp_dir dir;
  auto pristine = make_pristine(dir.path());
  auto [path, bytes] = *pristine.rbegin();
  REQUIRE(bytes.size() > 56 + 200);
  // The first record's body: one batch of its own, later ones follow.
  bytes[56 + 30] = static_cast<char>(bytes[56 + 30] ^ 0x10);
  write_all(path, bytes);
  auto s = store::open(small_options(dir.path()));
  REQUIRE_FALSE(s);
  CHECK(s.code() == errc::data_loss);
  CHECK_THAT(s.error().message(),
             Catch::Contains("offset 56") && Catch::Contains("later batch"));
}

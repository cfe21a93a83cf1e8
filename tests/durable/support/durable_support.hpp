#pragma once

// Helpers for the durable store's tests: a store in a fresh temp dir, its
// segment files, and byte surgery on them.

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "courier/durable/store.hpp"
#include "process.hpp"

namespace courier::durable::testing {

using courier::testing::temp_dir;
using namespace std::chrono_literals;

/// Options for a store in `dir` with small segments, so that a few
/// hundred messages span several.
inline store_options small_options(const std::string& dir) {
  store_options o;
  o.directory = dir;
  o.segment_bytes = 4096;
  o.compact_automatically = false;
  return o;
}

inline std::unique_ptr<store> open_or_fail(store_options o) {
  auto s = store::open(std::move(o));
  if (!s)
    FAIL("store::open: " << s.error().to_string());
  return std::move(*s);
}

/// The segment files of `dir`, oldest first.
inline std::vector<std::string> segment_files(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : std::filesystem::directory_iterator(dir)) {
    auto name = e.path().filename().string();
    if (name.starts_with("seg-") && name.ends_with(".log"))
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

inline std::string read_all(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, {}};
}

inline void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Copies every file of `from` into `to` (both exist).
inline void copy_dir(const std::string& from, const std::string& to) {
  for (auto& e : std::filesystem::directory_iterator(from))
    std::filesystem::copy_file(
      e.path(), std::filesystem::path{to} / e.path().filename(),
      std::filesystem::copy_options::overwrite_existing);
}

/// Appends `n` messages "m<i>" to `queue`, each waiting for its fsync
/// (one batch each); returns their ids.
inline std::vector<std::uint64_t> append_n(store& s, const std::string& queue,
                                           int n, int first = 0) {
  std::vector<std::uint64_t> ids;
  for (int i = first; i < first + n; ++i) {
    auto r = s.append_and_wait(queue, "m" + std::to_string(i));
    REQUIRE(r);
    ids.push_back(r->id);
  }
  return ids;
}

/// Claims and completes everything in `queue`; returns the payloads.
inline std::vector<std::string> drain(store& s, const std::string& queue) {
  std::vector<std::string> out;
  for (;;) {
    auto got = s.claim(queue, 64);
    REQUIRE(got);
    if (got->empty())
      return out;
    for (auto& m : *got) {
      out.push_back(m.payload);
      REQUIRE(s.complete_and_wait(m.id));
    }
  }
}

} // namespace courier::durable::testing

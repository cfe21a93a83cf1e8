// The files-and-locks directory: what it publishes, what it removes, and
// what it says about its access rights.

#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include "file_directory.hpp"
#include "process.hpp"
#include "test_support.hpp"

using namespace courier;
using namespace courier::detail;
using namespace courier::testing;

TEST_CASE("a directory under a folder closed to others says so at start",
          "[runtime][directory]") {
  temp_dir dir;
  auto open = dir.path() + "/open";
  auto closed = dir.path() + "/closed";
  REQUIRE(::mkdir(open.c_str(), 0755) == 0);
  REQUIRE(::mkdir(closed.c_str(), 0700) == 0);
  auto fine = file_directory::join(open + "/courier", "n1");
  REQUIRE(fine);
  CHECK((*fine)->access_warning().empty());
  auto hidden = file_directory::join(closed + "/courier", "n2");
  REQUIRE(hidden);
  auto warning = (*hidden)->access_warning();
  CHECK(warning.find("lies under " + closed + " (mode 0700)")
        != std::string::npos);
  CHECK(warning.find("nodes of other users cannot reach this node")
        != std::string::npos);
}

TEST_CASE("a node's endpoints listed in its record go with it, and nothing "
          "else in sockets/",
          "[runtime][directory]") {
  temp_dir dir;
  auto sockets = dir.path() + "/sockets/";
  {
    auto joined = file_directory::join(dir.path(), "a");
    REQUIRE(joined);
    auto& a = **joined;
    CHECK(a.local_dir() == dir.path() + "/sockets");
    for (auto file : {"a.sock", "a.shm", "a.b.sock"}) // a.b.sock: node a.b's
      std::ofstream{sockets + file} << "x";
    v1::NodeRecord record;
    record.set_name("a");
    for (auto [tier, file] : {std::pair{"pipe", "a.sock"}, {"shm", "a.shm"}}) {
      auto* endpoint = record.add_endpoints();
      endpoint->set_tier(tier);
      endpoint->set_address(sockets + file);
    }
    auto* outside = record.add_endpoints(); // never removed: not ours
    outside->set_tier("other");
    outside->set_address(dir.path() + "/elsewhere");
    std::ofstream{dir.path() + "/elsewhere"} << "x";
    REQUIRE(a.publish(record));
  }
  CHECK_FALSE(std::filesystem::exists(sockets + "a.sock"));
  CHECK_FALSE(std::filesystem::exists(sockets + "a.shm"));
  CHECK(std::filesystem::exists(sockets + "a.b.sock"));
  CHECK(std::filesystem::exists(dir.path() + "/elsewhere"));
}

TEST_CASE("a node restarting while a peer asks whether its last incarnation "
          "lives gets its name, and a live node keeps it",
          "[directory]") {
  temp_dir dir;
  {
    auto first = file_directory::join(dir.path(), "billing");
    REQUIRE(first);
    // A second start while the first lives is refused.
    auto second = file_directory::join(dir.path(), "billing");
    REQUIRE_FALSE(second);
    CHECK(second.code() == errc::already_exists);
  }
  // The last incarnation is gone, but a peer's probe (alive(), reap():
  // a shared lock for a moment) holds the lock file as the new one starts.
  auto lock_path = dir.path() + "/nodes/billing.lock";
  std::ofstream{lock_path}.flush();
  int probe = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(probe >= 0);
  REQUIRE(::flock(probe, LOCK_SH | LOCK_NB) == 0);
  std::thread release{[probe] {
    std::this_thread::sleep_for(std::chrono::milliseconds{50});
    ::close(probe);
  }};
  auto restarted = file_directory::join(dir.path(), "billing");
  release.join();
  REQUIRE(restarted);
  auto again = file_directory::join(dir.path(), "billing");
  REQUIRE_FALSE(again);
  CHECK(again.code() == errc::already_exists);
}

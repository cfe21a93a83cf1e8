#pragma once

// Two hosts on one machine for the benchmark: network namespaces a and b
// joined by a veth pair (10.79.0.1 in a, 10.79.0.2 in b), made by the
// benchmark and removed at its end, also when it exits early (root only).

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace courier::bench {

/// Thread safety: none; make it on the main thread before other threads.
class bench_hosts {
public:
  static constexpr const char* address_a = "10.79.0.1";
  static constexpr const char* address_b = "10.79.0.2";

  bench_hosts() {
    auto tag = std::to_string(::getpid());
    a_ = "courier-bench-" + tag + "-a";
    b_ = "courier-bench-" + tag + "-b";
    auto veth_a = "cba" + tag;
    auto veth_b = "cbb" + tag;
    made().push_back(a_);
    made().push_back(b_);
    static bool registered = false;
    if (!registered) {
      registered = true;
      std::atexit(remove_all);
    }
    ok_ = run("ip netns add " + a_) && run("ip netns add " + b_)
          && run("ip link add " + veth_a + " netns " + a_
                 + " type veth peer name " + veth_b + " netns " + b_)
          && run("ip -n " + a_ + " addr add " + address_a + "/24 dev " + veth_a)
          && run("ip -n " + b_ + " addr add " + address_b + "/24 dev " + veth_b)
          && run("ip -n " + a_ + " link set " + veth_a + " up")
          && run("ip -n " + b_ + " link set " + veth_b + " up")
          && run("ip -n " + a_ + " link set lo up")
          && run("ip -n " + b_ + " link set lo up");
  }

  ~bench_hosts() {
    remove_all();
  }

  bench_hosts(const bench_hosts&) = delete;
  bench_hosts& operator=(const bench_hosts&) = delete;

  bool ok() const {
    return ok_;
  }

  /// Moves the calling thread, and the threads and processes it starts
  /// from now on, into namespace a.
  bool enter_a() const {
    auto fd = ::open(("/run/netns/" + a_).c_str(), O_RDONLY | O_CLOEXEC);
    bool entered = fd >= 0 && ::setns(fd, CLONE_NEWNET) == 0;
    if (fd >= 0)
      ::close(fd);
    return entered;
  }

  /// A command prefix that runs a program in namespace b.
  std::vector<std::string> in_b() const {
    return {"ip", "netns", "exec", b_};
  }

private:
  static bool run(const std::string& command) {
    return std::system(("(" + command + ") >/dev/null 2>&1").c_str()) == 0;
  }

  static std::vector<std::string>& made() {
    static std::vector<std::string> names;
    return names;
  }

  /// Deletes the namespaces (the veth goes with them); the processes still
  /// in one keep it until they end.
  static void remove_all() {
    for (const auto& name : made())
      run("ip netns del " + name);
    made().clear();
  }

  std::string a_;
  std::string b_;
  bool ok_ = false;
};

} // namespace courier::bench

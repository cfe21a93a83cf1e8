#pragma once

// Hosts for tests: network namespaces joined by a veth pair, made by the
// test that uses them and removed at its end (root only). Nodes in two
// namespaces are on two hosts for Courier (a host is machine id, boot id
// and network namespace), so this is how the tests put nodes on other
// machines. Traffic stays inside the namespaces.

#include <sched.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

namespace courier::testing {

/// Runs a shell command; true if it exits 0.
inline bool shell(const std::string& command) {
  return std::system(("(" + command + ") >/dev/null 2>&1").c_str()) == 0;
}

/// Two namespaces, a and b, with 10.77.0.1/24 on a's end of the veth and
/// 10.77.0.2/24 on b's (addresses that exist nowhere else: each pair has
/// namespaces of its own).
class netns_pair {
public:
  static bool available() {
    return ::geteuid() == 0 && shell("command -v ip && command -v nft");
  }

  netns_pair() {
    static std::atomic<int> counter{0};
    auto tag = std::to_string(::getpid()) + "x" + std::to_string(counter++);
    a_ = "courier-" + tag + "-a";
    b_ = "courier-" + tag + "-b";
    auto veth_a = "cva" + tag;
    auto veth_b = "cvb" + tag;
    ok_ = shell("ip netns add " + a_) && shell("ip netns add " + b_)
          && shell("ip link add " + veth_a + " netns " + a_
                   + " type veth peer name " + veth_b + " netns " + b_)
          && shell("ip -n " + a_ + " addr add 10.77.0.1/24 dev " + veth_a)
          && shell("ip -n " + b_ + " addr add 10.77.0.2/24 dev " + veth_b)
          && shell("ip -n " + a_ + " link set " + veth_a + " up")
          && shell("ip -n " + b_ + " link set " + veth_b + " up")
          && shell("ip -n " + a_ + " link set lo up")
          && shell("ip -n " + b_ + " link set lo up");
  }

  ~netns_pair() {
    shell("ip netns del " + a_); // the veth goes with it
    shell("ip netns del " + b_);
  }

  netns_pair(const netns_pair&) = delete;
  netns_pair& operator=(const netns_pair&) = delete;

  bool ok() const {
    return ok_;
  }

  const std::string& a() const {
    return a_;
  }

  const std::string& b() const {
    return b_;
  }

  /// A command prefix that runs a program in namespace `ns`.
  static std::vector<std::string> in(const std::string& ns) {
    return {"ip", "netns", "exec", ns};
  }

  /// Drops every packet that arrives in namespace `ns`.
  static bool black_hole(const std::string& ns) {
    return shell("ip netns exec " + ns
                 + " nft add table inet courier_test")
           && shell("ip netns exec " + ns
                    + " nft add chain inet courier_test input "
                      "'{ type filter hook input priority 0; policy drop; }'");
  }

  /// Undoes black_hole().
  static bool heal(const std::string& ns) {
    return shell("ip netns exec " + ns + " nft delete table inet courier_test");
  }

private:
  std::string a_;
  std::string b_;
  bool ok_ = false;
};

/// While it lives, the calling thread is in network namespace `ns`; the
/// threads it starts (a node's) stay there for good. Back where it was at
/// the end.
class in_netns {
public:
  explicit in_netns(const std::string& ns) {
    home_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    auto there = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    ok_ = home_ >= 0 && there >= 0 && ::setns(there, CLONE_NEWNET) == 0;
    if (there >= 0)
      ::close(there);
  }

  ~in_netns() {
    if (ok_)
      ::setns(home_, CLONE_NEWNET);
    if (home_ >= 0)
      ::close(home_);
  }

  in_netns(const in_netns&) = delete;
  in_netns& operator=(const in_netns&) = delete;

  bool ok() const {
    return ok_;
  }

private:
  int home_ = -1;
  bool ok_ = false;
};

} // namespace courier::testing

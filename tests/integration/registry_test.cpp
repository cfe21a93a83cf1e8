// The cluster registry on a real etcd (tests/support/etcd_server.hpp): node
// records and names in etcd, unique cluster-wide, leases for liveness, a
// watch for the caches, and deadlines when etcd is gone.

#include <barrier>
#include <future>
#include <thread>

#include <sys/socket.h>

#include "etcd_directory.hpp"
#include "etcd_server.hpp"
#include "file_directory.hpp"
#include "local_node.hpp"

using namespace courier;
using namespace courier::testing;
using courier::detail::etcd_directory;
using courier::detail::etcd_directory_options;
using courier::detail::file_directory;

namespace {

using clock_type = std::chrono::steady_clock;

/// A directory on the registry for `node`, as node::start builds it, its
/// log lines kept in `lines` when given.
std::unique_ptr<etcd_directory>
join_registry(const etcd_server& etcd, const temp_dir& dir,
              const std::string& node,
              std::shared_ptr<probe<std::string>> lines = nullptr,
              std::chrono::milliseconds lease = 1s) {
  auto local = file_directory::join(dir.path(), node);
  REQUIRE(local);
  etcd_directory_options options;
  options.url = etcd.url();
  options.node = node;
  options.lease = lease;
  options.timeout = 1s;
  if (lines)
    options.log = [lines](log_level, std::string_view line) {
      lines->push(std::string{line});
    };
  auto joined = etcd_directory::join(std::move(options), std::move(*local));
  REQUIRE(joined);
  return std::move(*joined);
}

/// Polls `condition` (each poll a call to etcd) until it holds.
bool eventually_slow(const std::function<bool()>& condition,
                     std::chrono::milliseconds timeout = patience) {
  auto until = clock_type::now() + timeout;
  while (!condition()) {
    if (clock_type::now() > until)
      return false;
    std::this_thread::sleep_for(20ms); // a poll interval, not a wait
  }
  return true;
}

/// Registry flags for courier_test_node.
std::vector<std::string> registry_args(const etcd_server& etcd,
                                       std::chrono::milliseconds lease = 5s) {
  return {"--registry", etcd.url(), "--lease", std::to_string(lease.count())};
}

std::unique_ptr<child_process>
start_registry_node(const etcd_server& etcd, const temp_dir& dir,
                    const std::string& name, std::vector<std::string> actors,
                    std::chrono::milliseconds lease = 5s) {
  auto args = registry_args(etcd, lease);
  args.insert(args.end(), actors.begin(), actors.end());
  return start_test_node(dir, name, std::move(args));
}

void use_registry(node_config& config, const etcd_server& etcd,
                  std::chrono::milliseconds lease = 5s) {
  config.registry = etcd.url();
  config.registry_lease = lease;
  config.registry_timeout = 1s;
}

bool has_name(const std::vector<name_info>& names, const std::string& actor,
              const std::string& node) {
  for (auto& info : names)
    if (info.actor == actor && info.node == node)
      return true;
  return false;
}

bool has_node(const std::vector<node_info>& nodes, const std::string& name) {
  for (auto& info : nodes)
    if (info.name == name)
      return true;
  return false;
}

} // namespace

TEST_CASE("two nodes on one registry claim, find and list names, and a post "
          "by name reaches the other node",
          "[registry][integration]") {
  etcd_server etcd;
  temp_dir dir;
  auto peer = start_registry_node(etcd, dir, "beta", {"echo.b", "counter"});
  local_node here{dir, "alpha",
                  [&](node_config& config) { use_registry(config, etcd); }};
  REQUIRE(here->spawn("adder.a", adder));
  auto nodes = here->nodes();
  CHECK(has_node(nodes, "alpha"));
  CHECK(has_node(nodes, "beta"));
  auto names = here->machine_names("*");
  CHECK(has_name(names, "adder.a", "alpha"));
  CHECK(has_name(names, "echo.b", "beta"));
  CHECK(has_name(names, "counter", "beta"));
  // Claimed cluster-wide: the other node's name cannot be taken here.
  CHECK(here->spawn("echo.b", adder).code() == errc::already_exists);
  auto pong = here->send<tpb::Pong>("echo.b", ping(7), 5s);
  REQUIRE(pong);
  CHECK((*pong)->from() == "beta/echo.b<-");
  for (int seq = 0; seq < 50; ++seq)
    REQUIRE(here->post("counter", ping(seq)));
  auto sum = here->send<tpb::Sum>("counter", add(0, 0), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 50 * 1000000); // all 50, in order
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].peer == "beta");
  CHECK(routes[0].tier == "shm"); // a local tier: both run on this machine
}

TEST_CASE("a node name is unique on the registry, also across local folders",
          "[registry][integration]") {
  etcd_server etcd;
  temp_dir one;
  temp_dir two;
  local_node first{one, "gamma",
                   [&](node_config& config) { use_registry(config, etcd); }};
  node_config config;
  config.name = "gamma";
  config.directory = two.path();
  use_registry(config, etcd);
  auto second = node::start(config);
  REQUIRE_FALSE(second);
  CHECK(second.code() == errc::already_exists);
  CHECK(second.error().message().find("registered") != std::string::npos);
}

TEST_CASE("of two nodes racing for a name exactly one wins, 100 times over",
          "[registry][integration]") {
  etcd_server etcd;
  temp_dir dir;
  auto a = join_registry(etcd, dir, "racer-a", nullptr, 5s);
  auto b = join_registry(etcd, dir, "racer-b", nullptr, 5s);
  constexpr int rounds = 100;
  std::barrier start{2};
  std::vector<expected<void>> by_a;
  std::vector<expected<void>> by_b;
  auto race = [&](etcd_directory& dir, std::vector<expected<void>>& out) {
    for (int round = 0; round < rounds; ++round) {
      start.arrive_and_wait(); // both claim the same name at once
      out.push_back(dir.claim_name("prize." + std::to_string(round)));
    }
  };
  std::thread racer{[&] { race(*b, by_b); }};
  race(*a, by_a);
  racer.join();
  int wins_a = 0;
  for (int round = 0; round < rounds; ++round) {
    auto name = "prize." + std::to_string(round);
    INFO(name);
    REQUIRE(by_a[round].has_value() != by_b[round].has_value());
    auto& lost = by_a[round] ? by_b[round] : by_a[round];
    CHECK(lost.code() == errc::already_exists);
    auto winner = by_a[round] ? "racer-a" : "racer-b";
    wins_a += by_a[round] ? 1 : 0;
    auto seen_by_a = a->owner_of(name);
    auto seen_by_b = b->owner_of(name);
    REQUIRE(seen_by_a);
    REQUIRE(seen_by_b);
    CHECK(*seen_by_a == winner);
    CHECK(*seen_by_b == winner);
  }
  UNSCOPED_INFO("racer-a won " << wins_a << " of " << rounds);
  CHECK(a->names().size() == rounds);
}

TEST_CASE("a released name is seen free through the cache and can be "
          "claimed by another node",
          "[registry][integration]") {
  etcd_server etcd;
  temp_dir dir;
  auto holder = join_registry(etcd, dir, "holder");
  auto other = join_registry(etcd, dir, "other");
  REQUIRE(holder->claim_name("ledger"));
  REQUIRE(eventually_slow([&] { return other->cache_trusted(); }));
  REQUIRE(other->owner_of("ledger").value() == "holder"); // now cached
  REQUIRE(other->owner_of("ledger").value() == "holder");
  CHECK(other->read_node("holder").value().name() == "holder");
  holder->release_name("ledger");
  // The watch drops the cached owner: the next lookup asks etcd again.
  REQUIRE(eventually_slow([&] {
    return other->owner_of("ledger").code() == errc::not_found;
  }));
  CHECK(other->claim_name("ledger"));
  CHECK(holder->owner_of("ledger").value() == "other");
  // A release of a name held by another node changes nothing.
  holder->release_name("ledger");
  CHECK(other->owner_of("ledger").value() == "other");
}

TEST_CASE("a node frozen past its lease is down for the others, and notices "
          "when it resumes",
          "[registry][integration][slow]") {
  etcd_server etcd;
  temp_dir dir;
  auto frozen = start_registry_node(etcd, dir, "sleeper",
                                    {"--log-stdout", "echo.z"}, 1s);
  auto observer = join_registry(etcd, dir, "observer");
  local_node here{dir, "waker",
                  [&](node_config& config) { use_registry(config, etcd); }};
  REQUIRE(here->send<tpb::Pong>("echo.z", ping(1), 5s));
  REQUIRE(observer->owner_of("echo.z").value() == "sleeper"); // cached
  REQUIRE(observer->read_node("sleeper"));
  frozen->kill(SIGSTOP);
  struct resume {
    child_process& child;
    ~resume() {
      child.kill(SIGCONT); // whatever happens, let it end normally
    }
  } resume_later{*frozen};
  // Its lease lapses within about a second: its record and names vanish.
  REQUIRE(eventually_slow([&] {
    return observer->read_node("sleeper").code() == errc::not_found;
  }));
  CHECK(observer->owner_of("echo.z").code() == errc::not_found);
  CHECK_FALSE(has_node(here->nodes(), "sleeper"));
  CHECK_FALSE(has_name(here->machine_names("*"), "echo.z", "sleeper"));
  // The name is free: another node takes it.
  REQUIRE(here->spawn("echo.z", adder));
  CHECK(observer->owner_of("echo.z").value() == "waker");
  frozen->kill(SIGCONT);
  // Resumed, it finds its lease gone, says so, and registers again
  // without the name it lost.
  CHECK(frozen->wait_for_line_containing("lapsed", 10s));
  CHECK(frozen->wait_for_line_containing("went to node 'waker'", 10s));
  REQUIRE(eventually_slow(
    [&] { return observer->read_node("sleeper").has_value(); }));
  CHECK(observer->owner_of("echo.z").value() == "waker");
}

TEST_CASE("a node whose registry is unreachable fails to start at once, "
          "naming the endpoint",
          "[registry][integration]") {
  temp_dir dir;
  auto port = free_loopback_port(); // nobody listens: refused
  node_config config;
  config.name = "lonely";
  config.directory = dir.path();
  config.registry = "etcd://127.0.0.1:" + std::to_string(port);
  auto began = clock_type::now();
  auto started = node::start(config);
  REQUIRE_FALSE(started);
  CHECK(started.code() == errc::unavailable);
  CHECK(started.error().message().find("127.0.0.1:" + std::to_string(port))
        != std::string::npos);
  CHECK(clock_type::now() - began < 1s);
  // The node's name on this machine is free again.
  config.registry.clear();
  CHECK(node::start(config));
}

TEST_CASE("a registry that accepts but never answers fails node::start "
          "within the deadline",
          "[registry][integration]") {
  temp_dir dir;
  // A listening socket nobody accepts on: connects succeed, answers never
  // come.
  int mute = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(mute >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(mute, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(mute, 16) == 0);
  REQUIRE(::getsockname(mute, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  node_config config;
  config.name = "patient";
  config.directory = dir.path();
  config.registry = "etcd://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  config.registry_timeout = 300ms;
  auto began = clock_type::now();
  auto started = node::start(config);
  auto took = clock_type::now() - began;
  ::close(mute);
  REQUIRE_FALSE(started);
  CHECK(started.code() == errc::unavailable);
  CHECK(started.error().message().find("within 300 ms") != std::string::npos);
  CHECK(took >= 300ms);
  CHECK(took < 2s);
}

TEST_CASE("with etcd killed, registry calls fail within their deadline and "
          "the node still stops",
          "[registry][integration]") {
  temp_dir dir;
  std::optional<local_node> here;
  auto lines = std::make_shared<probe<std::string>>();
  std::unique_ptr<etcd_directory> observer;
  {
    etcd_server etcd;
    here.emplace(dir, "survivor", [&](node_config& config) {
      use_registry(config, etcd);
      config.registry_timeout = 500ms;
    });
    REQUIRE((*here)->spawn("adder.s", adder));
    observer = join_registry(etcd, dir, "observer", lines);
    REQUIRE(observer->owner_of("adder.s"));
  } // etcd is killed here
  auto began = clock_type::now();
  auto spawned = (*here)->spawn("adder.t", adder);
  CHECK(spawned.code() == errc::unavailable);
  CHECK(clock_type::now() - began < 2s);
  began = clock_type::now();
  auto looked_up = observer->owner_of("nobody");
  CHECK(looked_up.code() == errc::unavailable);
  CHECK(observer->nodes().empty());
  CHECK(clock_type::now() - began < 5s); // two calls of 1 s at most
  // The renewals fail too, and the directory says so.
  CHECK(logged(*lines, "cannot renew the registry lease"));
  CHECK_FALSE(observer->cache_trusted());
  began = clock_type::now();
  observer.reset(); // its revoke fails within the deadline
  here.reset();
  CHECK(clock_type::now() - began < 5s);
}

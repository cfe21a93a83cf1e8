// The cluster registry on a real etcd (tests/support/etcd_server.hpp): node
// records and names in etcd, unique cluster-wide, leases for liveness, a
// watch for the caches, and deadlines when etcd is gone.

#include <barrier>
#include <future>
#include <thread>

#include <sys/socket.h>

#include "base64.hpp"
#include "etcd_client.hpp"
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
              std::chrono::milliseconds lease = 3s) {
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

/// A loopback HTTP server that answers every request with `answer` (a
/// hostile or broken "etcd"), until it goes away.
class canned_http_server {
public:
  explicit canned_http_server(std::string answer) : answer_(std::move(answer)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread{[this] { serve(); }};
  }

  ~canned_http_server() {
    done_ = true;
    thread_.join();
    ::close(fd_);
  }

  std::string url() const {
    return "etcd://127.0.0.1:" + std::to_string(port_);
  }

private:
  void serve() {
    while (!done_) {
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, 20) != 1) // wakes to see done_
        continue;
      int conn = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0)
        continue;
      std::string request;
      char buf[4096];
      // The request's head and its (small) JSON body.
      while (request.find("}") == std::string::npos) {
        pollfd in{conn, POLLIN, 0};
        if (::poll(&in, 1, 1000) != 1)
          break;
        auto n = ::recv(conn, buf, sizeof buf, 0);
        if (n <= 0)
          break;
        request.append(buf, static_cast<std::size_t>(n));
      }
      std::size_t sent = 0;
      while (sent < answer_.size()) {
        auto n = ::send(conn, answer_.data() + sent, answer_.size() - sent,
                        MSG_NOSIGNAL);
        if (n <= 0)
          break;
        sent += static_cast<std::size_t>(n);
      }
      ::close(conn);
    }
  }

  std::string answer_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

expected<node> start_on(const temp_dir& dir, const std::string& url) {
  node_config config;
  config.name = "victim";
  config.directory = dir.path();
  config.registry = url;
  config.registry_timeout = 1s;
  return node::start(config);
}

} // namespace

TEST_CASE("registry URLs are parsed, and bad ones refused with a reason",
          "[registry]") {
  using courier::detail::parse_etcd_url;
  auto one = parse_etcd_url("etcd://127.0.0.1:2379");
  REQUIRE(one);
  REQUIRE(one->endpoints.size() == 1);
  CHECK(one->endpoints[0].host == "127.0.0.1");
  CHECK(one->endpoints[0].port == 2379);
  CHECK(one->prefix == "/courier/v1/");
  auto many = parse_etcd_url("etcd://a:1,[::1]:2,b.example:3/team/x");
  REQUIRE(many);
  REQUIRE(many->endpoints.size() == 3);
  CHECK(many->endpoints[1].host == "::1");
  CHECK(many->endpoints[1].text() == "[::1]:2");
  CHECK(many->endpoints[2].port == 3);
  CHECK(many->prefix == "/team/x/");
  for (auto bad :
       {"http://127.0.0.1:2379", "etcd://", "etcd://host", "etcd://host:0",
        "etcd://host:65536", "etcd://host:12x", "etcd://:2379"}) {
    INFO(bad);
    auto parsed = parse_etcd_url(bad);
    CHECK(parsed.code() == errc::invalid_argument);
  }
  CHECK(courier::detail::etcd_prefix_end("/courier/v1/") == "/courier/v10");
}

TEST_CASE("keys and values cross the gateway as base64", "[registry]") {
  using courier::detail::from_base64;
  using courier::detail::to_base64;
  CHECK(to_base64("") == "");
  CHECK(to_base64("f") == "Zg==");
  CHECK(to_base64("fo") == "Zm8=");
  CHECK(to_base64("foo") == "Zm9v");
  std::string every;
  for (int c = 0; c < 256; ++c)
    every.push_back(static_cast<char>(c));
  for (std::size_t n = 0; n <= every.size(); n += 37) {
    auto part = every.substr(0, n);
    CHECK(from_base64(to_base64(part)) == part);
  }
  CHECK(from_base64("Zm9v") == std::optional<std::string>{"foo"});
  CHECK(from_base64("Zm8") == std::optional<std::string>{"fo"});
  CHECK_FALSE(from_base64("Zm9v!"));
  CHECK_FALSE(from_base64("Z"));
}

TEST_CASE("a registry answering garbage fails node::start with an error, "
          "not a crash",
          "[registry][integration]") {
  temp_dir dir;
  SECTION("not JSON") {
    canned_http_server server{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                              "Connection: close\r\n\r\nhello"};
    auto started = start_on(dir, server.url());
    REQUIRE_FALSE(started);
    CHECK(started.code() == errc::internal);
  }
  SECTION("JSON of the wrong shape") {
    std::string body = R"({"header":{},"ID":{"not":"a number"}})";
    canned_http_server server{"HTTP/1.1 200 OK\r\nContent-Length: "
                              + std::to_string(body.size())
                              + "\r\nConnection: close\r\n\r\n" + body};
    auto started = start_on(dir, server.url());
    REQUIRE_FALSE(started);
    CHECK(started.code() == errc::internal);
    CHECK(started.error().message().find("malformed") != std::string::npos);
  }
  SECTION("an answer larger than the bound") {
    // 17 MiB, over the 16 MiB bound: the client stops reading at the bound.
    canned_http_server server{
      "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(17u << 20)
      + "\r\nConnection: close\r\n\r\n{" + std::string((17u << 20) - 1, ' ')};
    auto started = start_on(dir, server.url());
    REQUIRE_FALSE(started);
    INFO(started.error().message());
    CHECK(started.code() == errc::resource_exhausted);
  }
  SECTION("an HTTP error without a body") {
    canned_http_server server{"HTTP/1.1 503 Service Unavailable\r\n"
                              "Content-Length: 0\r\nConnection: close\r\n"
                              "\r\n"};
    auto started = start_on(dir, server.url());
    REQUIRE_FALSE(started);
    CHECK(started.code() == errc::unavailable);
    CHECK(started.error().message().find("503") != std::string::npos);
  }
}

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
  REQUIRE(eventually_slow(
    [&] { return other->owner_of("ledger").code() == errc::not_found; }));
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
  auto frozen
    = start_registry_node(etcd, dir, "sleeper", {"--log-stdout", "echo.z"}, 2s);
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
  // Its lease lapses within about two seconds: its record and names vanish.
  REQUIRE(eventually_slow(
    [&] { return observer->read_node("sleeper").code() == errc::not_found; }));
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

TEST_CASE("after etcd restarts the watch comes back and registrations stay",
          "[registry][integration]") {
  etcd_server etcd;
  temp_dir dir;
  auto lines = std::make_shared<probe<std::string>>();
  auto a = join_registry(etcd, dir, "steady", lines);
  auto b = join_registry(etcd, dir, "reader");
  REQUIRE(a->claim_name("anchor"));
  REQUIRE(eventually_slow([&] { return b->cache_trusted(); }));
  REQUIRE(b->owner_of("anchor").value() == "steady");
  etcd.restart(true);
  // The watch broke and reconnected; renewals go on; the lease survived.
  CHECK(logged(*lines, "the registry watch broke"));
  REQUIRE(eventually_slow([&] { return a->cache_trusted(); }));
  REQUIRE(eventually_slow([&] { return b->cache_trusted(); }));
  CHECK(b->owner_of("anchor").value() == "steady");
  CHECK(b->read_node("steady"));
  CHECK(a->lease_losses() == 0);
  // And the cache follows changes again.
  a->release_name("anchor");
  CHECK(eventually_slow(
    [&] { return b->owner_of("anchor").code() == errc::not_found; }));
}

TEST_CASE("after etcd loses its data every node registers again with its "
          "names",
          "[registry][integration]") {
  etcd_server etcd;
  temp_dir dir;
  auto lines = std::make_shared<probe<std::string>>();
  auto a = join_registry(etcd, dir, "phoenix", lines);
  REQUIRE(a->claim_name("ember"));
  REQUIRE(a->claim_name("ash"));
  etcd.restart(false); // a fresh, empty etcd on the same port
  CHECK(logged(*lines, "lapsed"));
  CHECK(eventually_slow([&] { return a->lease_losses() >= 1; }));
  auto b = join_registry(etcd, dir, "witness");
  REQUIRE(eventually_slow([&] {
    auto owner = b->owner_of("ember");
    return owner && *owner == "phoenix";
  }));
  CHECK(b->owner_of("ash").value() == "phoenix");
  CHECK(b->read_node("phoenix").value().name() == "phoenix");
  CHECK(logged(*lines, "is registered again"));
  // It claims and releases as before.
  REQUIRE(a->claim_name("smoke"));
  CHECK(b->owner_of("smoke").value() == "phoenix");
}

TEST_CASE("the CLI lists and reaches the nodes of a registry",
          "[registry][cli][integration]") {
  etcd_server etcd;
  temp_dir dir;
  temp_dir elsewhere; // the CLI's own folder: what it sees comes from etcd
  auto peer = start_registry_node(etcd, dir, "delta", {"adder"});
  auto run = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{COURIER_CLI, "--registry", etcd.url()};
    argv.insert(argv.end(), args.begin(), args.end());
    child_process cli{argv};
    std::string out;
    REQUIRE(cli.read_all(out));
    auto status = cli.wait_exit(10s);
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    return std::pair{WEXITSTATUS(*status), out};
  };
  auto [listed, names] = run({"--dir", elsewhere.path(), "names"});
  CHECK(listed == 0);
  CHECK(names.find("adder") != std::string::npos);
  CHECK(names.find("delta") != std::string::npos);
  // Its socket lives in the peer's folder: the CLI reaches it from there.
  auto [sent, reply] = run({"--dir", dir.path(), "send", "adder",
                            "courier_test.v1.Add", R"({"a": "40", "b": 2})"});
  CHECK(sent == 0);
  CHECK(reply == "{\"value\":\"42\"}\n");
}

TEST_CASE("of several registry endpoints a dead one is skipped",
          "[registry][integration]") {
  etcd_server etcd;
  temp_dir dir;
  auto dead = free_loopback_port();
  node_config config;
  config.name = "hopper";
  config.directory = dir.path();
  config.registry = "etcd://127.0.0.1:" + std::to_string(dead)
                    + ",127.0.0.1:" + std::to_string(etcd.client_port());
  config.registry_timeout = 1s;
  auto started = node::start(config);
  REQUIRE(started);
  REQUIRE(started->spawn("adder.h", adder));
  auto observer = join_registry(etcd, dir, "observer");
  CHECK(observer->owner_of("adder.h").value() == "hopper");
}

// Nodes on two hosts: network namespaces joined by a veth pair, made and
// removed by each test (root only). Every verb crosses over TCP with mutual
// TLS; a black-holed host is unreachable within the bound and comes back
// in order once healed; a partition one way is seen from both sides.

#include <algorithm>
#include <fstream>
#include <future>

#include "courier/durable/delivery.hpp"
#include "local_node.hpp"
#include "netns.hpp"
#include "tcp_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

constexpr auto bound = 600ms; // the tests' detection bound

/// Two hosts: this process's node "here" in namespace a (10.77.0.1), a
/// test node "peer" in namespace b (10.77.0.2), both with the local tiers
/// and TCP with mutual TLS, heartbeats every 100 ms and a 600 ms bound.
///
/// With `peer_dir`, the peer keeps its records there, a directory of its
/// own: "here" finds it as a static seed (node_config::seeds), not in the
/// files.
struct two_hosts {
  explicit two_hosts(const temp_dir& dir,
                     std::vector<std::string> actors = {"echo.p", "adder",
                                                        "sloth", "counter",
                                                        "quitter"},
                     const temp_dir* peer_dir = nullptr,
                     std::function<void(node_config&)> adjust = {})
    : certs{mint_certs(dir, {"here", "peer", "ops"})} {
    REQUIRE(hosts.ok());
    auto args = netns_pair::in(hosts.b());
    std::vector<std::string> flags{"--with-tcp", "--tcp-listen",
                                   "10.77.0.2:0", "--tls", certs,
                                   "--heartbeat", "100",
                                   "--unreachable-after", "600",
                                   "--log-stdout"};
    flags.insert(flags.end(), actors.begin(), actors.end());
    const auto& home = peer_dir != nullptr ? *peer_dir : dir;
    peer = start_test_node(home, "peer", flags, args);
    std::vector<seed> seeds;
    if (peer_dir != nullptr) {
      local_node looker{home, "looker", [](node_config& config) {
                          config.transports = {{"pipe", pipe::factory()}};
                        }};
      peer_address = "tls://10.77.0.2:"
                     + std::to_string(tcp_port_of(*looker.instance, "peer"));
      seeds.push_back({"peer", peer_address});
    }
    REQUIRE(inside.ok());
    here.emplace(dir, "here", [&](node_config& config) {
      tcp::options settings;
      settings.listen = "10.77.0.1:0";
      settings.tls = tls_files_of(certs, "here");
      settings.heartbeat = 100ms;
      settings.unreachable_after = bound;
      config.transports.emplace_back("tcp", tcp::factory(settings));
      config.seeds = seeds;
      if (adjust)
        adjust(config);
    });
  }

  netns_pair hosts;
  std::string certs;
  std::string peer_address; // when found as a seed
  std::unique_ptr<child_process> peer;
  in_netns inside{hosts.a()};
  std::optional<local_node> here;

  node& local() {
    return *here->instance;
  }
};

} // namespace

TEST_CASE("every verb crosses to a node on another host over TCP and TLS",
          "[hosts][tcp]") {
  if (!netns_pair::available()) {
    WARN("skipped: network namespaces need root, ip and nft");
    return;
  }
  temp_dir dir;
  two_hosts setup{dir};
  auto& here = setup.local();

  auto sum = here.send<tpb::Sum>("adder", add(40, 2), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 42);
  auto routes = here.routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "tcp");
  CHECK_THAT(routes[0].note, Catch::Contains("another network namespace"));

  for (int i = 0; i < 500; ++i)
    REQUIRE(here.post("counter", ping(i)));
  auto counted = here.send<tpb::Sum>("counter", add(0, 0), 5s);
  REQUIRE(counted);
  CHECK((*counted)->value() == 500 * 1000000LL); // in order: none out of it

  auto found = here.machine_names("echo.p");
  REQUIRE(found.size() == 1);
  CHECK(found[0].node == "peer");
  auto all = here.broadcast("echo.*", ping(9), 5s);
  REQUIRE(all.replied.size() == 1);
  CHECK(all.replied[0].name == "echo.p");
  CHECK(here.send("nobody@peer", ping(1), 2s).code() == errc::not_found);

  probe<down_notice> downs;
  REQUIRE(here.monitor("quitter", [&](const down_notice& n) { downs.push(n); }));
  REQUIRE(here.post("quitter", tpb::Quit{}));
  REQUIRE(downs.wait_for_count(1, 5s));
  CHECK(downs.items()[0].reason == down_reason::stopped);
}

TEST_CASE("a node on another host is found as a static seed, and its names "
          "vanish while it is black-holed",
          "[hosts][tcp][seeds]") {
  if (!netns_pair::available()) {
    WARN("skipped: network namespaces need root, ip and nft");
    return;
  }
  temp_dir dir, peer_dir;
  two_hosts setup{dir, {"echo.p", "adder"}, &peer_dir};
  auto& here = setup.local();
  auto sum = here.send<tpb::Sum>("adder", add(40, 2), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 42);
  auto routes = here.routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "tcp");
  // Dialled before its handshake said where it is: a host, by address.
  CHECK_THAT(routes[0].note, Catch::Contains("another host")
                               || Catch::Contains("another network namespace"));
  auto found = here.machine_names("*");
  CHECK(std::count_if(found.begin(), found.end(), [](const name_info& n) {
          return n.node == "peer";
        }) >= 2);
  std::string peer_host;
  for (const auto& info : here.nodes())
    if (info.name == "peer")
      peer_host = info.host;
  CHECK_FALSE(peer_host.empty());
  CHECK(peer_host != "//"); // what its handshake said, not a blank

  // Cut off: the link goes within the bound, then the seed's names.
  REQUIRE(netns_pair::black_hole(setup.hosts.a()));
  REQUIRE(netns_pair::black_hole(setup.hosts.b()));
  CHECK(eventually(
    [&] {
      auto sent = here.send("echo.p", ping(1), 1s);
      return !sent && sent.code() == errc::not_found;
    },
    15s));
  REQUIRE(netns_pair::heal(setup.hosts.a()));
  REQUIRE(netns_pair::heal(setup.hosts.b()));
  CHECK(eventually([&] { return here.send("echo.p", ping(2), 1s).has_value(); },
                   15s));
}

TEST_CASE("the CLI on one host lists and reaches a node on another host",
          "[hosts][tcp][seeds][cli]") {
  if (!netns_pair::available()) {
    WARN("skipped: network namespaces need root, ip and nft");
    return;
  }
  temp_dir dir, peer_dir, cli_dir;
  two_hosts setup{dir, {"echo.p", "adder"}, &peer_dir};
  // The CLI's node: its own folder, the peer as a seed, TLS with a
  // certificate for "ops" (its --name).
  auto file = cli_dir.path() + "/cli.toml";
  {
    std::ofstream out{file};
    out << "directory = \"" << cli_dir.path() << "\"\n"
        << "seeds = [\"peer@" << setup.peer_address << "\"]\n"
        << "[tiers.tcp]\nlisten = \"10.77.0.1:0\"\n"
        << "[tiers.tcp.tls]\n"
        << "certificate = \"" << setup.certs << "/ops.pem\"\n"
        << "private_key = \"" << setup.certs << "/ops.key\"\n"
        << "ca = \"" << setup.certs << "/ca.pem\"\n";
  }
  auto run = [&](std::vector<std::string> args) {
    auto argv = netns_pair::in(setup.hosts.a());
    for (auto a : {std::string{COURIER_CLI}, std::string{"--config"}, file,
                   std::string{"--name"}, std::string{"ops"}})
      argv.push_back(a);
    argv.insert(argv.end(), args.begin(), args.end());
    child_process cli{argv};
    std::string out;
    REQUIRE(cli.read_all(out, 20s));
    auto status = cli.wait_exit(20s);
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    return std::pair{WEXITSTATUS(*status), out};
  };
  auto [listed, names] = run({"names"});
  CHECK(listed == 0);
  CHECK_THAT(names, Catch::Contains("adder") && Catch::Contains("peer"));
  auto [found, where] = run({"find", "echo.p"});
  CHECK(found == 0);
  CHECK_THAT(where, Catch::Contains("peer"));
  auto [nodes_status, nodes] = run({"nodes"});
  CHECK(nodes_status == 0);
  CHECK_THAT(nodes, Catch::Contains("peer"));
  auto [sent, reply] = run({"send", "adder", "courier_test.v1.Add",
                            R"({"a": "40", "b": 2})"});
  CHECK(sent == 0);
  CHECK(reply == "{\"value\":\"42\"}\n");
  auto [posted, nothing] = run({"post", "echo.p", "courier_test.v1.Ping",
                                R"({"seq": 5})"});
  CHECK(posted == 0);
}

TEST_CASE("a black-holed host is unreachable within the bound, and after "
          "healing new messages arrive in order",
          "[hosts][tcp][liveness]") {
  if (!netns_pair::available()) {
    WARN("skipped: network namespaces need root, ip and nft");
    return;
  }
  temp_dir dir;
  two_hosts setup{dir};
  auto& here = setup.local();
  REQUIRE(here.send<tpb::Pong>("echo.p", ping(1), 5s));
  probe<down_notice> downs;
  REQUIRE(here.monitor("sloth", [&](const down_notice& n) { downs.push(n); }));
  auto call = std::async(std::launch::async, [&] {
    return here.send("sloth", tpb::Hold{}, 30s);
  });

  REQUIRE(netns_pair::black_hole(setup.hosts.a()));
  REQUIRE(netns_pair::black_hole(setup.hosts.b()));
  auto cut = std::chrono::steady_clock::now();
  REQUIRE(downs.wait_for_count(1, 10s));
  auto detected = std::chrono::steady_clock::now() - cut;
  CHECK(downs.items()[0].reason == down_reason::unreachable);
  CHECK(detected < bound + 1500ms);
  REQUIRE(call.wait_for(5s) == std::future_status::ready);
  CHECK(call.get().code() == errc::unavailable);
  // Meanwhile a call fails (at its deadline at worst), never hangs.
  CHECK_FALSE(here.send("echo.p", ping(2), 1s));

  REQUIRE(netns_pair::heal(setup.hosts.a()));
  REQUIRE(netns_pair::heal(setup.hosts.b()));
  REQUIRE(eventually(
    [&] { return static_cast<bool>(here.send("echo.p", ping(3), 1s)); }, 15s));
  auto before = here.send<tpb::Sum>("counter", add(0, 0), 5s);
  REQUIRE(before);
  for (int i = 0; i < 300; ++i)
    REQUIRE(here.post("counter", ping(i)));
  auto after = here.send<tpb::Sum>("counter", add(0, 0), 5s);
  REQUIRE(after);
  CHECK((*after)->value() - (*before)->value() == 300 * 1000000LL);
}

TEST_CASE("a partition one way is detected by both sides",
          "[hosts][tcp][liveness]") {
  if (!netns_pair::available()) {
    WARN("skipped: network namespaces need root, ip and nft");
    return;
  }
  temp_dir dir;
  two_hosts setup{dir};
  auto& here = setup.local();
  REQUIRE(here.send<tpb::Pong>("echo.p", ping(1), 5s));
  probe<down_notice> downs;
  REQUIRE(here.monitor("sloth", [&](const down_notice& n) { downs.push(n); }));

  // Only b stops hearing: a still gets every packet b sends.
  REQUIRE(netns_pair::black_hole(setup.hosts.b()));
  REQUIRE(downs.wait_for_count(1, 10s)); // a's side
  CHECK(setup.peer->wait_for_line_containing(
    "lost the link with node 'here': nothing came from the peer", 10s));
  // b's side
  REQUIRE(netns_pair::heal(setup.hosts.b()));
}

TEST_CASE("durable posts across a partition between hosts: everything "
          "acknowledged is handled once, in order, after it heals",
          "[hosts][tcp][durable]") {
  if (!netns_pair::available()) {
    WARN("skipped: network namespaces need root, ip and nft");
    return;
  }
  // 5 s in every run; 30 s as well with COURIER_DURABLE_LONG=1.
  std::vector<std::chrono::seconds> partitions{5s};
  if (const char* longer = std::getenv("COURIER_DURABLE_LONG");
      longer != nullptr && std::string{longer} == "1")
    partitions.push_back(30s);
  temp_dir dir, stores;
  two_hosts setup{dir,
                  {"--durable", stores.path() + "/peer", "counter"},
                  nullptr,
                  [&](node_config& config) {
                    durable::delivery_options o;
                    o.store.directory = stores.path() + "/here";
                    o.retry_min = 10ms;
                    o.retry_max = 200ms;
                    o.forward_timeout = 1s;
                    config.durable = durable::delivery(o);
                  }};
  auto& here = setup.local();
  std::int64_t seq = 0;
  auto post_some = [&](int n) {
    for (int i = 0; i < n; ++i)
      REQUIRE(here.post_durable("counter", ping(seq++)));
  };
  auto handled = [&] {
    auto sum = here.send<tpb::Sum>("counter", add(0, 0), 1s);
    return sum ? (*sum)->value() : -1;
  };
  post_some(100);
  REQUIRE(eventually([&] { return handled() == 100 * 1000000LL; }, 15s));
  for (auto cut : partitions) {
    REQUIRE(netns_pair::black_hole(setup.hosts.a()));
    REQUIRE(netns_pair::black_hole(setup.hosts.b()));
    // Posted during the partition: on this node's disk, waiting.
    auto until = std::chrono::steady_clock::now() + cut;
    while (std::chrono::steady_clock::now() < until) {
      post_some(10);
      std::this_thread::sleep_for(50ms);
    }
    REQUIRE(netns_pair::heal(setup.hosts.a()));
    REQUIRE(netns_pair::heal(setup.hosts.b()));
    post_some(100);
    // Every post is handled once and in order: the counter counts them and
    // the ones out of order (a duplicate would be one).
    INFO("after a partition of " << cut.count() << " s, " << seq
                                 << " posted");
    REQUIRE(eventually([&] { return handled() == seq * 1000000LL; }, 60s));
  }
}

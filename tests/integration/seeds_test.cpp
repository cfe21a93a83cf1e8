// Static seeds (node_config::seeds): nodes of "other machines" found by
// address alone. Each machine here is a directory of its own, so that
// nothing is found through the files; the seed is a real process on the
// loopback, reached over the TCP tier.

#include <csignal>

#include "courier/durable/delivery.hpp"
#include "courier/v1/durable.pb.h"
#include "local_node.hpp"
#include "published.hpp"
#include "tcp_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// The TCP port that `name`, a node of directory `dir`, publishes.
int published_port(const temp_dir& dir, const std::string& name) {
  local_node looker{dir, "looker-" + name, [](node_config& config) {
                      config.transports = {{"pipe", pipe::factory()}};
                    }};
  return tcp_port_of(*looker.instance, name);
}

/// A node of its own directory ("another machine") whose only tier is
/// TCP, that knows the machines of `seeds`.
local_node seeded_node(const temp_dir& dir, const std::string& name,
                       std::vector<seed> seeds, tcp::options settings = {},
                       std::chrono::milliseconds ttl = 2s) {
  return local_node{dir, name, [&](node_config& config) {
                      config.transports = {{"tcp", tcp::factory(settings)}};
                      config.seeds = std::move(seeds);
                      config.seed_cache_ttl = ttl;
                    }};
}

} // namespace

TEST_CASE("a node reaches the names of its seeds over TLS, and knows them",
          "[seeds][tcp][tls]") {
  temp_dir there, here_dir;
  auto certs = mint_certs(there, {"here", "peer"});
  auto peer = start_test_node(there, "peer",
                              {"--tcp", "--tls", certs, "echo.p", "echo.q"});
  auto address = "tls://127.0.0.1:" + std::to_string(published_port(there, "peer"));
  tcp::options settings;
  settings.tls = tls_files_of(certs, "here");
  auto here = seeded_node(here_dir, "here", {{"peer", address}}, settings);

  auto pong = here->send<tpb::Pong>("echo.p", ping(7), 5s);
  REQUIRE(pong);
  CHECK((*pong)->seq() == 7);
  pong = here->send<tpb::Pong>("echo.p@peer", ping(8), 5s);
  REQUIRE(pong);
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].peer == "peer");
  CHECK(routes[0].tier == "tcp");

  // What the seed said of itself in the handshake, with the address it
  // was found at first.
  bool listed = false;
  for (const auto& info : here->nodes())
    if (info.name == "peer") {
      listed = true;
      CHECK(info.pid == peer->pid());
      REQUIRE_FALSE(info.addresses.empty());
      CHECK(info.addresses[0] == address);
    }
  CHECK(listed);
  auto names = here->machine_names("echo.*");
  REQUIRE(names.size() == 2);
  CHECK(names[0].actor == "echo.p");
  CHECK(names[0].node == "peer");
  CHECK(names[1].actor == "echo.q");

  // A name a seed holds is not claimed here.
  auto taken = here->spawn("echo.p", [](context&) { return behavior{}; });
  REQUIRE_FALSE(taken);
  CHECK(taken.code() == errc::already_exists);
  CHECK(taken.error().message().find("node 'peer' (a seed)") != std::string::npos);
  // Unknown names are not_found, as on one machine.
  auto nobody = here->send("nobody.p", ping(1), 2s);
  REQUIRE_FALSE(nobody);
  CHECK(nobody.code() == errc::not_found);
}

TEST_CASE("a seed that restarts with other names is asked again",
          "[seeds][tcp]") {
  temp_dir there, here_dir;
  auto peer = start_test_node(there, "peer", {"--tcp", "echo.first"});
  auto port = std::to_string(published_port(there, "peer"));
  auto here = seeded_node(here_dir, "here", {{"peer", "tcp://127.0.0.1:" + port}},
                          {}, 300ms);
  REQUIRE(here->send("echo.first", ping(1), 5s));

  peer->kill(SIGKILL);
  peer->wait_exit(5s);
  peer = start_test_node(there, "peer",
                         {"--tcp", "--tcp-listen", "127.0.0.1:" + port,
                          "echo.second"});
  // Within the cache's life and a redial: the new incarnation's names.
  CHECK(eventually([&] { return here->send("echo.second", ping(2), 1s).has_value(); },
                   10s));
  CHECK(eventually(
    [&] {
      auto gone = here->send("echo.first", ping(3), 1s);
      return !gone && gone.code() == errc::not_found;
    },
    10s));
}

TEST_CASE("a node knows the gRPC services its seeds' actors declared at "
          "spawn, and their descriptors",
          "[seeds][tcp]") {
  temp_dir there, here_dir;
  auto peer = start_test_node(there, "peer", {"--tcp", "orders", "echo.p"});
  auto port = std::to_string(published_port(there, "peer"));
  auto here = seeded_node(here_dir, "here",
                          {{"peer", "tcp://127.0.0.1:" + port}});
  auto served = here->served_services();
  REQUIRE(served.size() == 1);
  CHECK(served[0].service == "shop.Orders");
  CHECK(served[0].actor == "orders");
  CHECK(served[0].node == "peer");
  // The service's .proto came with the names, for a gateway here.
  CHECK(publishes_service(*here.instance, "peer", "shop.Orders"));
}

TEST_CASE("a seed that does not answer costs a bounded wait and is logged",
          "[seeds][tcp]") {
  temp_dir here_dir;
  // A port nobody listens on: bound, then closed.
  int port = 0;
  {
    local_node holder{here_dir, "holder", [](node_config& config) {
                        config.transports = {{"tcp", tcp::factory({})}};
                      }};
    port = tcp_port_of(*holder.instance, "holder");
  }
  auto here = seeded_node(here_dir, "here",
                          {{"ghost", "tcp://127.0.0.1:" + std::to_string(port)}});
  auto started = std::chrono::steady_clock::now();
  auto sent = here->send("anyone", ping(1), 5s);
  REQUIRE_FALSE(sent);
  CHECK(sent.code() == errc::not_found);
  CHECK(std::chrono::steady_clock::now() - started < 3s);
  CHECK(logged(*here.lines, "seed 'ghost'"));
  CHECK(logged(*here.lines, "does not answer"));
}

TEST_CASE("a seed address served by another node is not linked",
          "[seeds][tcp]") {
  temp_dir there, here_dir;
  auto peer = start_test_node(there, "peer", {"--tcp", "echo.p"});
  auto address = "tcp://127.0.0.1:" + std::to_string(published_port(there, "peer"));
  auto here = seeded_node(here_dir, "here", {{"wrong", address}});
  auto sent = here->send("echo.p", ping(1), 5s);
  REQUIRE_FALSE(sent);
  CHECK(sent.code() == errc::not_found);
  CHECK(logged(*here.lines, "dialled node 'wrong', but node 'peer' answered"));
}

TEST_CASE("seeds are checked when the node starts", "[seeds]") {
  temp_dir dir;
  auto start = [&](std::vector<seed> seeds, std::string registry = {}) {
    node_config config;
    config.name = "checked";
    config.directory = dir.path();
    config.seeds = std::move(seeds);
    config.registry = std::move(registry);
    return node::start(std::move(config));
  };
  auto bad_name = start({{"no/such", "tls://127.0.0.1:1"}});
  REQUIRE_FALSE(bad_name);
  CHECK(bad_name.code() == errc::invalid_argument);
  auto bad_address = start({{"peer", "127.0.0.1:1"}});
  REQUIRE_FALSE(bad_address);
  CHECK(bad_address.error().message().find("tls://host:port") != std::string::npos);
  auto both = start({{"peer", "tls://127.0.0.1:1"}}, "etcd://127.0.0.1:1");
  REQUIRE_FALSE(both);
  CHECK(both.error().message().find("not both") != std::string::npos);

  auto parsed = parse_seed("beta@tls://10.0.0.2:7000");
  REQUIRE(parsed);
  CHECK(parsed->node == "beta");
  CHECK(parsed->address == "tls://10.0.0.2:7000");
  CHECK_FALSE(parse_seed("beta"));
  CHECK_FALSE(parse_seed("beta@tls://10.0.0.2"));
}

TEST_CASE("a durable transfer is authorized as a post to its target: a "
          "principal the rules do not let post to a name gets nothing to it",
          "[seeds][tcp][tls][durable][security]") {
  temp_dir there, here_dir, stores;
  auto certs = mint_certs(there, {"here", "peer"});
  auto handled = std::make_shared<probe<std::string>>();
  auto recorder = [handled](std::string name) {
    return [handled, name](context&) {
      return behavior{[handled, name](const tpb::Ping&) {
        handled->push(name);
      }};
    };
  };
  // "peer", another machine: "here" may find both names but post only to
  // billing.
  local_node peer{there, "peer", [&](node_config& config) {
                    tcp::options settings;
                    settings.tls = tls_files_of(certs, "peer");
                    config.transports = {{"tcp", tcp::factory(settings)}};
                    config.rules = {
                      {"cert:CN=here", "billing", verbs::post | verbs::find},
                      {"cert:CN=here", "audit", verbs::find}};
                    durable::delivery_options o;
                    o.store.directory = stores.path() + "/peer";
                    config.durable = durable::delivery(o);
                  }};
  REQUIRE(peer->spawn("billing", recorder("billing")));
  REQUIRE(peer->spawn("audit", recorder("audit")));
  auto address
    = "tls://127.0.0.1:" + std::to_string(published_port(there, "peer"));
  auto notices = std::make_shared<probe<v1::DurableNotice>>();
  local_node here{here_dir, "here", [&](node_config& config) {
                    tcp::options settings;
                    settings.tls = tls_files_of(certs, "here");
                    config.transports = {{"tcp", tcp::factory(settings)}};
                    config.seeds = {{"peer", address}};
                    durable::delivery_options o;
                    o.store.directory = stores.path() + "/here";
                    o.retry_min = 10ms;
                    o.retry_max = 100ms;
                    config.durable = durable::delivery(o);
                  }};
  REQUIRE(here->spawn("admin", [notices](context&) {
    return behavior{[notices](const v1::DurableNotice& n) {
      notices->push(n);
    }};
  }));
  post_options o;
  o.ack_to = "admin";
  o.time_to_reach_queue = 1500ms;
  for (int i = 0; i < 3; ++i) {
    REQUIRE(here->post_durable("billing", ping(i), o));
    REQUIRE(here->post_durable("audit", ping(i), o));
  }
  // Billing's reach the queue and its handler; audit's are refused at the
  // link, retried, and expire on this node with their reason.
  REQUIRE(eventually(
    [&] {
      std::size_t dead = 0;
      for (const auto& n : notices->items())
        dead += n.kind() == v1::DurableNotice::KIND_DEAD_LETTER;
      return dead == 3;
    },
    20s));
  REQUIRE(eventually([&] { return handled->size() >= 3; }));
  for (const auto& name : handled->items())
    CHECK(name == "billing");
  for (const auto& n : notices->items())
    if (n.kind() == v1::DurableNotice::KIND_DEAD_LETTER) {
      CHECK(n.target() == "audit");
      CHECK(n.reason() == "time_to_reach_queue");
      CHECK(n.node() == "here");
    }
  CHECK(peer->refusals() >= 3);
  CHECK(logged(*here.lines, "may not post to 'audit'"));
}

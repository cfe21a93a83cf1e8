#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

TEST_CASE("a node refuses a malformed name", "[runtime]") {
  node_config config;
  config.name = "bad name!";
  auto started = node::start(config);
  REQUIRE_FALSE(started);
  CHECK(started.code() == errc::invalid_argument);
}

TEST_CASE("a node without a name is named after its pid", "[runtime]") {
  quiet_node n;
  CHECK(n->name().rfind("node-", 0) == 0);
}

TEST_CASE("a second claim of a held name fails with already_exists",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("orders", adder));
  auto again = n->spawn("orders", adder);
  REQUIRE_FALSE(again);
  CHECK(again.code() == errc::already_exists);
}

TEST_CASE("a malformed actor name is refused with invalid_argument",
          "[runtime]") {
  quiet_node n;
  for (auto bad : {"", "has space", "a@b", "*", ".hidden"}) {
    auto spawned = n->spawn(bad, adder);
    REQUIRE_FALSE(spawned);
    CHECK(spawned.code() == errc::invalid_argument);
  }
  CHECK(n->spawn("billing.invoices-2_b", adder));
}

TEST_CASE("a malformed name given to find, post or send is refused with "
          "invalid_argument, not not_found",
          "[runtime]") {
  quiet_node n;
  for (auto bad : {"bad!name", "has space", "[", "ok@bad!node", "@"}) {
    INFO(bad);
    auto found = n->find(bad);
    CHECK(found.code() == errc::invalid_argument);
    CHECK(found.error().message().find("not a valid name")
          != std::string::npos);
    CHECK(n->post(bad, ping(1)).code() == errc::invalid_argument);
    CHECK(n->send(bad, ping(1), 1s).code() == errc::invalid_argument);
  }
  CHECK(n->find("nobody").code() == errc::not_found);
  CHECK(n->find("nobody@elsewhere").code() == errc::not_found);
  CHECK(n->dead_letters(dead_letter_reason::no_such_name) == 10);
}

TEST_CASE("a name is released when its actor stops and can be claimed again",
          "[runtime]") {
  quiet_node n;
  auto ref = n->spawn("orders", adder);
  REQUIRE(ref);
  CHECK(ref->bound());
  probe<down_notice> downs;
  REQUIRE(n->monitor("orders", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(n->stop("orders"));
  REQUIRE(downs.wait_for_count(1));
  CHECK_FALSE(ref->bound());
  CHECK(n->find("orders").code() == errc::not_found);
  auto again = n->spawn("orders", adder);
  REQUIRE(again);
  CHECK_FALSE(*again == *ref);
  auto sum = n->send<tpb::Sum>("orders", add(1, 2), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 3);
}

TEST_CASE("a name can be claimed again from the monitor of its last holder",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("phoenix", adder));
  probe<bool> respawned;
  REQUIRE(n->monitor("phoenix", [&](const down_notice&) {
    respawned.push(n->spawn("phoenix", adder).has_value());
  }));
  REQUIRE(n->stop("phoenix"));
  REQUIRE(respawned.wait_for_count(1));
  CHECK(respawned.items().front());
}

TEST_CASE("find resolves a held name and reports not_found for a free one",
          "[runtime]") {
  quiet_node n{"desk"};
  REQUIRE(n->spawn("orders", adder));
  auto found = n->find("orders");
  REQUIRE(found);
  CHECK(found->name() == "orders");
  CHECK(n->find("orders@desk"));
  CHECK(n->find("nobody").code() == errc::not_found);
  CHECK(n->find("orders@elsewhere").code() == errc::not_found);
  CHECK(n->stop("nobody").code() == errc::not_found);
}

TEST_CASE("a ref skips the lookup and follows its binding", "[runtime]") {
  quiet_node n;
  auto ref = n->spawn("orders", adder);
  REQUIRE(ref);
  auto sum = n->send<tpb::Sum>(*ref, add(20, 22), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 42);
  REQUIRE(n->stop(*ref));
  REQUIRE(eventually([&] { return !ref->bound(); }));
  // Another actor takes the name: the old ref does not reach it.
  REQUIRE(n->spawn("orders", adder));
  CHECK(n->send(*ref, add(1, 1), 5s).code() == errc::not_found);
}

TEST_CASE("names lists bound names matching a glob pattern, sorted",
          "[runtime]") {
  quiet_node n;
  for (auto name : {"shop.orders", "shop.stock", "billing", "shop.x1"})
    REQUIRE(n->spawn(name, adder));
  CHECK(n->names() == std::vector<std::string>{"billing", "shop.orders",
                                               "shop.stock", "shop.x1"});
  CHECK(n->names("shop.*")
        == std::vector<std::string>{"shop.orders", "shop.stock", "shop.x1"});
  CHECK(n->names("shop.x?") == std::vector<std::string>{"shop.x1"});
  CHECK(n->names("*o*s") == std::vector<std::string>{"shop.orders"});
  CHECK(n->names("nothing*").empty());
}

TEST_CASE("register_type knows linked types and refuses unknown ones",
          "[runtime]") {
  quiet_node n;
  auto type = n->register_type("courier_test.v1.Ping");
  REQUIRE(type);
  CHECK(*type == tpb::Ping::descriptor());
  CHECK(n->find_type("courier_test.v1.Ping"));
  auto unknown = n->register_type("courier_test.v1.NoSuchThing");
  REQUIRE_FALSE(unknown);
  CHECK(unknown.code() == errc::not_found);
  CHECK(n->register_type("not a type!").code() == errc::invalid_argument);
  CHECK(n->register_type("").code() == errc::invalid_argument);
  CHECK(n->find_type("courier_test.v1.Pong").code() == errc::not_found);
  CHECK(n->register_type<tpb::Pong>() == tpb::Pong::descriptor());
}

TEST_CASE("handled types are registered when an actor starts", "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("adder", adder));
  // The behavior is built on the actor's first run; a send waits for it.
  REQUIRE(n->send("adder", add(1, 1), 5s));
  CHECK(n->find_type("courier_test.v1.Add"));
  auto msg = n->new_message("courier_test.v1.Add");
  REQUIRE(msg);
  CHECK((*msg)->GetDescriptor() == tpb::Add::descriptor());
  CHECK(n->new_message("courier_test.v1.Stray").code() == errc::not_found);
}

TEST_CASE("a node on the sharing scheduler serves the same verbs",
          "[runtime]") {
  node_config config;
  config.join_directory = false;
  config.scheduler = scheduler_policy::sharing;
  auto n = node::start(config);
  REQUIRE(n);
  REQUIRE(n->spawn("adder", adder));
  auto sum = n->send<tpb::Sum>("adder", add(20, 22), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 42);
  auto roll = n->broadcast("*", ping(1), 5s);
  CHECK(roll.replied.size() == 1);
}

TEST_CASE("spawn from a plain thread returns once the actor's handled types "
          "are known, however slowly its behavior is made",
          "[runtime]") {
  quiet_node n;
  REQUIRE(n->spawn("late", [](context&) {
    std::this_thread::sleep_for(std::chrono::milliseconds{100}); // slow setup
    return behavior{[](const tpb::Stray&) {}};
  }));
  // Published with the node's record too: what the CLI reads to encode.
  CHECK(n->new_message("courier_test.v1.Stray"));
}

// The link protocol under injected faults: two nodes in this process, in one
// temporary directory, linked by the fault wrapper over the named pipe
// (support/fault_transport.hpp). Each fault yields its documented outcome,
// within a bound: never a hang, never a silent loss, never a crash.

#include <future>
#include <map>

#include "fault_transport.hpp"
#include "local_node.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

using clock_type = std::chrono::steady_clock;

/// A node whose only tier is "fault" (over the pipe), commanded by `plan`;
/// with `pipe_too`, the plain pipe follows it as a second tier, and the
/// fault tier ranks first.
struct faulty_node {
  faulty_node(const temp_dir& dir, std::string name, bool pipe_too = false)
    : here{dir, std::move(name), [&](node_config& config) {
             config.transports = {{"fault", fault_factory(pipe::factory(),
                                                          plan)}};
             if (pipe_too) {
               plan->rank(20); // above the pipe's 10
               config.transports.emplace_back("pipe", pipe::factory());
             }
           }} {
  }

  node* operator->() {
    return &*here.instance;
  }

  bool logged(const std::string& part) {
    return testing::logged(*here.lines, part);
  }

  std::shared_ptr<fault_plan> plan = std::make_shared<fault_plan>();
  local_node here;
};

/// A client and a server with an adder, linked over the fault tier (the
/// first send made the link).
struct linked_pair {
  explicit linked_pair(bool pipe_too = false)
    : server{dir, "server", pipe_too}, client{dir, "client", pipe_too} {
    REQUIRE(server->spawn("adder", adder));
    auto sum = client->send<tpb::Sum>("adder", add(1, 2), 5s);
    REQUIRE(sum);
    REQUIRE(client->routes().size() == 1);
    CHECK(client->routes()[0].tier == "fault");
  }

  temp_dir dir;
  faulty_node server;
  faulty_node client;
};

/// Spawns "recorder" on `at`: it answers every Ping, keeping its seq in the
/// probe returned.
std::shared_ptr<probe<std::int64_t>> spawn_recorder(node& at) {
  auto pings = std::make_shared<probe<std::int64_t>>();
  REQUIRE(at.spawn("recorder", [pings](context&) {
    return behavior{[pings](const tpb::Ping& ping) {
      pings->push(ping.seq());
      return tpb::Pong{};
    }};
  }));
  return pings;
}

/// Fails the client's next write with `why`, and checks that the send whose
/// write it was fails with `code` at once, not at its deadline, and that the
/// route serves the next send.
void check_failed_write(linked_pair& p, error why, errc code) {
  p.client.plan->fail_writes(1, std::move(why));
  auto start = std::chrono::steady_clock::now();
  auto failed = p.client->send("adder", add(1, 1), 10s);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(failed.code() == code);
  CHECK(p.client.plan->failed() == 1);
  auto sum = p.client->send<tpb::Sum>("adder", add(2, 3), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 5);
}

std::chrono::milliseconds since(clock_type::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
    clock_type::now() - start);
}

} // namespace

TEST_CASE("a request whose frame is dropped ends with deadline_exceeded at "
          "its deadline",
          "[faults][fault-tier][integration]") {
  linked_pair p;
  p.client.plan->drop_next(1);
  auto start = clock_type::now();
  auto lost = p.client->send("adder", add(2, 2), 300ms);
  auto took = since(start);
  CHECK(lost.code() == errc::deadline_exceeded);
  CHECK(p.client.plan->dropped() == 1);
  CHECK(took >= 300ms);
  CHECK(took < 5s);
  // Nothing else was lost: the link still serves.
  auto sum = p.client->send<tpb::Sum>("adder", add(3, 3), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 6);
}

TEST_CASE("a frame cut in the middle closes the link: pending requests fail "
          "with unavailable, monitors see node_down, and the half frame is "
          "never delivered",
          "[faults][fault-tier][integration]") {
  linked_pair p;
  auto parked = std::make_shared<probe<int>>();
  REQUIRE(p.server->spawn("parker", [parked](context& ctx) {
    auto held = std::make_shared<std::vector<responder>>();
    return behavior{[&ctx, held, parked](const tpb::Hold&) {
      held->push_back(ctx.take_reply());
      parked->push(1);
    }};
  }));
  auto pings = spawn_recorder(*p.server.here.instance);
  REQUIRE(p.client->spawn("watched", adder));
  // Each side watches an actor of the other.
  auto client_saw = std::make_shared<probe<down_notice>>();
  REQUIRE(p.client->monitor("parker", [client_saw](const down_notice& n) {
    client_saw->push(n);
  }));
  auto server_saw = std::make_shared<probe<down_notice>>();
  REQUIRE(p.server->monitor("watched", [server_saw](const down_notice& n) {
    server_saw->push(n);
  }));
  // A request left waiting over there; and a round trip, so that every
  // frame the monitors wrote has left before the cut is armed.
  auto pending = std::async(std::launch::async, [&] {
    return p.client->send("parker", tpb::Hold{}, 20s);
  });
  REQUIRE(parked->wait_for_count(1));
  REQUIRE(p.client->send("adder", add(0, 0), 5s));

  p.client.plan->cut_next();
  auto start = clock_type::now();
  // 64 KiB of text: the cut falls inside the payload.
  auto cut = p.client->send("recorder", ping(7, std::string(64u << 10, 'c')),
                            20s);
  CHECK(p.client.plan->cut() == 1);
  CHECK(cut.code() == errc::unavailable);
  REQUIRE(pending.wait_for(10s) == std::future_status::ready);
  CHECK(pending.get().code() == errc::unavailable);
  CHECK(since(start) < 10s); // at the loss, not at the deadlines

  REQUIRE(client_saw->wait_for_count(1));
  CHECK(client_saw->items()[0].name == "parker");
  CHECK(client_saw->items()[0].reason == down_reason::node_down);
  REQUIRE(server_saw->wait_for_count(1));
  CHECK(server_saw->items()[0].reason == down_reason::node_down);
  CHECK(p.server.logged("not an envelope")); // the half frame, refused

  // The server has seen the link go (its monitor fired), so whatever it
  // took from the half frame is in the recorder's mailbox by now: a Ping
  // sent in the server itself is handled after it.
  REQUIRE(p.server->send("recorder", ping(8), 5s));
  CHECK(pings->items() == std::vector<std::int64_t>{8});
  // One notice each, no more.
  CHECK(client_saw->size() == 1);
  CHECK(server_saw->size() == 1);
  // A new link serves the route again.
  auto sum = p.client->send<tpb::Sum>("adder", add(4, 4), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 8);
}

TEST_CASE("refused connects make a send fail with unavailable and say why",
          "[faults][fault-tier][integration]") {
  temp_dir dir;
  faulty_node server{dir, "server"};
  faulty_node client{dir, "client"};
  REQUIRE(server->spawn("adder", adder));
  client.plan->refuse_connects(true);
  auto start = clock_type::now();
  auto refused = client->send("adder", add(1, 1), 10s);
  CHECK(since(start) < 5s);
  CHECK(refused.code() == errc::unavailable);
  CHECK_THAT(refused.error().message(),
             Catch::Contains("refuses connects")
               && Catch::Contains("server"));
  CHECK(client.plan->refused() >= 1);
  CHECK(client->routes().empty());
  // Until the next try (a backoff of 50-100 ms after one failure), a send
  // fails at once and says when; then it goes through.
  client.plan->refuse_connects(false);
  auto soon = client->send("adder", add(1, 1), 5s);
  if (!soon) {
    CHECK(soon.code() == errc::unavailable);
    CHECK_THAT(soon.error().message(), Catch::Contains("next try in"));
  }
  std::shared_ptr<const tpb::Sum> sum;
  REQUIRE(eventually([&] {
    auto got = client->send<tpb::Sum>("adder", add(1, 1), 5s);
    if (got)
      sum = *got;
    return static_cast<bool>(got);
  }, 5s));
  CHECK(sum->value() == 2);
}

TEST_CASE("a route falls back to the next tier when the fault tier refuses "
          "connects, and its note says so",
          "[faults][fault-tier][integration]") {
  temp_dir dir;
  faulty_node first{dir, "first", true};
  faulty_node second{dir, "second", true};
  faulty_node client{dir, "client", true};
  REQUIRE(first->spawn("adder.1", adder));
  REQUIRE(second->spawn("adder.2", adder));
  // Ranked first, the fault tier takes the route while it connects...
  REQUIRE(client->send("adder.1", add(1, 1), 5s));
  // ...and once it refuses, the next route goes by the pipe.
  client.plan->refuse_connects(true);
  REQUIRE(client->send("adder.2", add(1, 1), 5s));
  std::map<std::string, route_info> routes;
  for (auto& r : client->routes())
    routes[r.peer] = r;
  REQUIRE(routes.size() == 2);
  CHECK(routes["first"].tier == "fault");
  CHECK(routes["second"].tier == "pipe");
  CHECK_THAT(routes["second"].note, Catch::Contains("fault failed")
                                      && Catch::Contains("refuses connects"));
  CHECK(client.logged("fault failed"));
}

TEST_CASE("a failed write makes a send fail with the write's error at once, "
          "and the link stays up",
          "[faults][fault-tier][integration]") {
  linked_pair p;
  check_failed_write(p,
                     error{errc::resource_exhausted, "the queue is full"},
                     errc::resource_exhausted);
  CHECK(p.client->routes().size() == 1);
}

TEST_CASE("a write failing with unavailable closes the link and fails the "
          "send at once with unavailable",
          "[faults][fault-tier][integration]") {
  linked_pair p;
  // The route links anew for the next send.
  check_failed_write(p, error{errc::unavailable, "the link broke"},
                     errc::unavailable);
}

TEST_CASE("a post whose write fails is counted as a dead letter, not lost "
          "silently",
          "[faults][fault-tier][integration]") {
  linked_pair p;
  auto before = p.client->dead_letters(dead_letter_reason::unreachable);
  p.client.plan->fail_writes(1);
  REQUIRE(p.client->post("adder", add(1, 1)));
  CHECK(eventually([&] {
    return p.client->dead_letters(dead_letter_reason::unreachable)
           == before + 1;
  }));
  CHECK(p.client.plan->failed() == 1);
}

TEST_CASE("a reply whose write fails reaches the requester as an error "
          "before its deadline",
          "[faults][fault-tier][integration]") {
  // link_core::write_answer: an answer the link refuses while it stays open
  // becomes an error answer (before, it was dropped and the requester
  // waited out its deadline).
  linked_pair p;
  p.server.plan->fail_writes(1);
  auto start = clock_type::now();
  auto reply = p.client->send("adder", add(1, 1), 3s);
  CHECK(since(start) < 2s);
  CHECK(reply.code() == errc::resource_exhausted);
}

TEST_CASE("delayed frames keep their order per sender and receiver, also "
          "while the delay changes",
          "[faults][fault-tier][integration]") {
  linked_pair p;
  REQUIRE(p.server->spawn("counter", order_counter));
  constexpr int count = 300;
  for (int i = 0; i < count; ++i) {
    // Longer and shorter delays in turn: a frame written later with a
    // shorter delay still waits for those before it.
    if (i % 50 == 0)
      p.client.plan->delay(std::chrono::milliseconds{(i / 50) % 2 ? 5 : 40});
    REQUIRE(p.client->post("counter", ping(i)));
  }
  p.client.plan->delay(0ms);
  auto sum = p.client->send<tpb::Sum>("counter", add(0, 0), 10s);
  REQUIRE(sum);
  CHECK((*sum)->value() == count * 1000000LL);
  // A delay is a delay: a round trip takes at least it.
  p.client.plan->delay(100ms);
  auto start = clock_type::now();
  REQUIRE(p.client->send("adder", add(1, 1), 5s));
  CHECK(since(start) >= 100ms);
}

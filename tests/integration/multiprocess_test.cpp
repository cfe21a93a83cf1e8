// Nodes in separate processes on one machine, talking over the named pipe.

#include <future>

#include <sys/stat.h>

#include "local_node.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

std::unique_ptr<child_process> start_node(const temp_dir& dir,
                                          const std::string& name,
                                          std::vector<std::string> actors) {
  return start_test_node(dir, name, std::move(actors));
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

} // namespace

TEST_CASE("a send reaches another process of this user over shared memory",
          "[shm][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"echo.b"});
  local_node here{dir, "here"};
  auto pong = here->send<tpb::Pong>("echo.b", ping(7), 5s);
  REQUIRE(pong);
  CHECK((*pong)->seq() == 7);
  CHECK((*pong)->from() == "peer/echo.b<-");
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].peer == "peer");
  CHECK(routes[0].tier == "shm");
  CHECK(routes[0].note == "same user, same machine");
  CHECK(routes[0].messages_out >= 1);
  CHECK(here->send<tpb::Pong>("echo.b@peer", ping(8), 5s));
}

TEST_CASE("without shared memory on both sides a route takes the named pipe "
          "and says why",
          "[pipe][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"--pipe-only", "echo.b"});
  local_node here{dir, "here"};
  REQUIRE(here->send<tpb::Pong>("echo.b", ping(7), 5s));
  auto routes = here->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].tier == "pipe");
  CHECK(routes[0].note
        == "same user; shm is not configured on both sides");
}

TEST_CASE("every error of the foundation crosses processes",
          "[pipe][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"echo.b", "sloth", "quitter"});
  local_node here{dir, "here"};
  CHECK(here->send("nobody", ping(1), 5s).code() == errc::not_found);
  CHECK(here->send("echo.b@elsewhere", ping(1), 5s).code() == errc::not_found);
  auto stray = here->send("echo.b", tpb::Stray{}, 5s);
  CHECK(stray.code() == errc::unimplemented);
  CHECK(stray.error().message().find("courier_test.v1.Stray")
        != std::string::npos);
  auto slow = here->send("sloth", tpb::Hold{}, 200ms);
  CHECK(slow.code() == errc::deadline_exceeded);
  auto pending = std::async(std::launch::async, [&] {
    return here->send("quitter", tpb::Hold{}, 10s);
  });
  // Quit only once the Hold is parked over there.
  REQUIRE(eventually([&] {
    auto parked = here->send<tpb::Pong>("quitter", ping(0), 5s);
    return parked && (*parked)->seq() == 1;
  }));
  REQUIRE(here->post("quitter", tpb::Quit{}));
  CHECK(pending.get().code() == errc::aborted);
}

TEST_CASE("an actor replies to a remote sender by its name",
          "[pipe][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"echo.b"});
  local_node here{dir, "here"};
  probe<std::string> answers;
  REQUIRE(here->spawn("asker", [&](context& ctx) {
    return behavior{[&](const tpb::Ping& p) {
      ctx.request("echo.b", p, 5s)
        .then([&](const tpb::Pong& pong) { answers.push(pong.from()); },
              [&](const error& e) { answers.push(e.to_string()); });
    }};
  }));
  REQUIRE(here->post("asker", ping(1)));
  REQUIRE(answers.wait_for_count(1));
  CHECK(answers.items().front() == "peer/echo.b<-asker@here");
}

TEST_CASE("posts to another process arrive once each and in order",
          "[pipe][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"counter"});
  local_node here{dir, "here"};
  constexpr int count = 5000;
  for (int i = 0; i < count; ++i)
    REQUIRE(here->post("counter", ping(i)));
  // The query travels behind the posts on the same link.
  std::int64_t seen = 0;
  REQUIRE(eventually([&] {
    auto sum = here->send<tpb::Sum>("counter", add(0, 0), 5s);
    seen = sum ? (*sum)->value() : -1;
    return seen >= count * 1000000LL;
  }));
  CHECK(seen == count * 1000000LL); // all arrived, none out of order
}

TEST_CASE("a poster faster than its route is told to wait, and what was "
          "accepted arrives in order, and one that may wait for room is held back",
          "[pipe][shm][integration]") {
  auto pipe_only = GENERATE(false, true);
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"counter"});
  // 1 MiB may wait for the route; 200 posts of 256 KiB come far faster
  // than any link writes them.
  local_node here{dir, "here", [&](node_config& config) {
                    config.limits.max_queued = 1u << 20;
                    if (pipe_only)
                      config.transports.pop_back();
                  }};
  REQUIRE(here->send("counter", add(0, 0), 5s)); // the route is up
  auto pad = std::string(256u << 10, 'w');
  int accepted = 0;
  int refused = 0;
  for (int i = 0; i < 200; ++i) {
    auto posted = here->post("counter", ping(accepted, pad));
    if (posted) {
      ++accepted;
      continue;
    }
    REQUIRE(posted.code() == errc::resource_exhausted);
    CHECK_THAT(posted.error().message(),
               Catch::Matchers::Contains("bytes waiting"));
    ++refused;
  }
  CHECK(refused > 0);
  std::int64_t seen = 0;
  REQUIRE(eventually([&] {
    auto sum = here->send<tpb::Sum>("counter", add(0, 0), 5s);
    seen = sum ? (*sum)->value() : -1;
    return seen >= accepted * 1000000LL;
  }));
  CHECK(seen == accepted * 1000000LL); // all accepted arrived, in order
  CHECK(here->dead_letters() == 0);
  // Once the route has drained, posts go again.
  REQUIRE(here->post("counter", ping(accepted, pad)));
  CHECK(here->routes().at(0).tier == (pipe_only ? "pipe" : "shm"));
  // A poster that may wait for room is held back instead of refused: 50 MiB
  // through the 1 MiB backlog, every post accepted, in order.
  post_options patient;
  patient.wait_for_room = 10s;
  const int total = accepted + 201;
  for (int i = accepted + 1; i < total; ++i)
    REQUIRE(here->post("counter", ping(i, pad), patient));
  REQUIRE(eventually([&] {
    auto sum = here->send<tpb::Sum>("counter", add(0, 0), 5s);
    seen = sum ? (*sum)->value() : -1;
    return seen >= total * 1000000LL;
  }));
  CHECK(seen == total * 1000000LL);
  CHECK(here->dead_letters() == 0);
}

TEST_CASE("a slow actor makes its node stop reading a fast poster's link "
          "instead of growing without bound, and loses nothing",
          "[pipe][shm][integration]") {
  auto pipe_only = GENERATE(false, true);
  temp_dir dir;
  // "gate" sits on its first message until the test opens it.
  std::promise<void> open;
  auto opened = open.get_future().share();
  std::atomic<std::int64_t> handled{0};
  std::atomic<std::int64_t> out_of_order{0};
  local_node here{dir, "here", [&](node_config& config) {
                    config.limits.max_queued = 4u << 20;
                    if (pipe_only)
                      config.transports.pop_back();
                  }};
  REQUIRE(here->spawn("gate", [&](context&) {
    return behavior{[&](const tpb::Ping& p) {
      opened.wait();
      if (p.seq() == 0)
        return; // the sender's first, which opened its route
      if (p.seq() != handled.load() + 1)
        ++out_of_order;
      ++handled;
    }};
  }));
  std::vector<std::string> args{"--flood-big", "gate"};
  if (pipe_only)
    args.insert(args.begin(), "--pipe-only");
  auto sender = start_test_node(dir, "sender", args);
  auto received = [&] {
    auto routes = here->routes();
    return routes.empty() ? std::uint64_t{0} : routes[0].messages_in;
  };
  // 64 KiB messages: 4 MiB is 64 of them. The link stops being read soon
  // after; what the kernel buffers, the ring holds and a read brings in
  // bounds the overshoot.
  REQUIRE(eventually([&] { return received() >= 64; }));
  auto until = std::chrono::steady_clock::now() + 300ms;
  std::uint64_t most = 0;
  while (std::chrono::steady_clock::now() < until) {
    most = std::max(most, received());
    std::this_thread::yield();
  }
  CHECK(most < 64 + 64);
  CHECK(handled.load() == 0);
  open.set_value();
  REQUIRE(eventually([&] { return handled.load() > std::int64_t(most) + 200; },
                     20s));
  sender.reset(); // stops the flood
  CHECK(out_of_order.load() == 0);
  CHECK(here->dead_letters() == 0);
}

TEST_CASE("names are unique across the processes of a machine",
          "[pipe][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"echo.b"});
  local_node here{dir, "here"};
  auto taken = here->spawn("echo.b", adder);
  REQUIRE_FALSE(taken);
  CHECK(taken.code() == errc::already_exists);
  CHECK(taken.error().message().find("peer") != std::string::npos);
  auto names = here->machine_names("echo.*");
  REQUIRE(names.size() == 1);
  CHECK(names[0].node == "peer");
  auto nodes = here->nodes();
  REQUIRE(nodes.size() == 2);
}

TEST_CASE("broadcast reaches the actors of every node on the machine",
          "[pipe][integration]") {
  temp_dir dir;
  auto b = start_node(dir, "node-b", {"echo.b"});
  auto c = start_node(dir, "node-c", {"echo.c", "sloth"});
  local_node here{dir, "here"};
  REQUIRE(here->spawn("echo.a", [](context&) { // no Ping handler: fails
    return behavior{[](const tpb::Add&) {}};
  }));
  auto result = here->broadcast("echo.*", ping(1), 2s);
  REQUIRE(result.replied.size() == 2);
  CHECK(result.replied[0].name == "echo.b");
  CHECK(result.replied[1].name == "echo.c");
  REQUIRE(result.failed.size() == 1);
  CHECK(result.failed[0].name == "echo.a");
  CHECK(result.failed[0].reason.code() == errc::unimplemented);
}

TEST_CASE("a broadcast whose remote target's link closes counts it dead, "
          "from a thread and from an actor",
          "[pipe][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"echo.b", "sloth"});
  local_node here{dir, "here"};
  REQUIRE(here->send("echo.b", ping(1), 5s)); // the link is up
  auto written = [&] {
    auto routes = here->routes();
    return routes.empty() ? std::uint64_t{0} : routes[0].messages_out;
  };
  auto before = written();
  probe<broadcast_result> from_actor;
  REQUIRE(here->spawn("caller", [&](context& ctx) {
    return behavior{[&](const tpb::Add&) {
      ctx.broadcast("sloth", ping(2), 10s)
        .then([&](broadcast_result result) { from_actor.push(result); });
    }};
  }));
  REQUIRE(here->post("caller", add(0, 0)));
  auto from_thread = std::async(std::launch::async, [&] {
    return here->broadcast("sloth", ping(3), 10s);
  });
  // Both requests are on the link, parked by the sloth, when it closes.
  REQUIRE(eventually([&] { return written() >= before + 2; }));
  peer->kill(SIGKILL);
  REQUIRE(from_actor.wait_for_count(1));
  REQUIRE(from_thread.wait_for(patience) == std::future_status::ready);
  auto in_thread = from_thread.get();
  auto in_actor = from_actor.items().front();
  for (auto* result : {&in_thread, &in_actor}) {
    CHECK(result->dead == std::vector<std::string>{"sloth"});
    CHECK(result->replied.empty());
    CHECK(result->failed.empty());
    CHECK(result->timed_out.empty());
  }
  REQUIRE(peer->wait_exit(5s));
}

TEST_CASE("a SIGKILLed node is reported down within 100 ms and its entries "
          "are reclaimed",
          "[pipe][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"echo.b"});
  local_node here{dir, "here"};
  REQUIRE(here->send("echo.b", ping(1), 5s)); // the link is up
  probe<std::pair<down_notice, std::chrono::steady_clock::time_point>> downs;
  REQUIRE(here->monitor("echo.b", [&](const down_notice& d) {
    downs.push({d, std::chrono::steady_clock::now()});
  }));
  auto pending = std::async(std::launch::async,
                            [&] { return here->send("echo.b", tpb::Hold{}, 10s); });
  auto killed_at = std::chrono::steady_clock::now();
  peer->kill(SIGKILL);
  REQUIRE(downs.wait_for_count(1));
  auto [notice, noticed_at] = downs.items().front();
  CHECK(notice.name == "echo.b");
  CHECK(notice.reason == down_reason::node_down);
  CHECK(noticed_at - killed_at < 100ms);
  // The request in flight (or the one queued behind the kill) fails fast.
  auto outcome = pending.get();
  CHECK_FALSE(outcome);
  REQUIRE(peer->wait_exit(5s));
  // Whoever looks next finds the dead node and reclaims its entries.
  auto after = here->send("echo.b", ping(1), 5s);
  INFO((after ? std::string{"a reply"} : after.error().message()));
  CHECK(after.code() == errc::not_found);
  CHECK(here->machine_names().size() == 1); // just here's system actor
  CHECK_FALSE(exists(dir.path() + "/sockets/peer.sock"));
  CHECK_FALSE(exists(dir.path() + "/nodes/peer.pb"));
  CHECK_FALSE(exists(dir.path() + "/names/echo.b"));
}

TEST_CASE("a remote monitor sees an actor that stops on purpose",
          "[pipe][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"quitter"});
  local_node here{dir, "here"};
  probe<down_notice> downs;
  REQUIRE(here->monitor("quitter", [&](const down_notice& d) { downs.push(d); }));
  REQUIRE(here->post("quitter", tpb::Quit{}));
  REQUIRE(downs.wait_for_count(1));
  CHECK(downs.items().front().reason == down_reason::stopped);
  REQUIRE(eventually(
    [&] { return here->send("quitter", ping(1), 5s).code() == errc::not_found; }));
}

TEST_CASE("a remote monitor cancelled with demonitor stays silent",
          "[pipe][integration]") {
  temp_dir dir;
  auto peer = start_node(dir, "peer", {"quitter", "echo.b"});
  local_node here{dir, "here"};
  probe<down_notice> cancelled;
  probe<down_notice> kept;
  auto dropped = here->monitor("quitter",
                               [&](const down_notice& d) { cancelled.push(d); });
  REQUIRE(dropped);
  REQUIRE(here->monitor("quitter", [&](const down_notice& d) { kept.push(d); }));
  here->demonitor(*dropped);
  REQUIRE(here->post("quitter", tpb::Quit{}));
  REQUIRE(kept.wait_for_count(1));
  CHECK(kept.items().front().reason == down_reason::stopped);
  REQUIRE(here->send("echo.b", ping(1), 5s)); // a round trip later
  CHECK(cancelled.items().empty());
}

TEST_CASE("a node leaves nothing behind in its directory when it exits",
          "[pipe][integration]") {
  temp_dir dir;
  {
    auto peer = start_node(dir, "peer", {"echo.b"});
    local_node here{dir, "here"};
    REQUIRE(here->send("echo.b", ping(1), 5s));
  }
  for (auto sub : {"/names", "/sockets", "/nodes"}) {
    std::vector<std::string> left;
    for (auto& entry : std::filesystem::directory_iterator(dir.path() + sub))
      left.push_back(entry.path().filename());
    CHECK(left.empty());
  }
}

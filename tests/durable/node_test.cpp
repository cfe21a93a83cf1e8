// Durable posts through nodes (courier::durable::delivery): to a name on
// the same node and on another node over a real tier, to a name that comes
// later, across a restart of either node on the same store directory, and
// the dead letters (poison, both timers) with their notices.

#include <atomic>
#include <map>
#include <mutex>

#include <catch2/catch.hpp>

#include "courier/durable/delivery.hpp"
#include "courier/v1/durable.pb.h"
#include "local_node.hpp"

namespace courier::testing {
namespace {

using namespace std::chrono_literals;
namespace tpb = courier_test::v1;

/// A node with durable delivery on `store_dir`.
struct durable_node {
  durable_node(const temp_dir& dir, const std::string& name,
               const std::string& store_dir,
               const std::function<void(durable::delivery_options&)>& adjust
               = {})
    : n(dir, name, [&](node_config& config) {
        durable::delivery_options o;
        o.store.directory = store_dir;
        o.retry_min = 5ms;
        o.retry_max = 100ms;
        o.forward_timeout = 2s;
        if (adjust)
          adjust(o);
        config.durable = durable::delivery(o);
      }) {}

  node* operator->() {
    return n.operator->();
  }

  local_node n;
};

/// What an actor saw: the sequence numbers of the Pings it handled.
struct handled_log {
  std::mutex mu;
  std::vector<std::int64_t> seqs;
  std::size_t size() {
    std::lock_guard guard{mu};
    return seqs.size();
  }
  std::vector<std::int64_t> all() {
    std::lock_guard guard{mu};
    return seqs;
  }
};

behavior recorder(std::shared_ptr<handled_log> log) {
  return behavior{[log](const tpb::Ping& ping) {
    std::lock_guard guard{log->mu};
    log->seqs.push_back(ping.seq());
  }};
}

std::vector<std::int64_t> upto(std::int64_t n) {
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < n; ++i)
    out.push_back(i);
  return out;
}

/// Notices that reached an actor, by kind.
struct notice_log {
  probe<v1::DurableNotice> notices;
  std::size_t count(v1::DurableNotice::Kind kind) {
    std::size_t n = 0;
    for (const auto& x : notices.items())
      n += x.kind() == kind;
    return n;
  }
};

} // namespace

TEST_CASE("a durable post to a name of the same node is handled once, in "
          "order, and acknowledged with notices",
          "[durable][node]") {
  temp_dir dir;
  temp_dir store;
  durable_node a{dir, "alpha", store.path()};
  auto log = std::make_shared<handled_log>();
  auto notices = std::make_shared<notice_log>();
  REQUIRE(a->spawn("billing", [log](context&) { return recorder(log); }));
  REQUIRE(a->spawn("admin", [notices](context&) {
    return behavior{[notices](const v1::DurableNotice& n) {
      notices->notices.push(n);
    }};
  }));
  std::vector<std::uint64_t> ids;
  for (int i = 0; i < 200; ++i) {
    post_options o;
    o.ack_to = i < 3 ? "admin" : "";
    auto id = a->post_durable("billing", ping(i), o);
    REQUIRE(id);
    ids.push_back(*id);
  }
  // The other spelling, from an actor's point of view the same.
  post_options o;
  o.durable = true;
  REQUIRE(a->post("billing", ping(200), o));
  bool all = eventually([&] { return log->size() >= 201; });
  for (const auto& line : a.n.lines->items())
    UNSCOPED_INFO(line);
  INFO("handled " << log->size());
  {
    auto seen = log->all();
    std::set<std::int64_t> got(seen.begin(), seen.end());
    for (int i = 0; i <= 200; ++i)
      if (!got.count(i))
        UNSCOPED_INFO("missing " << i);
    v1::DurableAdminRequest r;
    r.set_op(v1::DurableAdminRequest::OP_QUEUES);
    auto q = a->send("courier.durable.alpha", r, 5s);
    if (q)
      UNSCOPED_INFO((*q)->DebugString());
  }
  REQUIRE(all);
  CHECK(log->all() == upto(201));
  CHECK(std::set<std::uint64_t>(ids.begin(), ids.end()).size() == ids.size());
  REQUIRE(eventually([&] {
    return notices->count(v1::DurableNotice::KIND_HANDLED) == 3
           && notices->count(v1::DurableNotice::KIND_REACHED_QUEUE) == 3;
  }));
  for (const auto& n : notices->notices.items()) {
    CHECK(n.target() == "billing");
    CHECK(n.sender_node() == "alpha");
  }
  // Nothing stays behind once everything is handled.
  auto admin = a->send("courier.durable.alpha",
                       [] {
                         v1::DurableAdminRequest r;
                         r.set_op(v1::DurableAdminRequest::OP_QUEUES);
                         return r;
                       }(),
                       5s);
  REQUIRE(admin);
  REQUIRE(eventually([&] {
    auto q = a->send("courier.durable.alpha",
                     [] {
                       v1::DurableAdminRequest r;
                       r.set_op(v1::DurableAdminRequest::OP_QUEUES);
                       return r;
                     }(),
                     5s);
    if (!q)
      return false;
    for (const auto& info :
         dynamic_cast<const v1::DurableAdminReply&>(**q).queues())
      if (info.depth() != 0)
        return false;
    return true;
  }));
  std::this_thread::sleep_for(50ms); // a window for a wrong redelivery
  CHECK(log->size() == 201);
}

TEST_CASE("a durable post without a store on the node is refused",
          "[durable][node]") {
  temp_dir dir;
  local_node a{dir, "alpha"};
  auto r = a->post_durable("billing", ping(1));
  REQUIRE_FALSE(r);
  CHECK(r.code() == errc::failed_precondition);
}

TEST_CASE("durable posts to another node survive its absence, a restart "
          "of the sender and one of the receiver",
          "[durable][node]") {
  temp_dir dir;
  temp_dir sender_store;
  temp_dir receiver_store;
  auto log = std::make_shared<handled_log>();
  {
    durable_node a{dir, "alpha", sender_store.path()};
    // Nobody holds "billing" yet: the posts are kept.
    for (int i = 0; i < 50; ++i)
      REQUIRE(a->post_durable("billing", ping(i)));
  } // the sender stops with everything in its outgoing queue
  durable_node a{dir, "alpha", sender_store.path()};
  for (int i = 50; i < 100; ++i)
    REQUIRE(a->post_durable("billing", ping(i)));
  {
    durable_node b{dir, "beta", receiver_store.path()};
    REQUIRE(b->spawn("billing", [log](context&) { return recorder(log); }));
    REQUIRE(eventually([&] { return log->size() >= 100; }, 20s));
    for (int i = 100; i < 150; ++i)
      REQUIRE(a->post_durable("billing", ping(i)));
    REQUIRE(eventually([&] { return log->size() >= 150; }, 20s));
  }
  // The receiver is gone: posts wait in alpha's queue until it is back.
  for (int i = 150; i < 200; ++i)
    REQUIRE(a->post_durable("billing", ping(i)));
  durable_node b{dir, "beta", receiver_store.path()};
  REQUIRE(b->spawn("billing", [log](context&) { return recorder(log); }));
  REQUIRE(eventually([&] { return log->size() >= 200; }, 20s));
  std::this_thread::sleep_for(100ms); // a window for a wrong redelivery
  CHECK(log->all() == upto(200));
}

TEST_CASE("a durable message that fails its handler max_attempts times is "
          "a dead letter with a notice, and the ones behind it go on",
          "[durable][node]") {
  temp_dir dir;
  temp_dir store;
  durable_node a{dir, "alpha", store.path(),
                 [](durable::delivery_options& o) {
                   o.store.max_attempts = 3;
                 }};
  auto log = std::make_shared<handled_log>();
  auto tries = std::make_shared<std::atomic<int>>(0);
  auto notices = std::make_shared<notice_log>();
  REQUIRE(a->spawn("billing", [log, tries](context&) {
    return behavior{[log, tries](const tpb::Ping& p) -> expected<void> {
      if (p.seq() == 1) {
        ++*tries;
        return error{errc::invalid_argument, "order 1 is malformed"};
      }
      std::lock_guard guard{log->mu};
      log->seqs.push_back(p.seq());
      return {};
    }};
  }));
  REQUIRE(a->spawn("admin", [notices](context&) {
    return behavior{[notices](const v1::DurableNotice& n) {
      notices->notices.push(n);
    }};
  }));
  post_options o;
  o.ack_to = "admin";
  for (int i = 0; i < 3; ++i)
    REQUIRE(a->post_durable("billing", ping(i), o));
  REQUIRE(eventually([&] { return log->size() >= 2; }));
  CHECK(log->all() == std::vector<std::int64_t>{0, 2});
  REQUIRE(eventually([&] {
    return notices->count(v1::DurableNotice::KIND_DEAD_LETTER) == 1;
  }));
  CHECK(tries->load() == 3);
  for (const auto& n : notices->notices.items())
    if (n.kind() == v1::DurableNotice::KIND_DEAD_LETTER) {
      CHECK(n.reason() == "poison");
      CHECK(n.attempts() == 3);
      CHECK_THAT(n.detail(), Catch::Contains("order 1 is malformed"));
    }
  // The dead letter is listed and can be replayed (and fails again).
  v1::DurableAdminRequest list;
  list.set_op(v1::DurableAdminRequest::OP_DEAD_LETTERS);
  auto dead = a->send("courier.durable.alpha", list, 5s);
  REQUIRE(dead);
  const auto& reply = dynamic_cast<const v1::DurableAdminReply&>(**dead);
  REQUIRE(reply.messages_size() == 1);
  CHECK(reply.messages(0).reason() == "poison");
  CHECK(reply.messages(0).item().target() == "billing");
  v1::DurableAdminRequest replay;
  replay.set_op(v1::DurableAdminRequest::OP_REPLAY);
  replay.set_id(reply.messages(0).id());
  REQUIRE(a->send("courier.durable.alpha", replay, 5s));
  REQUIRE(eventually([&] { return tries->load() == 6; }));
}

TEST_CASE("durable timers expire messages into the dead letters of the node "
          "where they are, with their reason",
          "[durable][node]") {
  temp_dir dir;
  temp_dir store;
  durable_node a{dir, "alpha", store.path()};
  auto notices = std::make_shared<notice_log>();
  REQUIRE(a->spawn("admin", [notices](context&) {
    return behavior{[notices](const v1::DurableNotice& n) {
      notices->notices.push(n);
    }};
  }));
  post_options reach;
  reach.ack_to = "admin";
  reach.time_to_reach_queue = 100ms; // nobody holds "nobody"
  REQUIRE(a->post_durable("nobody", ping(1), reach));
  // A name that is held but whose handler is slow to come: the receive
  // timer runs out while the message waits in its incoming queue.
  auto gate = std::make_shared<std::atomic<bool>>(false);
  REQUIRE(a->spawn("slow", [gate](context&) {
    return behavior{[gate](const tpb::Ping&) -> expected<void> {
      if (!gate->load())
        return error{errc::unavailable, "not yet"};
      return {};
    }};
  }));
  post_options receive;
  receive.ack_to = "admin";
  receive.time_to_be_received = 300ms;
  REQUIRE(a->post_durable("slow", ping(2), receive));
  REQUIRE(eventually([&] {
    return notices->count(v1::DurableNotice::KIND_DEAD_LETTER) == 2;
  }));
  std::map<std::string, std::string> reasons;
  for (const auto& n : notices->notices.items())
    if (n.kind() == v1::DurableNotice::KIND_DEAD_LETTER)
      reasons[n.target()] = n.reason();
  CHECK(reasons["nobody"] == "time_to_reach_queue");
  CHECK(reasons["slow"] == "time_to_be_received");
}

TEST_CASE("a durable post over the queue's quota fails at once with "
          "resource_exhausted",
          "[durable][node]") {
  temp_dir dir;
  temp_dir store;
  durable_node a{dir, "alpha", store.path(),
                 [](durable::delivery_options& o) {
                   o.store.queue_quota = {10, 1u << 20};
                 }};
  int stored = 0;
  expected<std::uint64_t> last{0};
  for (int i = 0; i < 20 && last; ++i) {
    last = a->post_durable("nobody", ping(i));
    stored += last ? 1 : 0;
  }
  REQUIRE_FALSE(last);
  CHECK(last.code() == errc::resource_exhausted);
  CHECK(stored == 10);
}

} // namespace courier::testing

namespace courier::testing {

TEST_CASE("a node's metrics show its durable queues and dead letters",
          "[durable][node][metrics]") {
  temp_dir dir;
  temp_dir store;
  durable_node a{dir, "alpha", store.path(),
                 [](durable::delivery_options& o) {
                   o.store.max_attempts = 1;
                 }};
  REQUIRE(a->spawn("billing", [](context&) {
    return behavior{[](const tpb::Ping&) -> expected<void> {
      return error{errc::invalid_argument, "refused"};
    }};
  }));
  for (int i = 0; i < 5; ++i)
    REQUIRE(a->post_durable("nobody", ping(i)));
  REQUIRE(a->post_durable("billing", ping(9)));
  REQUIRE(eventually([&] { return a->metrics().durable_dead_letters == 1; }));
  auto m = a->metrics();
  bool seen = false;
  for (const auto& q : m.durable_queues)
    if (q.queue == "out:nobody") {
      seen = true;
      CHECK(q.depth == 5);
      CHECK(q.bytes > 0);
      CHECK(q.oldest_age_seconds >= 0);
    }
  CHECK(seen);
  auto text = to_prometheus(m);
  CHECK_THAT(text, Catch::Contains("courier_durable_queue_depth{node=\"alpha\","
                                   "queue=\"out:nobody\"} 5"));
  CHECK_THAT(text, Catch::Contains("courier_durable_dead_letters{node=\"alpha\"} 1"));
}

} // namespace courier::testing

namespace courier::testing {

TEST_CASE("an actor posts durably from its handler, as a plain thread does",
          "[durable][node]") {
  temp_dir dir;
  temp_dir store;
  durable_node a{dir, "alpha", store.path()};
  auto log = std::make_shared<handled_log>();
  REQUIRE(a->spawn("billing", [log](context&) { return recorder(log); }));
  // The front desk forwards every order durably, from its own handler.
  REQUIRE(a->spawn("desk", [](context& ctx) {
    return behavior{[&ctx](const tpb::Ping& p) -> expected<void> {
      post_options o;
      o.durable = true;
      return ctx.post("billing", p, o);
    }};
  }));
  for (int i = 0; i < 50; ++i)
    REQUIRE(a->post("desk", ping(i)));
  REQUIRE(eventually([&] { return log->size() >= 50; }));
  CHECK(log->all() == upto(50));
}

} // namespace courier::testing

namespace courier::testing {

TEST_CASE("a durable message's handler continues the trace of its post",
          "[durable][node][trace]") {
  temp_dir dir;
  temp_dir store;
  durable_node a{dir, "alpha", store.path()};
  auto seen = std::make_shared<probe<std::string>>();
  REQUIRE(a->spawn("billing", [seen](context& ctx) {
    return behavior{[seen, &ctx](const tpb::Ping&) {
      seen->push(ctx.trace_id());
    }};
  }));
  auto parent = trace_context::start();
  {
    trace_scope scope{parent};
    REQUIRE(a->post_durable("billing", ping(1)));
  }
  REQUIRE(a->post_durable("billing", ping(2))); // no trace asked
  REQUIRE(seen->wait_for_count(2));
  auto ids = seen->items();
  CHECK(ids[0] == parent.trace_id_hex());
  CHECK(ids[1].empty());
}

} // namespace courier::testing

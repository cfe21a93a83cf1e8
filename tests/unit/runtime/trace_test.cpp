// Traces in one process (courier/trace.hpp): a letter carries its trace to
// the handler, what a handler sends continues it, plain threads start one
// only when asked, a broadcast's requests share one, a trace_scope wins.

#include <map>
#include <mutex>

#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

/// "relay" asks "leaf" and answers with what leaf saw; both report the
/// trace they handled as "<trace id> <span id>".
struct traced_pair {
  explicit traced_pair(bool trace_on)
    : n{"traced", [trace_on](node_config& c) { c.trace = trace_on; }} {
    REQUIRE(n->spawn("leaf", [this](context&) {
      return behavior{[this](const tpb::Ping&, context& ctx) {
        note("leaf", ctx);
        tpb::Pong out;
        out.set_from(ctx.trace_id());
        return out;
      }};
    }));
    REQUIRE(n->spawn("relay", [this](context&) {
      return behavior{[this](const tpb::Ping& p, context& ctx) {
        note("relay", ctx);
        auto answer = std::make_shared<responder>(ctx.take_reply());
        ctx.request("leaf", p, deadline{5s})
          .then([answer](const message& m) { answer->deliver(m); },
                [answer](const error& e) { answer->deliver(e); });
      }};
    }));
  }

  void note(const std::string& who, context& ctx) {
    std::lock_guard guard{mu};
    seen[who] = ctx.trace();
  }

  trace_context of(const std::string& who) {
    std::lock_guard guard{mu};
    return seen[who];
  }

  // Declared before the node, which stops first.
  std::mutex mu;
  std::map<std::string, trace_context> seen;
  quiet_node n;
};

} // namespace

TEST_CASE("a handler's request continues its trace with a new span",
          "[unit][trace]") {
  traced_pair p{true};
  auto reply = p.n->send("relay", tpb::Ping{}, deadline{5s});
  REQUIRE(reply);
  auto relay = p.of("relay");
  auto leaf = p.of("leaf");
  REQUIRE(relay.valid());
  CHECK(leaf.trace_id == relay.trace_id);
  CHECK(leaf.span_id != relay.span_id);
  CHECK(leaf.flags == 1);
  // Each call from the plain thread starts a trace of its own.
  REQUIRE(p.n->send("relay", tpb::Ping{}, deadline{5s}));
  CHECK(p.of("relay").trace_id != relay.trace_id);
}

TEST_CASE("untraced unless asked: no trace from a plain thread, none "
          "invented by handlers",
          "[unit][trace]") {
  traced_pair p{false};
  REQUIRE(p.n->send("relay", tpb::Ping{}, deadline{5s}));
  CHECK_FALSE(p.of("relay").valid());
  CHECK_FALSE(p.of("leaf").valid());
  CHECK(p.n->post("leaf", tpb::Ping{}));
}

TEST_CASE("a trace_scope makes a plain thread's calls continue its trace",
          "[unit][trace]") {
  traced_pair p{false};
  auto parent = trace_context::parse(
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  REQUIRE(parent);
  {
    trace_scope scope{*parent};
    REQUIRE(p.n->send("relay", tpb::Ping{}, deadline{5s}));
  }
  CHECK(p.of("relay").trace_id_hex() == "0af7651916cd43dd8448eb211c80319c");
  CHECK(p.of("relay").span_id != parent->span_id);
  CHECK(p.of("leaf").trace_id == parent->trace_id);
  // The scope is gone: untraced again.
  REQUIRE(p.n->send("relay", tpb::Ping{}, deadline{5s}));
  CHECK_FALSE(p.of("relay").valid());
}

TEST_CASE("a broadcast's requests share one trace", "[unit][trace]") {
  std::mutex mu;
  std::vector<trace_context> seen;
  quiet_node n{"caster", [](node_config& c) { c.trace = true; }};
  for (auto name : {"b.1", "b.2", "b.3"})
    REQUIRE(n->spawn(name, [&](context&) {
      return behavior{[&](const tpb::Ping&, context& ctx) {
        std::lock_guard guard{mu};
        seen.push_back(ctx.trace());
        return tpb::Pong{};
      }};
    }));
  auto result = n->broadcast("b.*", tpb::Ping{}, deadline{5s});
  REQUIRE(result.replied.size() == 3);
  std::lock_guard guard{mu};
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].valid());
  CHECK(seen[1].trace_id == seen[0].trace_id);
  CHECK(seen[2].trace_id == seen[0].trace_id);
  CHECK(seen[1].span_id != seen[0].span_id);
}

#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

TEST_CASE("dead letters are counted by reason and reported to the hook",
          "[runtime]") {
  quiet_node n;
  probe<dead_letter> letters;
  n->on_dead_letter([&](const dead_letter& d) { letters.push(d); });
  REQUIRE(n->spawn("adder", adder));

  SECTION("no such name") {
    CHECK_FALSE(n->post("nobody", ping(1)));
    REQUIRE(letters.wait_for_count(1));
    CHECK(n->dead_letters(dead_letter_reason::no_such_name) == 1);
    auto d = letters.items().front();
    CHECK(d.target == "nobody");
    CHECK(d.type_name == "courier_test.v1.Ping");
    CHECK(d.sender.empty());
  }
  SECTION("unhandled type") {
    REQUIRE(n->post("adder", tpb::Stray{}));
    REQUIRE(letters.wait_for_count(1));
    CHECK(n->dead_letters(dead_letter_reason::unhandled_type) == 1);
    CHECK(letters.items().front().target == "adder");
  }
  SECTION("expired before it was handled") {
    post_options options;
    options.expires = deadline::clock::now() - 1ms;
    REQUIRE(n->post("adder", add(1, 1), options));
    REQUIRE(letters.wait_for_count(1));
    CHECK(n->dead_letters(dead_letter_reason::expired) == 1);
  }
  SECTION("still queued when the actor stopped") {
    probe<bool> entered;
    std::promise<void> release;
    auto gate = release.get_future().share();
    REQUIRE(n->spawn("gated", [&, gate](context& ctx) {
      return behavior{
        [&, gate](const tpb::Hold&) {
          entered.push(true);
          gate.wait(); // holds the actor so that its mailbox fills up
          ctx.stop();
        },
        [](const tpb::Ping&) {},
      };
    }));
    REQUIRE(n->post("gated", tpb::Hold{}));
    REQUIRE(entered.wait_for_count(1));
    for (int i = 0; i < 5; ++i)
      REQUIRE(n->post("gated", ping(i)));
    release.set_value();
    REQUIRE(letters.wait_for_count(5));
    CHECK(n->dead_letters(dead_letter_reason::actor_stopped) == 5);
    for (auto& d : letters.items())
      CHECK(d.target == "gated");
  }
}

TEST_CASE("dead letters from an actor name their sender", "[runtime]") {
  quiet_node n;
  probe<dead_letter> letters;
  n->on_dead_letter([&](const dead_letter& d) { letters.push(d); });
  REQUIRE(n->spawn("lost", [](context& ctx) {
    return behavior{[&ctx](const tpb::Ping&) {
      return ctx.post("nowhere", tpb::Pong{});
    }};
  }));
  auto reply = n->send("lost", ping(1), 5s);
  CHECK(reply.code() == errc::not_found); // the handler returned the error
  REQUIRE(letters.wait_for_count(1));
  CHECK(letters.items().front().sender == "lost");
  CHECK(letters.items().front().target == "nowhere");
  CHECK(n->dead_letters() == 1);
}

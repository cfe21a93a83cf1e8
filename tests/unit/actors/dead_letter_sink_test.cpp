#include "courier/actors/dead_letter_sink.hpp"
#include "courier/v1/control.pb.h"
#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;

TEST_CASE("the dead-letter sink reports counts and recent letters by message",
          "[actors]") {
  quiet_node n;
  actors::dead_letter_sink_options options;
  options.capacity = 3;
  auto sink = actors::spawn_dead_letter_sink(*n, options);
  REQUIRE(sink);
  REQUIRE(n->spawn("adder", adder));
  for (int i = 0; i < 4; ++i)
    CHECK_FALSE(n->post("nobody" + std::to_string(i), ping(i)));
  REQUIRE(n->post("adder", tpb::Stray{}));
  courier::v1::DeadLetterQuery query;
  query.set_recent(10);
  // Dead letters reach the sink as posts; ask until all five have arrived.
  std::shared_ptr<const courier::v1::DeadLetterReport> report;
  REQUIRE(eventually([&] {
    auto r = n->send<courier::v1::DeadLetterReport>(options.name, query, 5s);
    if (!r)
      return false;
    report = *r;
    return report->counts(0) + report->counts(2) == 5;
  }));
  CHECK(report->counts(0) == 4); // no_such_name
  CHECK(report->counts(2) == 1); // unhandled_type
  REQUIRE(report->recent_size() == 3);
  CHECK(report->dropped() == 2);
  CHECK(report->recent(2).target() == "adder");
  CHECK(report->recent(2).type_name() == "courier_test.v1.Stray");
}

TEST_CASE("a stopped dead-letter sink does not feed on its own dead letters",
          "[actors]") {
  quiet_node n;
  auto sink = actors::spawn_dead_letter_sink(*n);
  REQUIRE(sink);
  REQUIRE(n->stop(*sink));
  REQUIRE(eventually([&] { return !sink->bound(); }));
  auto before = n->dead_letters();
  CHECK_FALSE(n->post("nobody", ping(1)));
  // One for "nobody", one for the report the hook tried to post to the sink.
  CHECK(n->dead_letters() == before + 2);
}

TEST_CASE("a dead-letter sink needs room", "[actors]") {
  quiet_node n;
  actors::dead_letter_sink_options options;
  options.capacity = 0;
  CHECK(actors::spawn_dead_letter_sink(*n, options).code()
        == errc::invalid_argument);
}

// A letter (runtime/src/letter.hpp) reports itself as a dead letter once if
// it dies unconsumed; its copies and moved-from husks never do.

#include "node_impl.hpp"
#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;
using courier::detail::letter;
using courier::detail::letter_kind;

TEST_CASE("a letter dropped unconsumed reports itself exactly once, and a "
          "copy never",
          "[runtime]") {
  node_config config;
  config.join_directory = false;
  detail::node_impl office{config, nullptr, {}};
  auto stopped
    = [&] { return office.dead_letters(dead_letter_reason::actor_stopped); };
  auto make = [&](std::int64_t seq) {
    return letter{letter_kind::post, make_message(ping(seq)), nullptr,
                  nullptr,           deadline::never(),       &office};
  };
  {
    auto original = make(1);
    letter copy{original};
    CHECK(copy.payload == original.payload);
    letter moved{std::move(original)};
    letter assigned;
    assigned = std::move(moved);
  }
  CHECK(stopped() == 1);
  {
    auto handled = make(2);
    letter copy{handled};
    handled.consume();
  }
  CHECK(stopped() == 1);
  {
    auto replaced = make(3);
    auto other = make(4);
    replaced = std::move(other); // the letter it held reports now
    CHECK(stopped() == 2);
  }
  CHECK(stopped() == 3);
}

#include "courier/actors/dead_letter_sink.hpp"

#include <chrono>
#include <deque>

#include "courier/node.hpp"
#include "courier/v1/control.pb.h"

namespace courier::actors {

namespace {

static_assert(courier::v1::DEAD_LETTER_MALFORMED + 1
                == static_cast<int>(dead_letter_reason_count),
              "control.proto's DeadLetterReason must mirror dead_letter_reason");

struct sink_state {
  std::size_t capacity;
  std::deque<courier::v1::DeadLetter> recent;
  std::array<std::uint64_t, dead_letter_reason_count> counts{};
  std::uint64_t dropped = 0;
};

behavior sink_behavior(std::size_t capacity) {
  auto state = std::make_shared<sink_state>();
  state->capacity = capacity;
  return {
    [state](const courier::v1::DeadLetter& letter) {
      auto reason = static_cast<std::size_t>(letter.reason());
      if (reason < state->counts.size())
        ++state->counts[reason];
      state->recent.push_back(letter);
      if (state->recent.size() > state->capacity) {
        state->recent.pop_front();
        ++state->dropped;
      }
    },
    [state](const courier::v1::DeadLetterQuery& query) {
      courier::v1::DeadLetterReport report;
      for (auto count : state->counts)
        report.add_counts(count);
      auto wanted = std::min<std::size_t>(query.recent(), state->recent.size());
      for (auto i = state->recent.size() - wanted; i < state->recent.size(); ++i)
        *report.add_recent() = state->recent[i];
      report.set_dropped(state->dropped);
      return report;
    },
  };
}

} // namespace

expected<actor_ref> spawn_dead_letter_sink(node& target,
                                           dead_letter_sink_options options) {
  if (options.capacity == 0)
    return error{errc::invalid_argument, "a dead-letter sink needs capacity"};
  auto capacity = options.capacity;
  auto sink = target.spawn(
    options.name, [capacity](context&) { return sink_behavior(capacity); });
  if (!sink)
    return sink;
  target.on_dead_letter([&target, ref = *sink](const dead_letter& d) {
    // Posting can itself make a dead letter (the sink stopped); that one
    // must not come back here.
    thread_local bool reporting = false;
    if (reporting)
      return;
    reporting = true;
    courier::v1::DeadLetter msg;
    msg.set_reason(static_cast<courier::v1::DeadLetterReason>(d.reason));
    msg.set_target(d.target);
    msg.set_type_name(d.type_name);
    msg.set_sender(d.sender);
    msg.set_noticed_unix_ns(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::system_clock::now().time_since_epoch())
        .count());
    // A failed post is counted as a dead letter of its own; nothing else to do.
    (void)target.post(ref, std::move(msg));
    reporting = false;
  });
  return sink;
}

} // namespace courier::actors

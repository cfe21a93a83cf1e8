#pragma once

// The CAF actor behind every Courier actor: it owns the user's behavior and
// context, dispatches letters to typed handlers and turns outcomes into
// replies.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/event_based_actor.hpp>

#include "courier/context.hpp"
#include "node_impl.hpp"
#include "verbs.hpp"

namespace courier::detail {

class shell : public caf::event_based_actor {
public:
  shell(caf::actor_config& cfg, std::shared_ptr<name_slot> slot);

  caf::behavior make_behavior() override;

  void on_exit() override;

  /// The shell whose code runs on this thread, or nullptr outside actors.
  static shell* current() noexcept;

  // -- used by context and its helpers ----------------------------------------

  node_impl& owner() noexcept {
    return slot_->owner;
  }

  const std::shared_ptr<name_slot>& slot() const noexcept {
    return slot_;
  }

  const std::string& current_sender() const noexcept;

  const trace_context& current_trace() const noexcept {
    static const trace_context none;
    return trace_ != nullptr ? *trace_ : none;
  }

  // (Named *_to and so on: CAF's own send, request and monitor must stay
  // visible in this class.)

  expected<void> post_to(destination to, message msg, post_options opts);

  /// Sends a request; `on_outcome` runs inside this actor exactly once.
  void request_to(destination to, message msg, deadline until,
                  reply_callback on_outcome);

  void broadcast_to(std::string_view pattern, message msg, deadline until,
                    std::function<void(broadcast_result)> on_done);

  responder take_reply();

  expected<monitor_handle> watch(destination to, monitor_fn on_down);

  /// Runs `fn` inside this actor, after the current message.
  void defer(std::function<void()> fn);

  void fail_with(std::string reason);

private:
  void dispatch(letter& msg);

  /// Runs user code; an exception fails the actor and its text is returned.
  /// `what` names the code for the failure text, built only on failure.
  template <class Describe, class F>
  std::optional<std::string> guarded(Describe&& what, F&& fn);

  /// Where the answer to `msg`, the request being handled, goes.
  reply_path reply_path_for(const letter& msg);

  void answer(reply_path path, expected<message> outcome);

  /// This actor as the caller of a verb.
  verb_caller caller() noexcept {
    return verb_caller{slot_, routes_, this, trace_};
  }

  /// Waits, without blocking, for the answer to a request the verbs
  /// started: `on_outcome` runs inside this actor exactly once, with the
  /// answer, the error that stopped the request, or deadline_exceeded.
  void await_answer(expected<started_request> started, deadline until,
                    reply_callback on_outcome);

  std::shared_ptr<name_slot> slot_;
  courier::context ctx_;
  behavior behavior_;
  letter* current_ = nullptr;
  // The trace of the message being handled, or of the request whose
  // continuation runs (in its letter, or its outcome); null otherwise.
  const trace_context* trace_ = nullptr;
  bool reply_taken_ = false;
  // The responder taken for the current request, held while its handler
  // runs so that a throw answers `internal` before unwinding drops it.
  std::shared_ptr<responder_state> current_responder_;
  std::vector<std::weak_ptr<responder_state>> open_responders_;
  // The names this actor talked to lately.
  route_cache routes_{8};
};

} // namespace courier::detail

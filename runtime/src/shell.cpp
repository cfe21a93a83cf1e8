#include "shell.hpp"

#include <algorithm>
#include <utility>

#include <google/protobuf/empty.pb.h>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>

namespace courier::detail {

namespace {

/// The reply to a request whose handler returned void.
const message& empty_reply() {
  static const message instance = std::make_shared<const google::protobuf::Empty>();
  return instance;
}

thread_local shell* running_shell = nullptr;

/// Marks this thread as running an actor's code for a scope.
class inside {
public:
  explicit inside(shell* self) noexcept : previous_(running_shell) {
    running_shell = self;
  }

  ~inside() {
    running_shell = previous_;
  }

  inside(const inside&) = delete;
  inside& operator=(const inside&) = delete;

private:
  shell* previous_;
};

} // namespace

shell* shell::current() noexcept {
  return running_shell;
}

shell::shell(caf::actor_config& cfg, std::shared_ptr<name_slot> slot)
  : caf::event_based_actor(cfg), slot_(std::move(slot)), ctx_(*this) {
}

caf::behavior shell::make_behavior() {
  inside marker{this};
  auto failure = guarded("the behavior factory",
                         [this] { behavior_ = slot_->factory(ctx_); });
  if (!failure)
    owner().register_handled_types(behavior_);
  if (auto started = std::exchange(slot_->started, nullptr))
    started->set_value(); // the spawn that waits returns

  return {
    [this](letter& msg) {
      inside marker{this};
      dispatch(msg);
    },
    [this](deferred_call& call) {
      inside marker{this};
      guarded("a continuation", call.fn);
    },
  };
}

void shell::on_exit() {
  for (auto& weak : open_responders_)
    if (auto state = weak.lock(); state && !state->done)
      state->deliver(reply_msg{nullptr, errc::aborted,
                               "'" + slot_->name + "' stopped before replying"});
  open_responders_.clear();
  routes_.clear();
  // Destroy the user's state now, on the actor's own thread.
  behavior_ = behavior{};
}

template <class Describe, class F>
std::optional<std::string> shell::guarded(Describe&& what, F&& fn) {
  auto describe = [&]() -> std::string {
    if constexpr (std::is_invocable_v<Describe>)
      return what();
    else
      return std::string{what};
  };
  std::string failure;
  try {
    fn();
    return std::nullopt;
  } catch (const std::exception& ex) {
    failure = describe() + " of '" + slot_->name + "' threw: " + ex.what();
  } catch (...) {
    failure = describe() + " of '" + slot_->name
              + "' threw a non-standard exception";
  }
  owner().log(log_level::warning, failure);
  fail_with(failure);
  return failure;
}

void shell::dispatch(letter& msg) {
  msg.consume();
  const bool is_request = msg.kind == letter_kind::request;
  const auto* type = msg.payload->GetDescriptor();
  if (!msg.expires.is_never() && msg.expires.expired()) {
    owner().report_dead_letter(dead_letter_reason::expired, slot_->name,
                               msg.payload, msg.sender.get());
    if (is_request)
      answer(reply_path_for(msg),
             error{errc::deadline_exceeded,
                   "the deadline passed before '" + slot_->name
                     + "' could handle " + type->full_name()});
    return;
  }
  const auto* entry = behavior_.find(type);
  if (entry == nullptr) {
    owner().report_dead_letter(dead_letter_reason::unhandled_type, slot_->name,
                               msg.payload, msg.sender.get());
    if (is_request)
      answer(reply_path_for(msg),
             error{errc::unimplemented, "'" + slot_->name
                                          + "' has no handler for "
                                          + type->full_name()});
    return;
  }
  current_ = &msg;
  trace_ = &msg.trace;
  reply_taken_ = false;
  expected<message> outcome = message{};
  auto* stats = slot_->stats;
  const bool timed = stats != nullptr && stats->count_handled();
  auto began = timed ? metrics_clock::now() : metrics_clock::time_point{};
  auto failure = guarded(
    [type] { return "the handler for " + type->full_name(); },
    [&] { outcome = entry->fn(ctx_, msg.payload); });
  if (timed)
    stats->timed(metrics_clock::now() - began);
  current_ = nullptr;
  trace_ = nullptr;
  if (auto taken = std::move(current_responder_); taken && failure)
    // The handler took the reply, then threw: the caller learns why.
    taken->deliver(reply_msg{nullptr, errc::internal, *failure});
  if (!is_request || reply_taken_)
    return;
  if (failure)
    outcome = error{errc::internal, std::move(*failure)};
  answer(reply_path_for(msg), std::move(outcome));
}

reply_path shell::reply_path_for(const letter& msg) {
  if (msg.reply_to)
    return reply_path{msg.reply_to};
  return reply_path{make_response_promise()};
}

void shell::answer(reply_path path, expected<message> outcome) {
  reply_msg reply;
  if (outcome) {
    reply.payload = *outcome ? std::move(*outcome) : empty_reply();
  } else {
    reply.code = outcome.code();
    reply.text = outcome.error().message();
    if (reply.code == errc::ok) // an error must not read as success
      reply.code = errc::unknown;
  }
  path.deliver(std::move(reply));
}

const std::string& shell::current_sender() const noexcept {
  static const std::string none;
  return current_ && current_->sender ? current_->sender->name : none;
}

expected<void> shell::post_to(destination to, message msg,
                              post_options opts) {
  return post(owner(), caller(), to, std::move(msg), std::move(opts));
}

void shell::request_to(destination to, message msg, deadline until,
                       reply_callback on_outcome) {
  await_answer(start_request(owner(), caller(), to, std::move(msg), until,
                             true),
               until, std::move(on_outcome));
}

void shell::await_answer(expected<started_request> started, deadline until,
                         reply_callback on_outcome) {
  if (!started) {
    defer([cb = std::move(on_outcome), err = std::move(started).error()] {
      cb(err);
    });
    return;
  }
  // The answer and the node's timer race; the first one wins.
  struct outcome {
    reply_callback cb;
    trace_context trace; // continued by the continuation
    bool done = false;
  };
  auto state = std::make_shared<outcome>(
    outcome{std::move(on_outcome), trace_ != nullptr ? *trace_ : trace_context{}});
  auto finish = [this, state](expected<message> result) {
    if (state->done)
      return;
    state->done = true;
    trace_ = &state->trace;
    guarded("a reply continuation", [&] { state->cb(std::move(result)); });
    trace_ = nullptr;
  };
  auto target = started->target;
  add_multiplexed_response_handler(
    started->id.response_id(),
    // The error handler's `target` keeps `slot` alive.
    caf::behavior{[finish, slot = target.get(),
                   sent = started->sent](reply_msg& reply) {
                    answered(*slot, sent);
                    finish(outcome_of(reply));
                  },
                  [finish, target](caf::error& err) {
                    finish(outcome_of(err, *target));
                  }});
  if (target->node.empty()) {
    request_response_timeout(to_caf(until), started->id);
    return;
  }
  // To another node, the deadline is the node's timer's, not CAF's: CAF's
  // clock wakes its thread for every request. The link's proxy answers
  // every request it holds by its deadline at the latest, so the CAF
  // request ends too.
  if (until.is_never())
    return;
  // The timer holds the request weakly: once the answer came and CAF let
  // go of the continuation, the entry is dead weight that the timer drops.
  std::weak_ptr<outcome> weak = state;
  owner().timer().at(
    until.at(), weak,
    [self = address(), weak, name = target->name] {
      auto me = caf::actor_cast<caf::actor>(self);
      if (!me)
        return;
      caf::anon_send(me, deferred_call{[weak, name] {
                       auto state = weak.lock();
                       if (!state || state->done)
                         return;
                       state->done = true;
                       state->cb(error{errc::deadline_exceeded,
                                       "no reply from " + quoted(name)
                                         + " before the deadline"});
                     }});
    });
}

void shell::broadcast_to(std::string_view pattern, message msg, deadline until,
                         std::function<void(broadcast_result)> on_done) {
  struct collector {
    broadcast_result result;
    std::size_t pending = 0;
    std::function<void(broadcast_result)> on_done;
  };
  auto plan = plan_broadcast(owner(), caller(), pattern, msg);
  auto state = std::make_shared<collector>(
    collector{std::move(plan.known), 0, std::move(on_done)});
  auto finish = [this, state] {
    sort_result(state->result);
    guarded("a broadcast continuation",
            [&] { state->on_done(std::move(state->result)); });
  };
  state->pending = plan.targets.size();
  // One trace for all the requests, if one starts here.
  std::optional<trace_scope> traced;
  if (starts_trace(trace_, owner().config().trace))
    traced.emplace(trace_context::start());
  for (auto& target : plan.targets)
    await_answer(start_request(owner(), caller(), target, msg, until, true,
                               true),
                 until,
                 [state, finish, name = target.slot->name](
                   expected<message> outcome) {
                   classify(state->result, name, std::move(outcome));
                   if (--state->pending == 0)
                     finish();
                 });
  if (plan.targets.empty())
    defer(finish);
}

responder shell::take_reply() {
  if (current_ == nullptr || current_->kind != letter_kind::request
      || reply_taken_)
    return responder{};
  reply_taken_ = true;
  std::erase_if(open_responders_, [](const auto& weak) {
    auto state = weak.lock();
    return !state || state->done;
  });
  auto state = std::make_shared<responder_state>(reply_path_for(*current_));
  open_responders_.push_back(state);
  current_responder_ = state;
  return responder{std::move(state)};
}

expected<monitor_handle> shell::watch(destination to, monitor_fn on_down) {
  // The notice runs inside this actor, later: it checks the token again
  // there, so that a demonitor() in between wins.
  auto token = std::make_shared<std::shared_ptr<monitor_token>>();
  auto watched = owner().monitor(
    to,
    [me = address(), fn = std::move(on_down),
     token](const down_notice& notice) {
      if (auto self = caf::actor_cast<caf::actor>(me))
        caf::anon_send(self, deferred_call{[fn, notice, token] {
                         if (!*token || !(*token)->cancelled.load())
                           fn(notice);
                       }});
    },
    address());
  if (watched)
    *token = node_impl::token_of(*watched);
  return watched;
}

void shell::defer(std::function<void()> fn) {
  send(caf::actor_cast<caf::actor>(this), deferred_call{std::move(fn)});
}

void shell::fail_with(std::string reason) {
  owner().mark_failed(*slot_, std::move(reason));
  quit(caf::sec::runtime_error);
}

// -- responder_state ------------------------------------------------------------

responder_state::~responder_state() {
  deliver(reply_msg{nullptr, errc::aborted, "the reply was dropped unanswered"});
}

void responder_state::deliver(reply_msg reply) {
  if (done)
    return;
  done = true;
  path.deliver(std::move(reply));
}

} // namespace courier::detail

// -- public classes implemented on top of the shell ------------------------------

namespace courier {

using detail::letter_kind;
using detail::reply_msg;

responder::responder() noexcept = default;

responder::responder(std::shared_ptr<detail::responder_state> state) noexcept
  : state_(std::move(state)) {
}

responder::responder(responder&&) noexcept = default;

responder& responder::operator=(responder&&) noexcept = default;

// Dropping the last reference to an unanswered request answers aborted
// (responder_state's destructor).
responder::~responder() = default;

bool responder::pending() const noexcept {
  return state_ && !state_->done;
}

void responder::deliver(message reply) {
  if (!state_)
    return;
  if (!reply) {
    state_->deliver(reply_msg{nullptr, errc::internal, "replied with null"});
    return;
  }
  state_->deliver(reply_msg{std::move(reply), errc::ok, {}});
}

void responder::deliver(error reason) {
  if (!state_)
    return;
  auto code = reason.code() == errc::ok ? errc::unknown : reason.code();
  state_->deliver(reply_msg{nullptr, code, reason.message()});
}

pending_request::pending_request(detail::shell& self, destination dest,
                                 message msg, deadline until)
  : self_(&self),
    name_(dest.name()),
    ref_(dest.ref() != nullptr ? *dest.ref() : actor_ref{}),
    msg_(std::move(msg)),
    until_(until) {
}

void pending_request::submit(detail::reply_callback on_outcome) {
  auto dest = ref_ ? destination{ref_} : destination{name_};
  self_->request_to(dest, std::move(msg_), until_, std::move(on_outcome));
}

pending_broadcast::pending_broadcast(detail::shell& self, std::string pattern,
                                     message msg, deadline until)
  : self_(&self),
    pattern_(std::move(pattern)),
    msg_(std::move(msg)),
    until_(until) {
}

void pending_broadcast::then(std::function<void(broadcast_result)> on_done) && {
  self_->broadcast_to(pattern_, std::move(msg_), until_, std::move(on_done));
}

const std::string& context::name() const noexcept {
  return self_->slot()->name;
}

actor_ref context::self() const noexcept {
  return actor_ref{self_->slot()};
}

const std::string& context::sender() const noexcept {
  return self_->current_sender();
}

const std::string& context::node_name() const noexcept {
  return self_->owner().name();
}

const trace_context& context::trace() const noexcept {
  return self_->current_trace();
}

std::string context::trace_id() const {
  return self_->current_trace().trace_id_hex();
}

expected<void> context::post(destination to, message msg,
                             post_options options) {
  return self_->post_to(to, std::move(msg), std::move(options));
}

pending_request context::request(destination to, message msg, deadline until) {
  return pending_request{*self_, to, std::move(msg), until};
}

pending_broadcast context::broadcast(std::string_view pattern, message msg,
                                     deadline until) {
  return pending_broadcast{*self_, std::string{pattern}, std::move(msg), until};
}

responder context::take_reply() {
  return self_->take_reply();
}

expected<monitor_handle>
context::monitor(destination to, std::function<void(const down_notice&)> fn) {
  return self_->watch(to, std::move(fn));
}

void context::demonitor(const monitor_handle& handle) {
  self_->owner().demonitor(handle);
}

void context::stop() {
  self_->quit();
}

void context::fail(std::string reason) {
  self_->fail_with(std::move(reason));
}

} // namespace courier

#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "courier/actor_ref.hpp"
#include "courier/behavior.hpp"
#include "courier/deadline.hpp"
#include "courier/error.hpp"
#include "courier/message.hpp"
#include "courier/notices.hpp"
#include "courier/options.hpp"
#include "courier/trace.hpp"

namespace courier {

namespace detail {

/// Checks that a reply has type R and casts it.
template <class R>
expected<std::shared_ptr<const R>> cast_reply(expected<message> reply) {
  if (!reply)
    return std::move(reply).error();
  if constexpr (std::is_same_v<R, google::protobuf::Message>) {
    return std::move(*reply);
  } else {
    auto& msg = *reply;
    if (msg->GetDescriptor() != R::descriptor())
      return error{errc::internal, "expected a reply of type "
                                     + R::descriptor()->full_name() + ", got "
                                     + msg->GetDescriptor()->full_name()};
    return std::static_pointer_cast<const R>(std::move(msg));
  }
}

using reply_callback = std::function<void(expected<message>)>;

} // namespace detail

/// The right to answer one request later, taken with context::take_reply().
/// Destroying it unanswered answers errc::aborted, so every request gets
/// exactly one outcome; so does the actor stopping first.
///
/// Thread safety: use it only from the actor that took it (in a handler or
/// in a continuation such as pending_request::then), and do not keep it
/// beyond the life of its node.
class responder {
public:
  responder() noexcept;
  responder(responder&&) noexcept;
  responder& operator=(responder&&) noexcept;
  ~responder();

  /// True until an answer has been delivered.
  bool pending() const noexcept;

  void deliver(message reply);

  template <class T>
    requires is_payload_v<T>
  void deliver(T&& reply) {
    deliver(make_message(std::forward<T>(reply)));
  }

  void deliver(error reason);

private:
  friend class detail::shell;

  explicit responder(std::shared_ptr<detail::responder_state> state) noexcept;

  std::shared_ptr<detail::responder_state> state_;
};

/// A request issued from inside an actor; nothing is sent until then() names
/// the continuations. Both run inside the actor, never concurrently with its
/// handlers; exactly one of them runs.
class [[nodiscard]] pending_request {
public:
  /// `on_reply` takes `const Reply&`, `std::shared_ptr<const Reply>` or
  /// `const courier::message&`; `on_error` takes `const courier::error&`.
  /// A reply of another type than Reply reaches on_error as errc::internal.
  template <class OnReply, class OnError>
  void then(OnReply on_reply, OnError on_error) && {
    using traits = detail::callable_traits<std::decay_t<OnReply>>;
    using arg = std::tuple_element_t<0, typename traits::args>;
    using plain = std::remove_cvref_t<arg>;
    submit([f = std::move(on_reply), g = std::move(on_error)](
             expected<message> reply) mutable {
      if constexpr (std::is_same_v<plain, message>) {
        if (reply)
          f(*reply);
        else
          g(reply.error());
      } else {
        using payload = typename detail::payload_of<arg>::type;
        auto typed = detail::cast_reply<payload>(std::move(reply));
        if (!typed)
          g(typed.error());
        else if constexpr (detail::payload_of<arg>::shared)
          f(std::move(*typed));
        else
          f(**typed);
      }
    });
  }

private:
  friend class context;

  pending_request(detail::shell& self, destination dest, message msg,
                  deadline until);

  void submit(detail::reply_callback on_outcome);

  detail::shell* self_;
  std::string name_;
  actor_ref ref_;
  message msg_;
  deadline until_;
};

/// A broadcast issued from inside an actor; sent when then() is called. The
/// continuation runs inside the actor once every target has answered or
/// the deadline has passed.
class [[nodiscard]] pending_broadcast {
public:
  void then(std::function<void(broadcast_result)> on_done) &&;

private:
  friend class context;

  pending_broadcast(detail::shell& self, std::string pattern, message msg,
                    deadline until);

  detail::shell* self_;
  std::string pattern_;
  message msg_;
  deadline until_;
};

/// An actor's view of the runtime, passed to its behavior factory and its
/// handlers. Valid for the actor's lifetime; use it only from the actor's own
/// handlers and continuations.
///
/// Thread safety: not thread-safe; owned by one actor.
class context {
public:
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  /// This actor's name.
  const std::string& name() const noexcept;

  /// A ref to this actor's own name binding.
  actor_ref self() const noexcept;

  /// The name of the actor that sent the message being handled; empty when
  /// it came from a plain thread or no message is being handled.
  const std::string& sender() const noexcept;

  /// The name of the node this actor runs in.
  const std::string& node_name() const noexcept;

  /// The trace of the message being handled (or of the request whose
  /// continuation runs): its trace id, and as span id the span that sent
  /// it, the parent of what this actor sends now (which continues the
  /// trace, each message with a new span id). Not valid() when the
  /// message carried no trace (courier/trace.hpp).
  const trace_context& trace() const noexcept;

  /// trace()'s trace id as 32 hex digits; empty when there is none.
  std::string trace_id() const;

  /// Fire and forget. Fails with not_found, unavailable (restarting) or
  /// invalid_argument; never blocks.
  expected<void> post(destination to, message msg, post_options options = {});

  template <class T>
    requires is_payload_v<T>
  expected<void> post(destination to, T&& msg, post_options options = {}) {
    return post(to, make_message(std::forward<T>(msg)), options);
  }

  /// Asks `to` and continues in then() with the reply or an error.
  pending_request request(destination to, message msg, deadline until);

  template <class T>
    requires is_payload_v<T>
  pending_request request(destination to, T&& msg, deadline until) {
    return request(to, make_message(std::forward<T>(msg)), until);
  }

  /// Sends `msg` as a request to every actor whose name matches `pattern`
  /// (glob: '*' and '?'), except this actor itself.
  pending_broadcast broadcast(std::string_view pattern, message msg,
                              deadline until);

  template <class T>
    requires is_payload_v<T>
  pending_broadcast broadcast(std::string_view pattern, T&& msg,
                              deadline until) {
    return broadcast(pattern, make_message(std::forward<T>(msg)), until);
  }

  /// Takes over the answer to the request being handled, to deliver it later;
  /// the handler's own return value is then ignored. For a post, the
  /// responder is empty and delivering to it does nothing.
  responder take_reply();

  /// Watches `to`: `on_down` runs once, inside this actor, when the watched
  /// actor stops, unless demonitor() cancels it first. Fails with not_found
  /// if nobody holds the name.
  expected<monitor_handle>
  monitor(destination to, std::function<void(const down_notice&)> on_down);

  /// Cancels a monitor: its callback will not run in this actor after this
  /// returns. Idempotent.
  void demonitor(const monitor_handle& handle);

  /// Stops this actor after the current message; monitors see `stopped` and
  /// no supervisor restarts it.
  void stop();

  /// Fails this actor after the current message, as if a handler had thrown:
  /// monitors see `failed` and a supervisor may restart it.
  void fail(std::string reason);

private:
  friend class detail::shell;

  explicit context(detail::shell& self) noexcept : self_(&self) {
  }

  detail::shell* self_;
};

} // namespace courier

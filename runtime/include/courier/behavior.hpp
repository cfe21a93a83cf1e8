#pragma once

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "courier/error.hpp"
#include "courier/fwd.hpp"
#include "courier/message.hpp"

namespace courier {

namespace detail {

/// A type-erased handler: takes the payload, returns the reply (a null
/// message means "no reply value") or an error.
using handler_fn = std::function<expected<message>(context&, const message&)>;

struct handler_entry {
  const google::protobuf::Descriptor* type;
  handler_fn fn;
};

template <class F>
struct callable_traits : callable_traits<decltype(&F::operator())> {};

template <class C, class R, class... Args>
struct callable_traits<R (C::*)(Args...) const> {
  using result = R;
  using args = std::tuple<Args...>;
};

template <class C, class R, class... Args>
struct callable_traits<R (C::*)(Args...)> : callable_traits<R (C::*)(Args...)
                                                             const> {};

template <class R, class... Args>
struct callable_traits<R (*)(Args...)> {
  using result = R;
  using args = std::tuple<Args...>;
};

/// Maps a handler's first parameter to the message type it handles:
/// `const T&` or `std::shared_ptr<const T>`.
template <class Plain>
struct payload_of_plain {
  static constexpr bool shared = false;
  using type = Plain;
};

template <class T>
struct payload_of_plain<std::shared_ptr<T>> {
  static constexpr bool shared = true;
  using type = std::remove_const_t<T>;
};

template <class Arg>
using payload_of = payload_of_plain<std::remove_cvref_t<Arg>>;

template <class T>
struct is_expected : std::false_type {};

template <class T>
struct is_expected<expected<T>> : std::true_type {};

/// Converts whatever a handler returned into expected<message>.
template <class R>
expected<message> to_reply(R&& result) {
  using plain = std::remove_cvref_t<R>;
  if constexpr (is_expected<plain>::value) {
    if (!result)
      return std::forward<R>(result).error();
    if constexpr (std::is_void_v<typename plain::value_type>)
      return message{};
    else
      return to_reply(*std::forward<R>(result));
  } else if constexpr (std::is_same_v<plain, error>) {
    return std::forward<R>(result);
  } else {
    static_assert(is_payload_v<plain>,
                  "a handler returns void, a Protobuf message, a shared "
                  "pointer to one, courier::error or courier::expected<...>");
    return make_message(std::forward<R>(result));
  }
}

template <class F>
handler_entry make_handler(F f) {
  using traits = callable_traits<std::decay_t<F>>;
  using args = typename traits::args;
  constexpr auto arity = std::tuple_size_v<args>;
  static_assert(arity == 1 || arity == 2,
                "a handler takes (const Msg&) or (const Msg&, context&)");
  using first = std::tuple_element_t<0, args>;
  using payload = typename payload_of<first>::type;
  static_assert(is_protobuf_message_v<payload>,
                "a handler's first parameter is a Protobuf message");
  if constexpr (arity == 2)
    static_assert(std::is_same_v<std::tuple_element_t<1, args>, context&>,
                  "a handler's second parameter is courier::context&");
  using result = typename traits::result;
  auto call = [f = std::move(f)](context& ctx,
                                 const message& msg) mutable -> decltype(auto) {
    decltype(auto) arg = [&]() -> decltype(auto) {
      if constexpr (payload_of<first>::shared)
        return std::static_pointer_cast<const payload>(msg);
      else
        return static_cast<const payload&>(*msg);
    }();
    if constexpr (arity == 2)
      return f(arg, ctx);
    else
      return f(arg);
  };
  handler_fn fn = [call = std::move(call)](context& ctx, const message& msg)
    mutable -> expected<message> {
    if constexpr (std::is_void_v<result>) {
      call(ctx, msg);
      return message{};
    } else {
      return to_reply(call(ctx, msg));
    }
  };
  return {payload::descriptor(), std::move(fn)};
}

} // namespace detail

/// What an actor does: one typed handler per Protobuf message type.
///
/// A handler takes the message (`const T&` or `std::shared_ptr<const T>`)
/// and optionally `courier::context&`, and returns one of: `void` (a request
/// gets google.protobuf.Empty), a Protobuf message or a shared pointer to one
/// (the reply), `courier::error`, or `courier::expected<Reply>`. A handler
/// that throws fails its actor: the requester gets errc::internal and a
/// supervisor, if any, restarts the actor.
///
/// Thread safety: built before spawn, then used only by its actor.
class behavior {
public:
  behavior() = default;

  template <class... Fs>
    requires(sizeof...(Fs) > 0
             && (!std::is_same_v<std::remove_cvref_t<Fs>, behavior> && ...))
  behavior(Fs&&... handlers) {
    handlers_.reserve(sizeof...(Fs));
    (on(std::forward<Fs>(handlers)), ...);
  }

  /// Adds a handler. Two handlers for one type is a broken contract.
  template <class F>
  behavior& on(F&& handler) {
    add(detail::make_handler(std::forward<F>(handler)));
    return *this;
  }

  /// Returns the handler for `type`, or nullptr.
  const detail::handler_entry*
  find(const google::protobuf::Descriptor* type) const noexcept {
    for (auto& entry : handlers_)
      if (entry.type == type)
        return &entry;
    return nullptr;
  }

  const std::vector<detail::handler_entry>& handlers() const noexcept {
    return handlers_;
  }

private:
  void add(detail::handler_entry entry);

  std::vector<detail::handler_entry> handlers_;
};

} // namespace courier

#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include <google/protobuf/message.h>

namespace courier {

/// A Protobuf message shared immutably. In-process delivery hands this very
/// object to the receiver: no serialization, no copy of the payload.
using message = std::shared_ptr<const google::protobuf::Message>;

/// True for generated Protobuf message classes.
template <class T>
inline constexpr bool is_protobuf_message_v
  = std::is_base_of_v<google::protobuf::Message, std::remove_cvref_t<T>>;

namespace detail {

template <class T>
struct is_shared_ptr : std::false_type {};

template <class T>
struct is_shared_ptr<std::shared_ptr<T>> : std::true_type {};

} // namespace detail

namespace detail {

template <class T>
struct is_payload : std::bool_constant<is_protobuf_message_v<T>> {};

template <class T>
struct is_payload<std::shared_ptr<T>>
  : std::bool_constant<is_protobuf_message_v<T>> {};

} // namespace detail

/// True for everything a verb accepts as a payload: a generated message
/// (moved or copied into a shared object once) or a shared pointer to one.
template <class T>
inline constexpr bool is_payload_v
  = detail::is_payload<std::remove_cvref_t<T>>::value;

/// Turns a payload into a shared immutable message; moving a generated
/// message in costs one allocation and no copy of its contents.
template <class T>
  requires is_payload_v<T>
message make_message(T&& x) {
  using plain = std::remove_cvref_t<T>;
  if constexpr (detail::is_shared_ptr<plain>::value)
    return message{std::forward<T>(x)};
  else
    return std::make_shared<const plain>(std::forward<T>(x));
}

} // namespace courier

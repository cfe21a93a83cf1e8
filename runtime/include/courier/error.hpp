#pragma once

#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

#include "courier/errc.hpp"

/// Aborts with a message when a contract is broken. Broken contracts are bugs
/// (null where forbidden, use after stop), not errors.
#define COURIER_RUNTIME_ASSERT(cond, what)                                     \
  do {                                                                         \
    if (!(cond))                                                               \
      ::courier::detail::contract_violation(#cond, what, __FILE__, __LINE__);  \
  } while (false)

namespace courier {

namespace detail {

[[noreturn]] void contract_violation(const char* cond, const char* what,
                                     const char* file, int line) noexcept;

} // namespace detail

/// A failure: a code from courier::errc and a sentence for people.
///
/// Thread safety: a value type; distinct objects may be used concurrently.
class error {
public:
  error(errc code, std::string message) noexcept
    : code_(code), message_(std::move(message)) {
  }

  explicit error(errc code) noexcept : code_(code) {
  }

  errc code() const noexcept {
    return code_;
  }

  const std::string& message() const noexcept {
    return message_;
  }

  /// Returns "code: message", e.g. "not_found: no actor named 'orders'".
  std::string to_string() const;

  friend bool operator==(const error& x, errc y) noexcept {
    return x.code_ == y;
  }

private:
  errc code_;
  std::string message_;
};

/// Either a value of type T or an error. Fallible functions return it.
///
/// Thread safety: a value type; distinct objects may be used concurrently.
template <class T>
class [[nodiscard]] expected {
public:
  using value_type = T;

  expected(T value) : state_(std::in_place_index<0>, std::move(value)) {
  }

  expected(class error err) : state_(std::in_place_index<1>, std::move(err)) {
  }

  expected(errc code, std::string message)
    : state_(std::in_place_index<1>, code, std::move(message)) {
  }

  bool has_value() const noexcept {
    return state_.index() == 0;
  }

  explicit operator bool() const noexcept {
    return has_value();
  }

  T& value() & {
    check();
    return std::get<0>(state_);
  }

  const T& value() const& {
    check();
    return std::get<0>(state_);
  }

  T&& value() && {
    check();
    return std::get<0>(std::move(state_));
  }

  T& operator*() & {
    return value();
  }

  const T& operator*() const& {
    return value();
  }

  T&& operator*() && {
    return std::move(*this).value();
  }

  T* operator->() {
    return &value();
  }

  const T* operator->() const {
    return &value();
  }

  /// Returns the error; calling it on a value is a broken contract.
  const class error& error() const& {
    COURIER_RUNTIME_ASSERT(!has_value(), "expected::error() on a value");
    return std::get<1>(state_);
  }

  class error&& error() && {
    COURIER_RUNTIME_ASSERT(!has_value(), "expected::error() on a value");
    return std::get<1>(std::move(state_));
  }

  /// Returns the error code, or errc::ok for a value.
  errc code() const noexcept {
    return has_value() ? errc::ok : std::get<1>(state_).code();
  }

private:
  void check() const {
    if (!has_value())
      detail::contract_violation("has_value()",
                                 std::get<1>(state_).to_string().c_str(),
                                 __FILE__, __LINE__);
  }

  std::variant<T, class error> state_;
};

/// The outcome of an operation that yields nothing on success.
template <>
class [[nodiscard]] expected<void> {
public:
  using value_type = void;

  expected() noexcept = default;

  expected(class error err) : error_(std::move(err)), failed_(true) {
  }

  expected(errc code, std::string message)
    : error_(code, std::move(message)), failed_(true) {
  }

  bool has_value() const noexcept {
    return !failed_;
  }

  explicit operator bool() const noexcept {
    return !failed_;
  }

  const class error& error() const& {
    COURIER_RUNTIME_ASSERT(failed_, "expected::error() on a value");
    return error_;
  }

  errc code() const noexcept {
    return failed_ ? error_.code() : errc::ok;
  }

private:
  class error error_{errc::ok};
  bool failed_ = false;
};

} // namespace courier

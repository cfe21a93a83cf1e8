#pragma once

#include <cstdint>
#include <string_view>
#include <system_error>

namespace courier {

/// Courier's one error vocabulary, named and numbered as gRPC's canonical
/// status codes. Errors cross processes, so the numbers are pinned forever
/// (see the static_asserts in errc.cpp); never renumber, only append.
enum class errc : std::uint8_t {
  ok = 0,
  cancelled = 1,
  unknown = 2,
  /// The request was malformed: bad name, bad pattern, bad payload.
  invalid_argument = 3,
  /// The deadline passed before an outcome was known.
  deadline_exceeded = 4,
  /// Nobody holds the name, or the type name is unknown.
  not_found = 5,
  /// The name is already held by another actor.
  already_exists = 6,
  permission_denied = 7,
  /// A limit or quota was hit (frame size, queue quota, ...).
  resource_exhausted = 8,
  failed_precondition = 9,
  /// The actor died before replying (or was already dead).
  aborted = 10,
  out_of_range = 11,
  /// The actor has no handler for the message's type.
  unimplemented = 12,
  /// A bug or an unexpected failure, e.g. a handler threw.
  internal = 13,
  /// Transient: the actor is restarting, the node is unreachable.
  unavailable = 14,
  data_loss = 15,
  unauthenticated = 16,
};

/// Returns the canonical name of `code`, e.g. "deadline_exceeded".
std::string_view to_string(errc code) noexcept;

/// The std::error_category of courier::errc, so errc composes with
/// std::error_code.
const std::error_category& courier_category() noexcept;

inline std::error_code make_error_code(errc code) noexcept {
  return {static_cast<int>(code), courier_category()};
}

} // namespace courier

template <>
struct std::is_error_code_enum<courier::errc> : std::true_type {};

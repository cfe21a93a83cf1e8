#include "courier/errc.hpp"

#include <cstdio>

#include "courier/error.hpp"
#include "courier/notices.hpp"

namespace courier {

// Errors cross processes: these numbers are gRPC's canonical codes and never
// change.
static_assert(static_cast<int>(errc::ok) == 0);
static_assert(static_cast<int>(errc::cancelled) == 1);
static_assert(static_cast<int>(errc::unknown) == 2);
static_assert(static_cast<int>(errc::invalid_argument) == 3);
static_assert(static_cast<int>(errc::deadline_exceeded) == 4);
static_assert(static_cast<int>(errc::not_found) == 5);
static_assert(static_cast<int>(errc::already_exists) == 6);
static_assert(static_cast<int>(errc::permission_denied) == 7);
static_assert(static_cast<int>(errc::resource_exhausted) == 8);
static_assert(static_cast<int>(errc::failed_precondition) == 9);
static_assert(static_cast<int>(errc::aborted) == 10);
static_assert(static_cast<int>(errc::out_of_range) == 11);
static_assert(static_cast<int>(errc::unimplemented) == 12);
static_assert(static_cast<int>(errc::internal) == 13);
static_assert(static_cast<int>(errc::unavailable) == 14);
static_assert(static_cast<int>(errc::data_loss) == 15);
static_assert(static_cast<int>(errc::unauthenticated) == 16);

std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::ok: return "ok";
    case errc::cancelled: return "cancelled";
    case errc::unknown: return "unknown";
    case errc::invalid_argument: return "invalid_argument";
    case errc::deadline_exceeded: return "deadline_exceeded";
    case errc::not_found: return "not_found";
    case errc::already_exists: return "already_exists";
    case errc::permission_denied: return "permission_denied";
    case errc::resource_exhausted: return "resource_exhausted";
    case errc::failed_precondition: return "failed_precondition";
    case errc::aborted: return "aborted";
    case errc::out_of_range: return "out_of_range";
    case errc::unimplemented: return "unimplemented";
    case errc::internal: return "internal";
    case errc::unavailable: return "unavailable";
    case errc::data_loss: return "data_loss";
    case errc::unauthenticated: return "unauthenticated";
  }
  return "unknown";
}

namespace {

class category final : public std::error_category {
public:
  const char* name() const noexcept override {
    return "courier";
  }

  std::string message(int code) const override {
    return std::string{to_string(static_cast<errc>(code))};
  }
};

} // namespace

const std::error_category& courier_category() noexcept {
  static const category instance;
  return instance;
}

std::string error::to_string() const {
  std::string out{courier::to_string(code_)};
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

std::string_view to_string(down_reason reason) noexcept {
  switch (reason) {
    case down_reason::stopped: return "stopped";
    case down_reason::failed: return "failed";
    case down_reason::node_down: return "node_down";
    case down_reason::unreachable: return "unreachable";
  }
  return "unknown";
}

std::string_view to_string(dead_letter_reason reason) noexcept {
  switch (reason) {
    case dead_letter_reason::no_such_name: return "no_such_name";
    case dead_letter_reason::actor_stopped: return "actor_stopped";
    case dead_letter_reason::unhandled_type: return "unhandled_type";
    case dead_letter_reason::expired: return "expired";
    case dead_letter_reason::restarting: return "restarting";
    case dead_letter_reason::unreachable: return "unreachable";
    case dead_letter_reason::malformed: return "malformed";
  }
  return "unknown";
}

namespace detail {

void contract_violation(const char* cond, const char* what, const char* file,
                        int line) noexcept {
  std::fprintf(stderr, "courier: broken contract at %s:%d: %s (%s)\n", file,
               line, what, cond);
  std::abort();
}

} // namespace detail

} // namespace courier

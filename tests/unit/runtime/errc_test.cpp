#include <system_error>

#include "test_support.hpp"

using namespace courier;

TEST_CASE("errc names and numbers are gRPC's canonical codes", "[runtime]") {
  CHECK(static_cast<int>(errc::not_found) == 5);
  CHECK(static_cast<int>(errc::deadline_exceeded) == 4);
  CHECK(static_cast<int>(errc::unimplemented) == 12);
  CHECK(static_cast<int>(errc::aborted) == 10);
  CHECK(to_string(errc::already_exists) == "already_exists");
  CHECK(to_string(errc::unavailable) == "unavailable");
}

TEST_CASE("errc composes with std::error_code", "[runtime]") {
  std::error_code code = errc::permission_denied;
  CHECK(code.category().name() == std::string{"courier"});
  CHECK(code.message() == "permission_denied");
  CHECK(code.value() == 7);
}

TEST_CASE("an error prints as code and message", "[runtime]") {
  error err{errc::not_found, "no actor named 'x'"};
  CHECK(err.to_string() == "not_found: no actor named 'x'");
  CHECK(err == errc::not_found);
  CHECK(error{errc::internal}.to_string() == "internal");
}

TEST_CASE("expected holds either a value or an error", "[runtime]") {
  expected<int> good = 42;
  REQUIRE(good);
  CHECK(*good == 42);
  CHECK(good.code() == errc::ok);
  expected<int> bad = error{errc::invalid_argument, "nope"};
  REQUIRE_FALSE(bad);
  CHECK(bad.code() == errc::invalid_argument);
  CHECK(bad.error().message() == "nope");
  expected<void> done;
  CHECK(done);
  expected<void> failed{errc::aborted, "gone"};
  CHECK(failed.code() == errc::aborted);
}

TEST_CASE("a deadline built from a duration counts down", "[runtime]") {
  using namespace std::chrono_literals;
  deadline soon = 50ms;
  CHECK_FALSE(soon.is_never());
  CHECK(soon.remaining() <= 50ms);
  CHECK_FALSE(soon.expired());
  deadline past = -1ms;
  CHECK(past.expired());
  CHECK(past.remaining() == deadline::clock::duration::zero());
  CHECK(deadline::never().is_never());
  deadline huge = std::chrono::hours::max();
  CHECK(huge.is_never());
}

TEST_CASE("extreme deadlines saturate instead of overflowing", "[runtime]") {
  using namespace std::chrono_literals;
  deadline later = 5s; // regression: the lower clamp once overflowed here
  CHECK_FALSE(later.expired());
  CHECK(later.remaining() > 4s);
  deadline long_ago = std::chrono::hours::min();
  CHECK(long_ago.expired());
  deadline far = std::chrono::nanoseconds::max();
  CHECK(far.is_never());
}

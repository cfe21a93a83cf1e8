#include "values.hpp"

#include <algorithm>
#include <charconv>
#include <limits>

namespace courier::config_detail {

namespace {

/// Splits "<digits><unit>" into its number and unit; false if the text
/// does not have that shape or the number overflows.
bool split_number(std::string_view text, std::uint64_t& number,
                  std::string_view& unit) {
  auto digits_end = std::find_if(text.begin(), text.end(),
                                 [](char c) { return c < '0' || c > '9'; });
  auto digits = static_cast<std::size_t>(digits_end - text.begin());
  if (digits == 0)
    return false;
  auto [end, failed]
    = std::from_chars(text.data(), text.data() + digits, number);
  if (failed != std::errc{})
    return false;
  unit = text.substr(digits);
  return true;
}

bool name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
         || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

} // namespace

expected<std::chrono::microseconds> parse_duration(std::string_view text) {
  auto quoted = "'" + std::string{text} + "'";
  if (!text.empty() && text.front() == '-')
    return error{errc::invalid_argument,
                 quoted + " is negative; a duration is at least 0"};
  std::uint64_t number = 0;
  std::string_view unit;
  if (!split_number(text, number, unit))
    return error{errc::invalid_argument,
                 quoted
                   + " is not a duration: a whole number and a unit "
                     "(us, ms, s, m, h), e.g. \"500ms\" or \"2s\""};
  std::uint64_t per_unit = 0;
  if (unit == "us")
    per_unit = 1;
  else if (unit == "ms")
    per_unit = 1000;
  else if (unit == "s")
    per_unit = 1000 * 1000;
  else if (unit == "m")
    per_unit = 60ull * 1000 * 1000;
  else if (unit == "h")
    per_unit = 3600ull * 1000 * 1000;
  else
    return error{errc::invalid_argument,
                 quoted + " has no known unit: us, ms, s, m or h"};
  // A year at most: longer is a typo, and arithmetic on it would overflow.
  constexpr std::uint64_t year = 366ull * 24 * 3600 * 1000 * 1000;
  if (number > year / per_unit)
    return error{errc::invalid_argument, quoted + " is over a year"};
  return std::chrono::microseconds{
    static_cast<std::chrono::microseconds::rep>(number * per_unit)};
}

expected<std::uint64_t> parse_size(std::string_view text) {
  auto quoted = "'" + std::string{text} + "'";
  std::uint64_t number = 0;
  std::string_view unit;
  if (!split_number(text, number, unit))
    return error{errc::invalid_argument,
                 quoted
                   + " is not a size: a whole number of bytes, or a "
                     "string with a unit (B, KiB, MiB, GiB), e.g. "
                     "\"4MiB\""};
  std::uint64_t per_unit = 0;
  if (unit == "B")
    per_unit = 1;
  else if (unit == "KiB")
    per_unit = 1ull << 10;
  else if (unit == "MiB")
    per_unit = 1ull << 20;
  else if (unit == "GiB")
    per_unit = 1ull << 30;
  else
    return error{errc::invalid_argument,
                 quoted + " has no known unit: B, KiB, MiB or GiB"};
  if (number > std::numeric_limits<std::uint64_t>::max() / per_unit)
    return error{errc::invalid_argument, quoted + " is too large"};
  return number * per_unit;
}

expected<void> check_address(std::string_view text, bool port_zero_ok) {
  auto bad = [text](const std::string& why) {
    return error{errc::invalid_argument,
                 "'" + std::string{text} + "' is not host:port (" + why
                   + "), e.g. \"10.0.0.7:7000\" or \"[::1]:7000\""};
  };
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos)
    return bad("no port");
  auto host = text.substr(0, colon);
  auto port_text = text.substr(colon + 1);
  if (host.empty())
    return bad("no host");
  bool bracketed = host.front() == '[';
  if (bracketed != (host.back() == ']') || (bracketed && host.size() < 3))
    return bad("unbalanced brackets");
  if (!bracketed && host.find(':') != std::string_view::npos)
    return bad("an IPv6 host goes in brackets");
  unsigned port = 0;
  auto [end, failed] = std::from_chars(
    port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || failed != std::errc{}
      || end != port_text.data() + port_text.size() || port > 65535)
    return bad("the port is a number from "
               + std::string{port_zero_ok ? "0" : "1"} + " to 65535");
  if (port == 0 && !port_zero_ok)
    return bad("other nodes cannot dial port 0");
  return {};
}

bool valid_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= 255 && name.front() != '.'
         && std::all_of(name.begin(), name.end(), name_char);
}

bool valid_pattern(std::string_view pattern) noexcept {
  return !pattern.empty()
         && std::all_of(pattern.begin(), pattern.end(), [](char c) {
              return name_char(c) || c == '*' || c == '?';
            });
}

} // namespace courier::config_detail

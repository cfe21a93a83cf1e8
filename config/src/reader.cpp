#include "reader.hpp"

#include <limits>

#include "values.hpp"

namespace courier::config_detail {

std::string_view type_name(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    default:
      return "nothing";
  }
}

error wrong_type(const parse_state& state, const toml::node& value,
                 std::string_view key, std::string_view expected_type) {
  return state.at(value.source(), key,
                  "expects " + std::string{expected_type} + ", not "
                    + std::string{type_name(value.type())});
}

// -- typed values ------------------------------------------------------------

expected<std::string> read_string(const parse_state& state,
                                  const toml::node& value,
                                  std::string_view key) {
  if (auto* text = value.as_string())
    return text->get();
  return wrong_type(state, value, key, "a string");
}

expected<bool> read_bool(const parse_state& state, const toml::node& value,
                         std::string_view key) {
  if (auto* flag = value.as_boolean())
    return flag->get();
  return wrong_type(state, value, key, "a boolean (true or false)");
}

expected<std::int64_t> read_integer(const parse_state& state,
                                    const toml::node& value,
                                    std::string_view key, std::int64_t min,
                                    std::int64_t max) {
  auto* number = value.as_integer();
  if (!number)
    return wrong_type(state, value, key, "an integer");
  if (number->get() < min || number->get() > max)
    return state.at(value.source(), key,
                    std::to_string(number->get()) + " is out of range: from "
                      + std::to_string(min) + " to " + std::to_string(max));
  return number->get();
}

/// A duration of at least `min`: a string with a unit (values.hpp).
expected<std::chrono::microseconds>
read_duration(const parse_state& state, const toml::node& value,
              std::string_view key, std::chrono::microseconds min) {
  auto* text = value.as_string();
  if (!text)
    return wrong_type(state, value, key,
                      "a duration as a string with a unit, e.g. \"500ms\"");
  auto parsed = parse_duration(text->get());
  if (!parsed)
    return state.at(value, key, parsed.error());
  if (*parsed < min)
    return state.at(value.source(), key,
                    "'" + text->get() + "' is too short: at least "
                      + (min.count() % 1000 == 0
                           ? std::to_string(min.count() / 1000) + "ms"
                           : std::to_string(min.count()) + "us"));
  return *parsed;
}

/// A duration in whole milliseconds, at least one.
expected<std::chrono::milliseconds> read_milliseconds(const parse_state& state,
                                                      const toml::node& value,
                                                      std::string_view key) {
  auto parsed = read_duration(state, value, key, std::chrono::milliseconds{1});
  if (!parsed)
    return std::move(parsed).error();
  if (parsed->count() % 1000 != 0)
    return state.at(value.source(), key,
                    "'" + value.as_string()->get()
                      + "' is not a whole number of milliseconds");
  return std::chrono::duration_cast<std::chrono::milliseconds>(*parsed);
}

/// A byte count: an integer, or a string with a unit (values.hpp).
expected<std::uint64_t> read_size(const parse_state& state,
                                  const toml::node& value,
                                  std::string_view key) {
  if (auto* number = value.as_integer()) {
    if (number->get() < 0)
      return state.at(value.source(), key,
                      std::to_string(number->get()) + " is negative");
    return static_cast<std::uint64_t>(number->get());
  }
  auto* text = value.as_string();
  if (!text)
    return wrong_type(state, value, key,
                      "a size: an integer (bytes) or a string such as "
                      "\"4MiB\"");
  auto parsed = parse_size(text->get());
  if (!parsed)
    return state.at(value, key, parsed.error());
  return *parsed;
}

expected<std::vector<unsigned>> read_ids(const parse_state& state,
                                         const toml::node& value,
                                         std::string_view key) {
  auto* list = value.as_array();
  if (!list)
    return wrong_type(state, value, key, "an array of integers");
  std::vector<unsigned> ids;
  for (const auto& element : *list) {
    // 2^32 - 1 is (uid_t) -1, "no user" to the kernel.
    auto id = read_integer(state, element, key, 0,
                           std::numeric_limits<unsigned>::max() - 1);
    if (!id)
      return std::move(id).error();
    ids.push_back(static_cast<unsigned>(*id));
  }
  return ids;
}

} // namespace courier::config_detail

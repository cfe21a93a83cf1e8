#pragma once

// Reading TOML values for parse.cpp: the state of one parse, typed values
// with their checks, and tables read through rows of known keys. Every
// error is invalid_argument and starts "source:line:column: key: ".

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "courier/config/config_file.hpp"

namespace courier::config_detail {

namespace fs = std::filesystem;

/// Where a later check points: a value's key and its place.
struct pending_tier_check {
  std::string tier;
  std::string key;
  toml::source_region where;
};

/// What the reading functions share: the file's name and folder, the
/// settings they fill in, and checks that wait for the whole file.
struct parse_state {
  std::string source;
  fs::path base;
  node_settings settings;
  std::vector<pending_tier_check> preferred;

  /// invalid_argument "source:line:column: key: what".
  error at(const toml::source_region& where, std::string_view key,
           std::string_view what) const {
    std::string text = source;
    if (where.begin.line != 0)
      text += ":" + std::to_string(where.begin.line) + ":"
              + std::to_string(where.begin.column);
    text += ": ";
    if (!key.empty())
      text += std::string{key} + ": ";
    text += what;
    return error{errc::invalid_argument, std::move(text)};
  }

  /// The same error, at a value, from a reason values.cpp gave.
  error at(const toml::node& value, std::string_view key,
           const error& reason) const {
    return at(value.source(), key, reason.message());
  }
};

/// "a string", "an integer"...: a TOML type as errors name it.
std::string_view type_name(toml::node_type type);

/// "key: expects <expected_type>, not <the value's type>".
error wrong_type(const parse_state& state, const toml::node& value,
                 std::string_view key, std::string_view expected_type);

// -- typed values (each fails with its position and key) ---------------------

expected<std::string> read_string(const parse_state& state,
                                  const toml::node& value,
                                  std::string_view key);

expected<bool> read_bool(const parse_state& state, const toml::node& value,
                         std::string_view key);

/// An integer from `min` to `max`.
expected<std::int64_t> read_integer(const parse_state& state,
                                    const toml::node& value,
                                    std::string_view key, std::int64_t min,
                                    std::int64_t max);

/// A duration of at least `min`: a string with a unit (values.hpp).
expected<std::chrono::microseconds>
read_duration(const parse_state& state, const toml::node& value,
              std::string_view key, std::chrono::microseconds min);

/// A duration in whole milliseconds, at least one.
expected<std::chrono::milliseconds> read_milliseconds(const parse_state& state,
                                                      const toml::node& value,
                                                      std::string_view key);

/// A byte count: an integer, or a string with a unit (values.hpp).
expected<std::uint64_t> read_size(const parse_state& state,
                                  const toml::node& value,
                                  std::string_view key);

/// An array of user or group ids.
expected<std::vector<unsigned>> read_ids(const parse_state& state,
                                         const toml::node& value,
                                         std::string_view key);

/// One row per key of a table: its name and the function that reads it.
template <class Target>
struct field {
  std::string_view name;
  expected<void> (*read)(parse_state& state, const toml::node& value,
                         const std::string& key, Target& target);
};

/// Reads every key of `table` with its row in `fields`; an unknown key is
/// an error at the key. `prefix` is the table's dotted path ("" at the
/// top, "tiers.tcp." below).
template <class Target>
expected<void> read_table(parse_state& state, const toml::table& table,
                          std::string_view prefix,
                          std::span<const field<Target>> fields,
                          Target& target) {
  for (const auto& [name, value] : table) {
    auto key = std::string{prefix} + std::string{name.str()};
    auto row
      = std::find_if(fields.begin(), fields.end(),
                     [&name](const auto& f) { return f.name == name.str(); });
    if (row == fields.end())
      return state.at(name.source(), key, "unknown key");
    if (auto read = row->read(state, value, key, target); !read)
      return read;
  }
  return {};
}

template <class Target>
expected<void> read_subtable(parse_state& state, const toml::node& value,
                             const std::string& key,
                             std::span<const field<Target>> fields,
                             Target& target) {
  auto* table = value.as_table();
  if (!table)
    return wrong_type(state, value, key, "a table");
  return read_table(state, *table, key + ".", fields, target);
}

/// One of `choices`, by its name.
template <class Enum, std::size_t N>
expected<Enum>
read_choice(const parse_state& state, const toml::node& value,
            std::string_view key,
            const std::pair<std::string_view, Enum> (&choices)[N]) {
  auto text = read_string(state, value, key);
  if (!text)
    return std::move(text).error();
  std::string names;
  for (const auto& [name, choice] : choices) {
    if (name == *text)
      return choice;
    names += (names.empty() ? "" : ", ") + std::string{name};
  }
  return state.at(value.source(), key,
                  "'" + *text + "' is not one of " + names);
}

} // namespace courier::config_detail

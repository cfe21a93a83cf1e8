#pragma once

// The value syntaxes of configuration files that TOML lacks: durations,
// byte sizes, addresses, names. Each returns the reason a text is not one,
// without a position; parse.cpp adds where it was.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "courier/error.hpp"

namespace courier::config_detail {

/// "<whole number><unit>", the unit one of us, ms, s, m, h: "500ms", "2s".
/// No sign, no fraction, no bare number (which unit would it be?).
[[nodiscard]] expected<std::chrono::microseconds>
parse_duration(std::string_view text);

/// "<whole number><unit>", the unit one of B, KiB, MiB, GiB: "4MiB".
[[nodiscard]] expected<std::uint64_t> parse_size(std::string_view text);

/// "host:port" with a port from 0 to 65535 (from 1 when `port_zero_ok` is
/// false); an IPv6 host in brackets: "[::1]:7000".
[[nodiscard]] expected<void> check_address(std::string_view text,
                                           bool port_zero_ok);

/// A node or actor name as the runtime takes it (docs/directory.md):
/// letters, digits, '_', '-', '.', not starting with '.', at most 255.
[[nodiscard]] bool valid_name(std::string_view name) noexcept;

/// A glob over names: name characters plus '*' and '?'.
[[nodiscard]] bool valid_pattern(std::string_view pattern) noexcept;

} // namespace courier::config_detail

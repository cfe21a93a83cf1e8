#pragma once

// The runtime's log lines: their fields, their two formats (the text as
// is, or one JSON object per line: node_config::log_format), and the gate
// that bounds the rate of lines a peer could cause. Fields and format:
// docs/operations.md, "Logs".
//
// Thread safety: write_log and log_gate may be used from any thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "courier/options.hpp"
#include "courier/trace.hpp"

namespace courier::detail {

/// What a line is about, besides its text; empty fields are left out.
struct log_fields {
  /// The actor concerned (a name here, or the target of a message).
  std::string_view actor;
  /// The other node.
  std::string_view peer;
  /// One word for what happened: the errc of a refusal, the
  /// dead_letter_reason of a drop, "restarted".
  std::string_view reason;
  /// The trace of the message concerned.
  trace_context trace;
};

/// The name of a level as lines show it ("warning").
std::string_view level_name(log_level level) noexcept;

/// `line` of `node` as one JSON object, without a newline:
/// {"time":..., "level":..., "node":..., "actor":..., "peer":...,
///  "trace_id":..., "span_id":..., "reason":..., "message":...}.
std::string json_line(std::string_view node, log_level level,
                      std::string_view line, const log_fields& fields);

/// Writes one line as `config` asks: to config.log, or else to stderr
/// (text: warnings and errors; json: info and above), in its log_format.
/// A sink that throws is ignored.
void write_log(const node_config& config, log_level level,
               std::string_view line, const log_fields& fields);

/// Bounds the rate of a kind of line: the first passes, then at most one
/// per interval; the one that passes learns how many were held back.
/// Lock-free: a flood costs an atomic load per event.
class log_gate {
public:
  explicit log_gate(std::chrono::nanoseconds interval
                    = std::chrono::seconds{1}) noexcept
    : interval_(interval.count()) {}

  /// True when a line may be written now; `held_back` is then the number
  /// of events not logged since the last line.
  bool pass(std::uint64_t& held_back) noexcept;

private:
  const std::int64_t interval_;
  std::atomic<std::int64_t> next_{std::numeric_limits<std::int64_t>::min()};
  std::atomic<std::uint64_t> held_{0};
};

/// ", N more not logged since the last line" for a gate's count; empty for
/// none.
std::string held_back_note(std::uint64_t held_back);

} // namespace courier::detail

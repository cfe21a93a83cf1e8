#pragma once

// Trace context (W3C Trace Context, `traceparent`): which trace a message
// belongs to, across nodes, tiers and the gRPC gateway. An envelope carries
// it in binary (docs/wire-format.md, field 19); a message without one
// costs nothing. How a trace starts and is inherited: docs/operations.md,
// "Traces".
//
// Thread safety: trace_context is a value; trace_scope is per thread.

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace courier {

/// One hop of a trace: the trace's id, the id of the span that sent the
/// message (the parent of whatever its handler does), and the W3C flags
/// (bit 0: sampled). A zero trace id means "no trace".
struct trace_context {
  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> span_id{};
  std::uint8_t flags = 0;

  /// True when this is a trace (a non-zero trace id).
  bool valid() const noexcept {
    std::uint64_t high;
    std::uint64_t low;
    std::memcpy(&high, trace_id.data(), 8);
    std::memcpy(&low, trace_id.data() + 8, 8);
    return (high | low) != 0;
  }

  /// The trace id as 32 lowercase hex digits; empty when not valid().
  std::string trace_id_hex() const;

  /// The span id as 16 lowercase hex digits; empty when not valid().
  std::string span_id_hex() const;

  /// The W3C text form, "00-<trace id>-<span id>-<flags>"; empty when not
  /// valid().
  std::string traceparent() const;

  /// A `traceparent` header's value read; nothing for a malformed one, an
  /// all-zero trace or span id, or version ff (as the W3C text says: the
  /// receiver then starts a new trace). Later versions are read as 00.
  static std::optional<trace_context> parse(std::string_view traceparent);

  /// A new trace: random trace and span ids, sampled.
  static trace_context start();

  /// The next hop of this trace: the same trace id and flags, a new random
  /// span id. Of a context that is not valid(), a new trace.
  trace_context child() const;

  friend bool operator==(const trace_context&, const trace_context&) = default;
};

/// While it lives, what this thread sends (node::post, node::send,
/// node::broadcast, and an actor's context verbs) continues `parent`'s
/// trace, each message with a span id of its own. Scopes nest; the
/// innermost wins over the trace of the message an actor is handling.
/// For bridges (the gRPC gateway) and programs that carry a trace in
/// from elsewhere.
class trace_scope {
public:
  explicit trace_scope(const trace_context& parent) noexcept;
  ~trace_scope();

  trace_scope(const trace_scope&) = delete;
  trace_scope& operator=(const trace_scope&) = delete;

private:
  trace_context parent_;
  const trace_context* previous_;
};

} // namespace courier

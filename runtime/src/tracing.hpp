#pragma once

// How the verbs pick the trace context of a message they send
// (courier/trace.hpp, docs/operations.md "Traces"). Private to the runtime.

#include "courier/trace.hpp"

namespace courier::detail {

/// The innermost trace_scope of this thread; null outside any.
extern thread_local constinit const trace_context* scoped_trace;

/// Sets `out` (a new letter's, not valid()) to the trace of a message sent
/// now: the innermost trace_scope's next hop, else that of the message the
/// sender handles (`handling`, null for a plain thread), else a new trace
/// if `start` (node_config::trace); untraced, `out` is left as it is, and
/// this costs a thread-local load and a few tests.
inline void next_trace(trace_context& out, const trace_context* handling,
                       bool start) {
  if (scoped_trace != nullptr) [[unlikely]]
    out = scoped_trace->child();
  else if (handling != nullptr && handling->valid())
    out = handling->child();
  else if (start) [[unlikely]]
    out = trace_context::start();
}

/// True when next_trace would start a new trace for each message: a
/// broadcast then starts one for all its requests (a trace_scope around
/// them).
inline bool starts_trace(const trace_context* handling, bool start) {
  return start && scoped_trace == nullptr
         && (handling == nullptr || !handling->valid());
}

} // namespace courier::detail

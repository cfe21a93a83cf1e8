#pragma once

// How the verbs pick the trace context of a message they send
// (courier/trace.hpp, docs/operations.md "Traces"). Private to the runtime.

#include "courier/trace.hpp"

namespace courier::detail {

/// The innermost trace_scope of this thread; null outside any.
extern thread_local constinit const trace_context* scoped_trace;

/// The trace of a message sent now: the innermost trace_scope's next hop,
/// else that of the message the sender handles (`handling`, null for a
/// plain thread), else a new trace if `start` (node_config::trace), else
/// none. Untraced, this is a thread-local load and two tests.
inline trace_context next_trace(const trace_context* handling, bool start) {
  if (scoped_trace != nullptr)
    return scoped_trace->child();
  if (handling != nullptr && handling->valid())
    return handling->child();
  if (start)
    return trace_context::start();
  return {};
}

/// True when next_trace would start a new trace for each message: a
/// broadcast then starts one for all its requests (a trace_scope around
/// them).
inline bool starts_trace(const trace_context* handling, bool start) {
  return start && scoped_trace == nullptr
         && (handling == nullptr || !handling->valid());
}

} // namespace courier::detail

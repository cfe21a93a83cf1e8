#pragma once

// Field walking shared by the frame codec's files (frame.cpp, the hand-
// written heads; frame_bulk.cpp, large frames read in two strings). Private
// to them.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/message.h>

#include "courier/error.hpp"
#include "courier/trace.hpp"
#include "courier/v1/envelope.pb.h"

namespace courier::detail::wire {

using google::protobuf::io::CodedInputStream;

/// Envelope.payload is field 4, length-delimited.
constexpr std::uint32_t payload_field = 4;
constexpr std::uint32_t payload_tag = (payload_field << 3) | 2;

/// Envelope.trace is field 19: the trace id, the span id and the flags.
constexpr std::uint32_t trace_field = 19;
constexpr std::size_t trace_size = 16 + 8 + 1;

/// The 25 bytes of a valid trace context, written at `at`.
inline void put_trace(const trace_context& trace, std::uint8_t* at) {
  std::memcpy(at, trace.trace_id.data(), 16);
  std::memcpy(at + 16, trace.span_id.data(), 8);
  at[24] = trace.flags;
}

/// A trace context from the field's bytes; not valid() unless they are
/// 25 bytes with a non-zero trace id (anything else is ignored).
inline trace_context get_trace(std::string_view bytes) {
  trace_context out;
  if (bytes.size() != trace_size)
    return out;
  std::memcpy(out.trace_id.data(), bytes.data(), 16);
  std::memcpy(out.span_id.data(), bytes.data() + 16, 8);
  out.flags = static_cast<std::uint8_t>(bytes[24]);
  return out;
}

inline std::size_t position(const CodedInputStream& in) {
  return static_cast<std::size_t>(in.CurrentPosition());
}

/// Skips the value of a field whose tag was just read, except a length-
/// delimited one's (whose length is read into `length`); false for a
/// malformed value, a group, or one past the end.
inline bool skip_value(CodedInputStream& in, std::uint32_t tag, std::uint32_t& length) {
  length = 0;
  switch (tag & 7) {
    case 0: { // varint
      std::uint64_t ignored;
      return in.ReadVarint64(&ignored);
    }
    case 1: // fixed64
      return in.Skip(8);
    case 2: // length-delimited
      return in.ReadVarint32(&length);
    case 5: // fixed32
      return in.Skip(4);
    default: // groups have no place in an envelope, nor are they split
      return false;
  }
}

/// Reads fields up to the next length-delimited one and returns its tag and
/// length, the stream then at its bytes; `at` is where its tag starts. False
/// at the end (`tag` then 0) or on bytes that are no fields.
inline bool next_delimited(CodedInputStream& in, std::uint32_t& tag,
                    std::uint32_t& length, std::size_t& at) {
  for (;;) {
    at = position(in);
    tag = in.ReadTag();
    if (tag == 0 || !skip_value(in, tag, length))
      return false;
    if ((tag & 7) == 2)
      return true;
  }
}

inline bool merge(v1::Envelope& env, const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return true;
  CodedInputStream in{data, static_cast<int>(size)};
  return env.MergePartialFromCodedStream(&in) && in.ConsumedEntireMessage();
}

/// Parses `bytes` into `msg`, merging, without the initialization check.
inline bool merge_partial(std::string_view bytes, google::protobuf::Message& msg,
                   int recursion_limit) {
  if (bytes.empty())
    return true;
  CodedInputStream in{reinterpret_cast<const std::uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size())};
  in.SetRecursionLimit(recursion_limit);
  return msg.MergePartialFromCodedStream(&in) && in.ConsumedEntireMessage();
}

/// The error for bytes that are not an envelope, saying why.
inline error not_an_envelope(std::string_view why) {
  return error{errc::invalid_argument,
               "a frame that is not an envelope: " + std::string{why}};
}

} // namespace courier::detail::wire

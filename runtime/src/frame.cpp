#include "frame.hpp"

#include <climits>
#include <cstring>

#include <google/protobuf/io/coded_stream.h>

namespace courier::detail {

namespace {

using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;

/// Envelope.payload is field 4, length-delimited.
constexpr std::uint32_t payload_field = 4;
constexpr std::uint32_t payload_tag = (payload_field << 3) | 2;

/// Where the payload field lies in a frame, found by walking its top-level
/// fields without parsing them.
struct payload_span {
  std::size_t field_begin = 0; // the tag
  std::size_t data_begin = 0;  // the bytes
  std::size_t data_end = 0;
  int count = 0;
};

bool find_payload(const std::uint8_t* data, std::size_t size,
                  payload_span& out) {
  CodedInputStream in{data, static_cast<int>(size)};
  for (;;) {
    auto at = static_cast<std::size_t>(in.CurrentPosition());
    auto tag = in.ReadTag();
    if (tag == 0)
      return at == size; // the end, or a malformed tag
    switch (tag & 7) {
      case 0: { // varint
        std::uint64_t ignored;
        if (!in.ReadVarint64(&ignored))
          return false;
        break;
      }
      case 1: // fixed64
        if (!in.Skip(8))
          return false;
        break;
      case 2: { // length-delimited
        std::uint32_t length;
        if (!in.ReadVarint32(&length))
          return false;
        auto begin = static_cast<std::size_t>(in.CurrentPosition());
        if (length > size - begin || !in.Skip(static_cast<int>(length)))
          return false;
        if (tag == payload_tag) {
          out = payload_span{at, begin, begin + length, out.count + 1};
        }
        break;
      }
      case 5: // fixed32
        if (!in.Skip(4))
          return false;
        break;
      default: // groups have no place in an envelope
        return false;
    }
  }
}

bool merge(v1::Envelope& env, const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return true;
  CodedInputStream in{data, static_cast<int>(size)};
  return env.MergePartialFromCodedStream(&in) && in.ConsumedEntireMessage();
}

} // namespace

bool encode_frame(const v1::Envelope& env,
                  const google::protobuf::Message* payload, std::string& out) {
  out.clear();
  if (!env.AppendToString(&out))
    return false;
  if (payload == nullptr)
    return true;
  if (!payload->IsInitialized())
    return false;
  auto size = payload->ByteSizeLong();
  if (size > INT_MAX)
    return false;
  std::uint8_t head[1 + 5]; // the tag, and a varint32 of at most 5 bytes
  head[0] = static_cast<std::uint8_t>(payload_tag);
  auto* head_end = CodedOutputStream::WriteVarint32ToArray(
    static_cast<std::uint32_t>(size), head + 1);
  auto head_size = static_cast<std::size_t>(head_end - head);
  auto at = out.size();
  out.resize(at + head_size + size);
  auto* dest = reinterpret_cast<std::uint8_t*>(out.data()) + at;
  std::memcpy(dest, head, head_size);
  payload->SerializeWithCachedSizesToArray(dest + head_size);
  return true;
}

bool decode_frame(std::string_view frame, v1::Envelope& env,
                  std::string_view& payload) {
  env.Clear();
  payload = {};
  if (frame.size() > INT_MAX)
    return false;
  const auto* data = reinterpret_cast<const std::uint8_t*>(frame.data());
  payload_span span;
  if (!find_payload(data, frame.size(), span))
    return false;
  if (span.count > 1) { // the last one counts: let Protobuf sort it out
    if (!env.ParseFromArray(frame.data(), static_cast<int>(frame.size())))
      return false;
    payload = env.payload();
    return true;
  }
  if (span.count == 0)
    return merge(env, data, frame.size());
  if (!merge(env, data, span.field_begin)
      || !merge(env, data + span.data_end, frame.size() - span.data_end))
    return false;
  payload = frame.substr(span.data_begin, span.data_end - span.data_begin);
  return true;
}

} // namespace courier::detail

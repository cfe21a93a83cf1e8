#include "frame.hpp"

#include <climits>
#include <cstring>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream.h>

namespace courier {

// -- frame ----------------------------------------------------------------------

std::string frame::flatten() && {
  if (parts_.empty())
    return std::move(owned_);
  std::string out;
  out.reserve(size_);
  for_each_part([&](std::string_view part) { out.append(part); });
  return out;
}

char* frame::extend(std::size_t n) {
  auto at = owned_.size();
  owned_.resize(at + n);
  if (!parts_.empty()) {
    auto& last = parts_.back();
    if (last.alias == nullptr && last.offset + last.size == at)
      last.size += n;
    else
      parts_.push_back(part{nullptr, at, n});
    size_ += n;
  }
  return owned_.data() + at;
}

void frame::shrink(std::size_t n) {
  owned_.resize(owned_.size() - n);
  if (parts_.empty())
    return;
  auto& last = parts_.back(); // owned: shrink follows extend
  last.size -= n;
  if (last.size == 0)
    parts_.pop_back();
  size_ -= n;
}

void frame::alias(const char* data, std::size_t size) {
  if (parts_.empty()) {
    size_ = owned_.size();
    if (!owned_.empty())
      parts_.push_back(part{nullptr, 0, owned_.size()});
  }
  parts_.push_back(part{data, 0, size});
  size_ += size;
}

} // namespace courier

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

/// Payloads from this size on are serialized around their large string and
/// bytes fields, which the frame refers to instead of copying.
constexpr std::size_t aliasing_threshold = std::size_t{64} << 10;

/// Serializes into a frame: owned chunks for the small fields, references
/// for the large ones (Protobuf decides, by what is left of the chunk).
class frame_output final : public google::protobuf::io::ZeroCopyOutputStream {
public:
  explicit frame_output(frame& out) : out_(out) {
  }

  bool Next(void** data, int* size) override {
    *data = out_.extend(chunk_size);
    *size = static_cast<int>(chunk_size);
    bytes_ += chunk_size;
    return true;
  }

  void BackUp(int count) override {
    out_.shrink(static_cast<std::size_t>(count));
    bytes_ -= count;
  }

  std::int64_t ByteCount() const override {
    return bytes_;
  }

  bool AllowsAliasing() const override {
    return true;
  }

  bool WriteAliasedRaw(const void* data, int size) override {
    out_.alias(static_cast<const char*>(data), static_cast<std::size_t>(size));
    bytes_ += size;
    return true;
  }

private:
  static constexpr std::size_t chunk_size = 8192;
  frame& out_;
  std::int64_t bytes_ = 0;
};

/// The tag and length of the payload field, written at `at`; returns the end.
std::uint8_t* write_payload_head(std::uint8_t* at, std::size_t size) {
  *at++ = static_cast<std::uint8_t>(payload_tag);
  return CodedOutputStream::WriteVarint32ToArray(
    static_cast<std::uint32_t>(size), at);
}

} // namespace

bool encode_frame(const v1::Envelope& env,
                  const google::protobuf::Message* payload, frame& out,
                  std::shared_ptr<const void> keep_alive) {
  out = frame{};
  auto head = env.ByteSizeLong();
  std::size_t size = 0;
  if (payload != nullptr) {
    if (!payload->IsInitialized())
      return false;
    size = payload->ByteSizeLong();
    if (size > INT_MAX)
      return false;
  }
  if (payload != nullptr && keep_alive && size >= aliasing_threshold) {
    auto* at = reinterpret_cast<std::uint8_t*>(out.extend(head + 6));
    env.SerializeWithCachedSizesToArray(at);
    auto* end = write_payload_head(at + head, size);
    out.shrink(static_cast<std::size_t>(at + head + 6 - end));
    frame_output stream{out};
    {
      CodedOutputStream coded{&stream};
      coded.EnableAliasing(true);
      payload->SerializeWithCachedSizes(&coded);
      if (coded.HadError())
        return false;
    }
    out.keep_alive(std::move(keep_alive));
    return true;
  }
  // Small payloads: one buffer, one pass.
  std::string bytes;
  bytes.resize(head + (payload != nullptr ? 6 + size : 0));
  auto* at = reinterpret_cast<std::uint8_t*>(bytes.data());
  env.SerializeWithCachedSizesToArray(at);
  if (payload != nullptr) {
    auto* end = write_payload_head(at + head, size);
    end = payload->SerializeWithCachedSizesToArray(end);
    bytes.resize(static_cast<std::size_t>(end - at));
  }
  out = frame{std::move(bytes)};
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

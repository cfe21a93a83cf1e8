#include "frame.hpp"
#include "frame_fields.hpp"

#include <climits>
#include <cstring>
#include <type_traits>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream.h>
#include <google/protobuf/stubs/common.h>

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

using namespace wire;

namespace {

using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;


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
    std::uint32_t tag;
    std::uint32_t length;
    std::size_t at;
    if (!next_delimited(in, tag, length, at))
      return tag == 0 && at == size; // the end, or a malformed field
    auto begin = position(in);
    if (length > size - begin || !in.Skip(static_cast<int>(length)))
      return false;
    if (tag == payload_tag)
      out = payload_span{at, begin, begin + length, out.count + 1};
  }
}


/// Payloads from this size on are serialized around their large string and
/// bytes fields, which the frame refers to instead of copying.
constexpr std::size_t aliasing_threshold = bulk_threshold;


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

namespace {

// -- envelope heads, by hand -------------------------------------------------------
//
// Protobuf writes fields in the order of their numbers, and leaves out those
// at their default (a sub-message that is set is written, even empty):
// head_size() and write_head() do the same, so their bytes are the bytes
// Protobuf would write for the same Envelope (frame_test checks this).

enum wire_type : std::uint32_t { varint = 0, delimited = 2 };

constexpr std::uint32_t tag_of(std::uint32_t field, wire_type type) {
  return (field << 3) | type;
}

std::size_t varint_size(std::uint64_t value) {
  return CodedOutputStream::VarintSize64(value);
}

std::uint8_t* put_varint(std::uint64_t value, std::uint8_t* at) {
  return CodedOutputStream::WriteVarint64ToArray(value, at);
}

/// Envelope, ActorAddress and Status fields by number.
enum : std::uint32_t {
  f_target = 1, f_sender = 2, f_type_name = 3, f_message_id = 5,
  f_correlation_id = 6, f_kind = 7, f_timeout_ns = 8, f_priority = 9,
  f_created_unix_ns = 11, f_error = 17,
  f_node = 1, f_actor = 2, // ActorAddress
  f_code = 1, f_message = 2 // Status
};

std::size_t scalar_size(std::uint32_t field, std::uint64_t value) {
  return value == 0 ? 0 : varint_size(tag_of(field, varint)) + varint_size(value);
}

std::size_t string_size(std::uint32_t field, std::string_view text) {
  return text.empty() ? 0
                      : varint_size(tag_of(field, delimited))
                          + varint_size(text.size()) + text.size();
}

std::size_t nested_size(std::uint32_t field, std::size_t inner) {
  return varint_size(tag_of(field, delimited)) + varint_size(inner) + inner;
}

std::uint8_t* put_scalar(std::uint32_t field, std::uint64_t value,
                         std::uint8_t* at) {
  if (value == 0)
    return at;
  return put_varint(value, put_varint(tag_of(field, varint), at));
}

std::uint8_t* put_string(std::uint32_t field, std::string_view text,
                         std::uint8_t* at) {
  if (text.empty())
    return at;
  at = put_varint(text.size(), put_varint(tag_of(field, delimited), at));
  std::memcpy(at, text.data(), text.size());
  return at + text.size();
}

std::uint8_t* put_nested(std::uint32_t field, std::size_t inner,
                         std::uint8_t* at) {
  return put_varint(inner, put_varint(tag_of(field, delimited), at));
}

/// Enums and int64 fields go on the wire as their 64-bit two's complement.
std::uint64_t as_varint(std::int64_t value) {
  return static_cast<std::uint64_t>(value);
}

std::size_t sender_size(const envelope_head& h) {
  return string_size(f_node, h.sender_node) + string_size(f_actor, h.sender_actor);
}

std::size_t error_size(const envelope_head& h) {
  return scalar_size(f_code, h.error_code)
         + string_size(f_message, h.error_message);
}

/// Field 19 when the head has a trace: tag (2 bytes), length, 25 bytes.
std::size_t trace_field_size(const envelope_head& h) {
  return h.trace.valid() ? varint_size(tag_of(trace_field, delimited)) + 1
                             + trace_size
                         : 0;
}

std::size_t head_size(const envelope_head& h) {
  return string_size(f_target, h.target)
         + (h.has_sender ? nested_size(f_sender, sender_size(h)) : 0)
         + string_size(f_type_name, h.type_name)
         + scalar_size(f_message_id, h.message_id)
         + scalar_size(f_correlation_id, h.correlation_id)
         + scalar_size(f_kind, as_varint(h.kind))
         + scalar_size(f_timeout_ns, h.timeout_ns)
         + scalar_size(f_priority, h.priority)
         + scalar_size(f_created_unix_ns, as_varint(h.created_unix_ns))
         + (h.has_error ? nested_size(f_error, error_size(h)) : 0)
         + trace_field_size(h);
}

std::uint8_t* write_head(const envelope_head& h, std::uint8_t* at) {
  at = put_string(f_target, h.target, at);
  if (h.has_sender) {
    at = put_nested(f_sender, sender_size(h), at);
    at = put_string(f_node, h.sender_node, at);
    at = put_string(f_actor, h.sender_actor, at);
  }
  at = put_string(f_type_name, h.type_name, at);
  at = put_scalar(f_message_id, h.message_id, at);
  at = put_scalar(f_correlation_id, h.correlation_id, at);
  at = put_scalar(f_kind, as_varint(h.kind), at);
  at = put_scalar(f_timeout_ns, h.timeout_ns, at);
  at = put_scalar(f_priority, h.priority, at);
  at = put_scalar(f_created_unix_ns, as_varint(h.created_unix_ns), at);
  if (h.has_error) {
    at = put_nested(f_error, error_size(h), at);
    at = put_scalar(f_code, h.error_code, at);
    at = put_string(f_message, h.error_message, at);
  }
  if (h.trace.valid()) {
    at = put_nested(trace_field, trace_size, at);
    put_trace(h.trace, at);
    at += trace_size;
  }
  return at;
}

/// Reads what write_head writes, and nothing else: false for any other
/// field, a field seen twice, a string that is not ASCII (Protobuf checks
/// UTF-8), a value too large for its field or a malformed one. Protobuf
/// then decides, so that both always agree.
class head_reader {
public:
  head_reader(const std::uint8_t* at, const std::uint8_t* end)
    : at_(at), end_(end) {
  }

  bool done() const {
    return at_ == end_;
  }

  bool tag(std::uint32_t& field, std::uint32_t& type) {
    std::uint64_t value;
    if (!number(value) || value > UINT32_MAX)
      return false;
    field = static_cast<std::uint32_t>(value >> 3);
    type = static_cast<std::uint32_t>(value & 7);
    return true;
  }

  bool number(std::uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64 && at_ != end_; shift += 7) {
      auto byte = *at_++;
      value |= std::uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0)
        return shift < 63 || byte <= 1; // the tenth byte holds one bit
    }
    return false;
  }

  bool bytes(std::string_view& out) {
    std::uint64_t size;
    if (!number(size) || size > static_cast<std::uint64_t>(end_ - at_))
      return false;
    out = {reinterpret_cast<const char*>(at_), static_cast<std::size_t>(size)};
    at_ += size;
    return true;
  }

  bool text(std::string_view& out) {
    return bytes(out) && ascii(out);
  }

  static bool ascii(std::string_view text) {
    for (unsigned char c : text)
      if (c >= 0x80)
        return false;
    return true;
  }

private:
  const std::uint8_t* at_;
  const std::uint8_t* end_;
};

/// Reads a sub-message of two fields: 1, a string or a uint32 (as `First`),
/// and 2, a string.
template <class First>
bool read_pair(std::string_view bytes, First& first, std::string_view& second) {
  const auto* at = reinterpret_cast<const std::uint8_t*>(bytes.data());
  head_reader in{at, at + bytes.size()};
  bool seen[3] = {};
  while (!in.done()) {
    std::uint32_t field;
    std::uint32_t type;
    if (!in.tag(field, type) || field < 1 || field > 2 || seen[field])
      return false;
    seen[field] = true;
    if (field == 2) {
      if (type != delimited || !in.text(second))
        return false;
    } else if constexpr (std::is_same_v<First, std::string_view>) {
      if (type != delimited || !in.text(first))
        return false;
    } else {
      std::uint64_t value;
      if (type != varint || !in.number(value) || value > UINT32_MAX)
        return false;
      first = static_cast<std::uint32_t>(value);
    }
  }
  return true;
}

/// Decodes the frames Courier writes without Protobuf; false leaves the
/// frame to Protobuf (which may accept it: another field, say).
bool read_head(std::string_view frame, envelope_head& h,
               std::string_view& payload) {
  const auto* at = reinterpret_cast<const std::uint8_t*>(frame.data());
  head_reader in{at, at + frame.size()};
  std::uint32_t seen = 0;
  while (!in.done()) {
    std::uint32_t field;
    std::uint32_t type;
    if (!in.tag(field, type) || field > 31 || (seen >> field & 1) != 0)
      return false;
    seen |= 1u << field;
    std::uint64_t value = 0;
    std::string_view bytes;
    if (type == varint) {
      if (!in.number(value))
        return false;
    } else if (type != delimited || !in.bytes(bytes)) {
      return false;
    }
    // Fields 1-4, 17 and 19 are length-delimited, the others varints.
    const bool delimited_field
      = field <= payload_field || field == f_error || field == trace_field;
    if ((type == delimited) != delimited_field)
      return false;
    switch (field) {
      case f_target:
        if (!head_reader::ascii(bytes))
          return false;
        h.target = bytes;
        break;
      case f_sender:
        if (!read_pair(bytes, h.sender_node, h.sender_actor))
          return false;
        h.has_sender = true;
        break;
      case f_type_name:
        if (!head_reader::ascii(bytes))
          return false;
        h.type_name = bytes;
        break;
      case payload_field:
        payload = bytes;
        break;
      case f_message_id:
        h.message_id = value;
        break;
      case f_correlation_id:
        h.correlation_id = value;
        break;
      case f_timeout_ns:
        h.timeout_ns = value;
        break;
      case f_created_unix_ns:
        h.created_unix_ns = static_cast<std::int64_t>(value);
        break;
      case f_kind:
        if (value > INT32_MAX)
          return false;
        h.kind = static_cast<std::int32_t>(value);
        break;
      case f_priority:
        if (value > UINT32_MAX)
          return false;
        h.priority = static_cast<std::uint32_t>(value);
        break;
      case f_error:
        if (!read_pair(bytes, h.error_code, h.error_message))
          return false;
        h.has_error = true;
        break;
      case trace_field:
        h.trace = get_trace(bytes);
        if (!h.trace.valid())
          return false; // Protobuf reads it, and the head ignores it
        break;
      default:
        return false;
    }
  }
  return true;
}

/// The envelope's bytes for encode_frame: Protobuf's, or ours.
struct protobuf_head {
  const v1::Envelope& env;
  std::size_t size() const {
    return env.ByteSizeLong();
  }
  void write(std::uint8_t* at) const {
    env.SerializeWithCachedSizesToArray(at);
  }
};

struct courier_head {
  const envelope_head& head;
  std::size_t size() const {
    return head_size(head);
  }
  void write(std::uint8_t* at) const {
    write_head(head, at);
  }
};

template <class Head>
expected<void> encode_with(const Head& env,
                           const google::protobuf::Message* payload, frame& out,
                           std::shared_ptr<const void> keep_alive) {
  out = frame{};
  auto head = env.size();
  std::size_t size = 0;
  if (payload != nullptr) {
    if (!payload->IsInitialized())
      return error{errc::invalid_argument,
                   "cannot serialize " + payload->GetDescriptor()->full_name()
                     + ": required fields are missing ("
                     + payload->InitializationErrorString() + ")"};
    size = payload->ByteSizeLong();
    if (size > INT_MAX)
      return error{errc::resource_exhausted,
                   "a payload of " + std::to_string(size)
                     + " bytes is over Protobuf's 2 GiB"};
  }
  if (payload != nullptr && keep_alive && size >= aliasing_threshold) {
    auto* at = reinterpret_cast<std::uint8_t*>(out.extend(head + 6));
    env.write(at);
    auto* end = write_payload_head(at + head, size);
    out.shrink(static_cast<std::size_t>(at + head + 6 - end));
    frame_output stream{out};
    {
      CodedOutputStream coded{&stream};
      coded.EnableAliasing(true);
      payload->SerializeWithCachedSizes(&coded);
      if (coded.HadError())
        return error{errc::internal, "serializing the payload failed"};
    }
    out.keep_alive(std::move(keep_alive));
    return {};
  }
  // Small payloads: one buffer, one pass.
  std::string bytes;
  bytes.resize(head + (payload != nullptr ? 6 + size : 0));
  auto* at = reinterpret_cast<std::uint8_t*>(bytes.data());
  env.write(at);
  if (payload != nullptr) {
    auto* end = write_payload_head(at + head, size);
    end = payload->SerializeWithCachedSizesToArray(end);
    bytes.resize(static_cast<std::size_t>(end - at));
  }
  out = frame{std::move(bytes)};
  return {};
}


} // namespace

expected<void> encode_frame(const v1::Envelope& env,
                            const google::protobuf::Message* payload,
                            frame& out,
                            std::shared_ptr<const void> keep_alive) {
  return encode_with(protobuf_head{env}, payload, out, std::move(keep_alive));
}

expected<void> encode_frame(const envelope_head& head,
                            const google::protobuf::Message* payload,
                            frame& out,
                            std::shared_ptr<const void> keep_alive) {
  if (head.has_durable_fields())
    return encode_frame(envelope_from(head), payload, out,
                        std::move(keep_alive));
  return encode_with(courier_head{head}, payload, out, std::move(keep_alive));
}

v1::Envelope envelope_from(const envelope_head& h) {
  v1::Envelope env;
  env.set_target(std::string{h.target});
  if (h.has_sender) {
    env.mutable_sender()->set_node(std::string{h.sender_node});
    env.mutable_sender()->set_actor(std::string{h.sender_actor});
  }
  env.set_type_name(std::string{h.type_name});
  env.set_message_id(h.message_id);
  env.set_correlation_id(h.correlation_id);
  env.set_kind(static_cast<v1::Kind>(h.kind));
  env.set_timeout_ns(h.timeout_ns);
  env.set_priority(h.priority);
  env.set_delivery(static_cast<v1::DeliveryClass>(h.delivery));
  env.set_created_unix_ns(h.created_unix_ns);
  env.set_time_to_reach_queue_ns(h.time_to_reach_queue_ns);
  env.set_time_to_be_received_ns(h.time_to_be_received_ns);
  env.set_producer_id(h.producer_id);
  env.set_producer_epoch(h.producer_epoch);
  env.set_sequence(h.sequence);
  env.set_broadcast(h.broadcast);
  if (h.has_error) {
    env.mutable_error()->set_code(h.error_code);
    env.mutable_error()->set_message(std::string{h.error_message});
  }
  if (h.trace.valid())
    put_trace(h.trace, reinterpret_cast<std::uint8_t*>(
                         env.mutable_trace()->assign(trace_size, '\0').data()));
  return env;
}

envelope_head head_of(const v1::Envelope& env) {
  envelope_head h;
  h.target = env.target();
  h.has_sender = env.has_sender();
  h.sender_node = env.sender().node();
  h.sender_actor = env.sender().actor();
  h.type_name = env.type_name();
  h.message_id = env.message_id();
  h.correlation_id = env.correlation_id();
  h.kind = env.kind();
  h.timeout_ns = env.timeout_ns();
  h.priority = env.priority();
  h.created_unix_ns = env.created_unix_ns();
  h.has_error = env.has_error();
  h.error_code = env.error().code();
  h.error_message = env.error().message();
  h.delivery = env.delivery();
  h.time_to_reach_queue_ns = env.time_to_reach_queue_ns();
  h.time_to_be_received_ns = env.time_to_be_received_ns();
  h.producer_id = env.producer_id();
  h.producer_epoch = env.producer_epoch();
  h.sequence = env.sequence();
  h.broadcast = env.broadcast();
  h.trace = get_trace(env.trace());
  return h;
}

expected<void> decode_frame(std::string_view frame, envelope_head& head,
                            v1::Envelope& spare, std::string_view& payload) {
  head = envelope_head{};
  payload = {};
  if (read_head(frame, head, payload))
    return {};
  head = envelope_head{};
  if (auto decoded = decode_frame(frame, spare, payload); !decoded)
    return decoded;
  head = head_of(spare);
  return {};
}

expected<void> decode_frame(std::string_view frame, v1::Envelope& env,
                            std::string_view& payload) {
  env.Clear();
  payload = {};
  if (frame.size() > INT_MAX)
    return not_an_envelope("over 2 GiB");
  const auto* data = reinterpret_cast<const std::uint8_t*>(frame.data());
  payload_span span;
  if (!find_payload(data, frame.size(), span))
    return not_an_envelope("a field's tag or length is malformed or runs "
                           "past the end");
  if (span.count > 1) { // the last one counts: let Protobuf sort it out
    if (!env.ParseFromArray(frame.data(), static_cast<int>(frame.size())))
      return not_an_envelope("Protobuf refuses its fields");
    payload = env.payload();
    return {};
  }
  if (span.count == 0) {
    if (!merge(env, data, frame.size()))
      return not_an_envelope("Protobuf refuses its fields");
    return {};
  }
  // The payload last, as we write it: one parse, from a flat array, which
  // Protobuf does without a stream adaptor.
  bool parsed =
    span.data_end == frame.size()
      ? env.ParsePartialFromArray(data, static_cast<int>(span.field_begin))
      : merge(env, data, span.field_begin)
          && merge(env, data + span.data_end, frame.size() - span.data_end);
  if (!parsed)
    return not_an_envelope("Protobuf refuses its fields");
  payload = frame.substr(span.data_begin, span.data_end - span.data_begin);
  return {};
}

bool parse_payload(std::string_view bytes, google::protobuf::Message& msg,
                   int recursion_limit) {
  if (recursion_limit == CodedInputStream::GetDefaultRecursionLimit())
    // The same parse, from a flat array: without a stream adaptor.
    return msg.ParsePartialFromArray(bytes.data(),
                                     static_cast<int>(bytes.size()))
           && msg.IsInitialized();
  msg.Clear();
  return merge_partial(bytes, msg, recursion_limit) && msg.IsInitialized();
}

} // namespace courier::detail

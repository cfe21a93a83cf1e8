#include "frame.hpp"

#include <climits>
#include <cstring>

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

std::size_t position(const CodedInputStream& in) {
  return static_cast<std::size_t>(in.CurrentPosition());
}

/// Skips the value of a field whose tag was just read, except a length-
/// delimited one's (whose length is read into `length`); false for a
/// malformed value, a group, or one past the end.
bool skip_value(CodedInputStream& in, std::uint32_t tag, std::uint32_t& length) {
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
bool next_delimited(CodedInputStream& in, std::uint32_t& tag,
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

bool merge(v1::Envelope& env, const std::uint8_t* data, std::size_t size) {
  if (size == 0)
    return true;
  CodedInputStream in{data, static_cast<int>(size)};
  return env.MergePartialFromCodedStream(&in) && in.ConsumedEntireMessage();
}

/// Payloads from this size on are serialized around their large string and
/// bytes fields, which the frame refers to instead of copying.
constexpr std::size_t aliasing_threshold = bulk_threshold;

/// Parses `bytes` into `msg`, merging, without the initialization check.
bool merge_partial(std::string_view bytes, google::protobuf::Message& msg,
                   int recursion_limit) {
  if (bytes.empty())
    return true;
  CodedInputStream in{reinterpret_cast<const std::uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size())};
  in.SetRecursionLimit(recursion_limit);
  return msg.MergePartialFromCodedStream(&in) && in.ConsumedEntireMessage();
}

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
  // The payload last, as we write it: one parse, from a flat array, which
  // Protobuf does without a stream adaptor.
  bool parsed =
    span.data_end == frame.size()
      ? env.ParsePartialFromArray(data, static_cast<int>(span.field_begin))
      : merge(env, data, span.field_begin)
          && merge(env, data + span.data_end, frame.size() - span.data_end);
  if (!parsed)
    return false;
  payload = frame.substr(span.data_begin, span.data_end - span.data_begin);
  return true;
}

bulk_span find_bulk(std::string_view head, std::size_t frame_size) {
  if (frame_size > INT_MAX || head.size() > frame_size)
    return {};
  CodedInputStream in{reinterpret_cast<const std::uint8_t*>(head.data()),
                      static_cast<int>(head.size())};
  bulk_span out;
  std::uint32_t tag;
  std::uint32_t length;
  // The envelope's fields, up to the payload, which must come last.
  for (;;) {
    if (!next_delimited(in, tag, length, out.payload_field))
      return {};
    if (tag == payload_tag) {
      out.payload_begin = position(in);
      if (out.payload_begin + length != frame_size)
        return {};
      break;
    }
    if (!in.Skip(static_cast<int>(length)))
      return {};
  }
  // The payload's fields, up to the first large one.
  for (;;) {
    if (!next_delimited(in, tag, length, out.field_begin))
      return {};
    if (length >= bulk_threshold) {
      out.begin = position(in);
      if (out.begin + length > frame_size)
        return {};
      out.size = length;
      return out;
    }
    if (!in.Skip(static_cast<int>(length)))
      return {};
  }
}

bool decode_split_frame(std::string_view rest, std::size_t bulk_at,
                        std::size_t bulk_size, v1::Envelope& env,
                        split_payload& payload) {
  env.Clear();
  payload = {};
  if (bulk_at > rest.size())
    return false;
  auto span = find_bulk(rest.substr(0, bulk_at), rest.size() + bulk_size);
  if (span.size == 0 || span.begin != bulk_at || span.size != bulk_size)
    return false;
  if (!merge(env, reinterpret_cast<const std::uint8_t*>(rest.data()),
             span.payload_field))
    return false;
  env.clear_payload(); // an earlier payload field: the last one counts
  payload.before = rest.substr(span.payload_begin,
                               span.field_begin - span.payload_begin);
  payload.header = rest.substr(span.field_begin, bulk_at - span.field_begin);
  payload.after = rest.substr(bulk_at);
  CodedInputStream in{
    reinterpret_cast<const std::uint8_t*>(payload.header.data()),
    static_cast<int>(payload.header.size())};
  payload.field = static_cast<int>(in.ReadTag() >> 3);
  return true;
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

bool parse_split_payload(const split_payload& payload, std::string& bulk,
                         google::protobuf::Message& msg, int recursion_limit) {
  using google::protobuf::FieldDescriptor;
  using google::protobuf::FileDescriptor;
  msg.Clear();
  const auto* field = msg.GetDescriptor()->FindFieldByNumber(payload.field);
  bool adopt = field != nullptr
               && (field->type() == FieldDescriptor::TYPE_BYTES
                   || field->type() == FieldDescriptor::TYPE_STRING);
  if (!adopt) { // another kind of field, or one unknown here: join
    std::string whole;
    whole.reserve(payload.before.size() + payload.header.size() + bulk.size()
                  + payload.after.size());
    whole.append(payload.before).append(payload.header).append(bulk);
    whole.append(payload.after);
    return parse_payload(whole, msg, recursion_limit);
  }
  // Parsing the parts one after the other is parsing the whole: fields merge
  // in order, the last of a singular field counts.
  if (field->type() == FieldDescriptor::TYPE_STRING
      && field->file()->syntax() == FileDescriptor::SYNTAX_PROTO3
      && !google::protobuf::internal::IsStructurallyValidUTF8(
        bulk.data(), static_cast<int>(bulk.size())))
    return false; // as Protobuf refuses it
  if (!merge_partial(payload.before, msg, recursion_limit))
    return false;
  const auto* reflection = msg.GetReflection();
  if (field->is_repeated())
    reflection->AddString(&msg, field, std::move(bulk));
  else
    reflection->SetString(&msg, field, std::move(bulk));
  bulk.clear();
  return merge_partial(payload.after, msg, recursion_limit)
         && msg.IsInitialized();
}

std::string bulk_pool::take() {
  std::lock_guard guard{mu_};
  if (spare_.empty())
    return {};
  auto out = std::move(spare_.back());
  spare_.pop_back();
  return out;
}

void bulk_pool::give(std::string bulk) {
  if (bulk.capacity() < bulk_threshold)
    return;
  std::lock_guard guard{mu_};
  if (spare_.size() < 2)
    spare_.push_back(std::move(bulk));
}

namespace {

/// Takes the storage of string field `field` out of `msg`, which is about to
/// be deleted: the adopted bulk, if it is still there.
std::string reclaim_bulk(google::protobuf::Message& msg, int field_number) {
  using google::protobuf::FieldDescriptor;
  const auto* field = msg.GetDescriptor()->FindFieldByNumber(field_number);
  if (field == nullptr || field->is_repeated()
      || (field->type() != FieldDescriptor::TYPE_BYTES
          && field->type() != FieldDescriptor::TYPE_STRING))
    return {};
  const auto* reflection = msg.GetReflection();
  if (!reflection->HasField(msg, field))
    return {};
  std::string scratch;
  const auto& held = reflection->GetStringReference(msg, field, &scratch);
  if (&held == &scratch || held.capacity() < bulk_threshold)
    return {}; // not a string of the message's own, or not a bulk
  // The message's own string, reached through Reflection, which only hands
  // out const references to singular fields; nobody reads it any more.
  std::string out;
  out.swap(const_cast<std::string&>(held));
  return out;
}

} // namespace

std::shared_ptr<google::protobuf::Message>
new_bulk_owner(const google::protobuf::Message& prototype, int field,
               std::weak_ptr<bulk_pool> pool) {
  return std::shared_ptr<google::protobuf::Message>{
    prototype.New(),
    [field, pool = std::move(pool)](google::protobuf::Message* msg) {
      if (auto alive = pool.lock())
        alive->give(reclaim_bulk(*msg, field));
      delete msg;
    }};
}

} // namespace courier::detail

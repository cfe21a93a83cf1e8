// Large frames read in two strings: where a frame's bulk lies, and parsing
// the frame and its payload around it (docs/wire-format.md, "Large
// frames").

#include <climits>
#include <iterator>

#include <google/protobuf/reflection.h>

#include "frame.hpp"
#include "frame_fields.hpp"

namespace courier::detail {

using namespace wire;

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

expected<void> decode_split_frame(std::string_view rest, std::size_t bulk_at,
                                  std::size_t bulk_size, v1::Envelope& env,
                                  split_payload& payload) {
  env.Clear();
  payload = {};
  if (bulk_at > rest.size())
    return not_an_envelope("its bulk lies past its end");
  auto span = find_bulk(rest.substr(0, bulk_at), rest.size() + bulk_size);
  if (span.size == 0 || span.begin != bulk_at || span.size != bulk_size)
    return not_an_envelope("its bulk is not its payload's first large field");
  if (!merge(env, reinterpret_cast<const std::uint8_t*>(rest.data()),
             span.payload_field))
    return not_an_envelope("Protobuf refuses its fields");
  env.clear_payload(); // an earlier payload field: the last one counts
  payload.before = rest.substr(span.payload_begin,
                               span.field_begin - span.payload_begin);
  payload.header = rest.substr(span.field_begin, bulk_at - span.field_begin);
  payload.after = rest.substr(bulk_at);
  CodedInputStream in{
    reinterpret_cast<const std::uint8_t*>(payload.header.data()),
    static_cast<int>(payload.header.size())};
  payload.field = static_cast<int>(in.ReadTag() >> 3);
  return {};
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

std::string bulk_pool::take(std::size_t size) {
  std::lock_guard guard{mu_};
  for (auto i = spares_.size(); i-- > 0;) {
    if (spares_[i].bytes.capacity() < size)
      continue;
    auto out = std::move(spares_[i].bytes);
    spares_.erase(spares_.begin() + static_cast<std::ptrdiff_t>(i));
    held_ -= out.capacity();
    return out;
  }
  return {};
}

void bulk_pool::give(std::string bulk) {
  if (bulk.capacity() < bulk_threshold)
    return;
  auto now = clock::now();
  std::vector<spare> gone; // freed outside the lock
  std::lock_guard guard{mu_};
  auto stale = spares_.begin();
  while (stale != spares_.end() && now - stale->since > idle_)
    held_ -= (stale++)->bytes.capacity();
  gone.assign(std::make_move_iterator(spares_.begin()),
              std::make_move_iterator(stale));
  spares_.erase(spares_.begin(), stale);
  if (held_ + bulk.capacity() > budget_)
    return;
  held_ += bulk.capacity();
  spares_.push_back({std::move(bulk), now});
}

std::size_t bulk_pool::held() const {
  std::lock_guard guard{mu_};
  return held_;
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

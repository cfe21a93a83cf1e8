// Frames between nodes: envelopes whose payload is written into the frame
// and read where it lies.

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include <google/protobuf/descriptor.pb.h>

#include "frame.hpp"
#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;
using courier::detail::decode_frame;
using courier::detail::encode_frame;

namespace {

v1::Envelope header() {
  v1::Envelope env;
  env.set_target("counter");
  env.mutable_sender()->set_node("here");
  env.set_type_name("courier_test.v1.Ping");
  env.set_message_id(42);
  env.set_kind(v1::KIND_POST);
  return env;
}

} // namespace

TEST_CASE("a frame carries its payload, read back without a copy",
          "[unit][frame]") {
  auto ping = testing::ping(7, std::string(100000, 'x'));
  courier::frame out;
  REQUIRE(encode_frame(header(), &ping, out));
  CHECK_FALSE(out.aliases()); // nothing to keep alive: all copied
  auto frame = std::move(out).flatten();
  // The same bytes Protobuf would write for the whole envelope.
  auto whole = header();
  *whole.mutable_payload() = ping.SerializeAsString();
  v1::Envelope reference;
  REQUIRE(reference.ParseFromString(frame));
  CHECK(reference.SerializeAsString() == whole.SerializeAsString());

  v1::Envelope env;
  std::string_view payload;
  REQUIRE(decode_frame(frame, env, payload));
  CHECK(env.target() == "counter");
  CHECK(env.message_id() == 42);
  CHECK(env.payload().empty());
  CHECK(payload.data() >= frame.data());
  CHECK(payload.data() + payload.size() <= frame.data() + frame.size());
  tpb::Ping back;
  REQUIRE(back.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
  CHECK(back.seq() == 7);
  CHECK(back.text().size() == 100000);
}

TEST_CASE("a payload anywhere in the frame, or twice, reads as Protobuf "
          "would",
          "[unit][frame]") {
  // Payload first, then the other fields: another writer's order.
  v1::Envelope first;
  first.set_payload("abc");
  auto rest = header();
  auto frame = first.SerializeAsString() + rest.SerializeAsString();
  v1::Envelope env;
  std::string_view payload;
  REQUIRE(decode_frame(frame, env, payload));
  CHECK(payload == "abc");
  CHECK(env.target() == "counter");
  // Twice: the last one counts.
  v1::Envelope second;
  second.set_payload("defg");
  frame += second.SerializeAsString();
  REQUIRE(decode_frame(frame, env, payload));
  CHECK(payload == "defg");
  CHECK(env.message_id() == 42);
}

TEST_CASE("a frame without payload, and bytes that are no envelope",
          "[unit][frame]") {
  courier::frame out;
  REQUIRE(encode_frame(header(), nullptr, out));
  auto frame = std::move(out).flatten();
  v1::Envelope env;
  std::string_view payload;
  REQUIRE(decode_frame(frame, env, payload));
  CHECK(payload.empty());
  CHECK(env.kind() == v1::KIND_POST);
  CHECK(decode_frame("", env, payload)); // an empty envelope is valid

  auto ping = testing::ping(1, "hello");
  REQUIRE(encode_frame(header(), &ping, out));
  frame = std::move(out).flatten();
  CHECK_FALSE(decode_frame(frame.substr(0, frame.size() - 1), env, payload));
  CHECK_FALSE(decode_frame(std::string("\x22\xff\xff\xff\xff\x0f", 6), env,
                           payload)); // a length past the end
  CHECK_FALSE(decode_frame(std::string("\x0b\x01", 2), env,
                           payload)); // a group: not in an envelope
  CHECK_FALSE(decode_frame(std::string("\xff", 1), env, payload));
}

TEST_CASE("a large payload's big fields are referred to, not copied, and the "
          "frame holds the message",
          "[unit][frame]") {
  auto ping = std::make_shared<tpb::Ping>(
    testing::ping(9, std::string(300000, 'y')));
  const auto* text = ping->text().data();
  courier::frame out;
  REQUIRE(encode_frame(header(), ping.get(), out, ping));
  REQUIRE(out.aliases());
  bool points_into_message = false;
  std::size_t total = 0;
  out.for_each_part([&](std::string_view part) {
    points_into_message = points_into_message || part.data() == text;
    total += part.size();
  });
  CHECK(points_into_message);
  CHECK(total == out.size());
  std::weak_ptr<tpb::Ping> watch = ping;
  ping.reset();
  CHECK_FALSE(watch.expired()); // the frame keeps it

  auto whole = header();
  *whole.mutable_payload() = watch.lock()->SerializeAsString();
  auto frame = std::move(out).flatten();
  v1::Envelope reference; // the payload comes last: equal once parsed
  REQUIRE(reference.ParseFromString(frame));
  CHECK(reference.SerializeAsString() == whole.SerializeAsString());
  out = courier::frame{};
  CHECK(watch.expired()); // and lets go with it

  v1::Envelope env;
  std::string_view payload;
  REQUIRE(decode_frame(frame, env, payload));
  tpb::Ping back;
  REQUIRE(back.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
  CHECK(back.seq() == 9);
  CHECK(back.text() == std::string(300000, 'y'));
}

TEST_CASE("a frame built from parts: owned, referred, shrunk", "[unit][frame]") {
  std::string outside = "0123456789";
  courier::frame f;
  std::memcpy(f.extend(4), "abcd", 4);
  f.shrink(1);
  f.alias(outside.data(), outside.size());
  std::memcpy(f.extend(3), "xyz", 3);
  f.shrink(3);
  std::memcpy(f.extend(2), "XY", 2);
  CHECK(f.size() == 3 + 10 + 2);
  CHECK(std::move(f).flatten() == "abc0123456789XY");
  courier::frame plain{std::string{"plain"}};
  CHECK_FALSE(plain.aliases());
  CHECK(plain.size() == 5);
}

TEST_CASE("a frame reader agrees with Protobuf on damaged and random bytes",
          "[unit][frame]") {
  // Whatever decode_frame accepts, Protobuf parses to the same envelope;
  // whatever Protobuf refuses, decode_frame refuses. (It may refuse more:
  // groups, which no envelope has.)
  std::mt19937 random{20261124};
  auto ping = testing::ping(3, "payload");
  courier::frame out;
  REQUIRE(encode_frame(header(), &ping, out));
  auto valid = std::move(out).flatten();
  auto check = [](const std::string& bytes) {
    v1::Envelope ours;
    std::string_view payload;
    bool accepted = decode_frame(bytes, ours, payload).has_value();
    v1::Envelope theirs;
    bool parsed = theirs.ParseFromString(bytes);
    if (!accepted)
      return;
    REQUIRE(parsed);
    ours.set_payload(std::string{payload});
    REQUIRE(ours.SerializeAsString() == theirs.SerializeAsString());
  };
  for (int i = 0; i < 3000; ++i) {
    auto damaged = valid;
    switch (i % 3) {
      case 0: // flip a few bits
        for (int k = 0; k < 1 + i % 4; ++k)
          damaged[random() % damaged.size()] ^=
            static_cast<char>(1u << (random() % 8));
        break;
      case 1: // cut it short
        damaged.resize(random() % damaged.size());
        break;
      default: { // random bytes
        std::string noise(random() % 64, '\0');
        for (auto& c : noise)
          c = static_cast<char>(random());
        damaged = noise;
      }
    }
    check(damaged);
  }
}

namespace {

using courier::detail::bulk_threshold;
using courier::detail::decode_split_frame;
using courier::detail::find_bulk;
using courier::detail::parse_split_payload;
using courier::detail::split_payload;

v1::Envelope blob_header() {
  auto env = header();
  env.set_type_name("courier_test.v1.Blob");
  return env;
}

std::string frame_of(const google::protobuf::Message& payload) {
  courier::frame out;
  REQUIRE(encode_frame(blob_header(), &payload, out));
  return std::move(out).flatten();
}

/// Reads `frame` as a transport does when it splits: the first `head` bytes
/// decide; the bulk goes apart. Returns false when no bulk was found.
bool read_split(const std::string& frame, std::size_t head,
                google::protobuf::Message& into, bool& parsed,
                const void** bulk_storage = nullptr) {
  auto span = find_bulk(std::string_view{frame}.substr(0, head), frame.size());
  if (span.size == 0)
    return false;
  std::string bulk = frame.substr(span.begin, span.size);
  if (bulk_storage != nullptr)
    *bulk_storage = bulk.data();
  std::string rest = frame.substr(0, span.begin)
                     + frame.substr(span.begin + span.size);
  v1::Envelope env;
  split_payload payload;
  REQUIRE(decode_split_frame(rest, span.begin, bulk.size(), env, payload));
  CHECK(env.target() == "counter");
  CHECK(env.type_name() == "courier_test.v1.Blob");
  CHECK(env.payload().empty());
  parsed = parse_split_payload(payload, bulk, into, 100);
  return true;
}

} // namespace

TEST_CASE("a large frame's bulk field is found in its first bytes, and the "
          "parsed message adopts it without a copy",
          "[unit][frame]") {
  tpb::Blob blob;
  blob.set_label("first");
  blob.set_data(std::string(200000, 'd'));
  blob.set_after(77);
  blob.set_text("tail");
  auto frame = frame_of(blob);

  auto span = find_bulk(std::string_view{frame}.substr(0, 4096), frame.size());
  REQUIRE(span.size == 200000);
  CHECK(std::string_view{frame}.substr(span.begin, span.size)
        == blob.data());

  tpb::Blob back;
  bool parsed = false;
  const void* storage = nullptr;
  REQUIRE(read_split(frame, 4096, back, parsed, &storage));
  REQUIRE(parsed);
  CHECK(back.SerializeAsString() == blob.SerializeAsString());
  CHECK(static_cast<const void*>(back.data().data()) == storage); // adopted
}

TEST_CASE("no bulk without a large field, with a head too short, or with "
          "the payload not last",
          "[unit][frame]") {
  tpb::Blob small;
  small.set_data(std::string(bulk_threshold - 1, 'x'));
  auto frame = frame_of(small);
  CHECK(find_bulk(frame, frame.size()).size == 0);

  tpb::Blob big;
  big.set_label(std::string(5000, 'l')); // its bulk field starts late
  big.set_data(std::string(bulk_threshold, 'x'));
  frame = frame_of(big);
  CHECK(find_bulk(std::string_view{frame}.substr(0, 4000), frame.size()).size
        == 0);
  CHECK(find_bulk(std::string_view{frame}.substr(0, 6000), frame.size()).size
        == bulk_threshold);
  // Another field after the payload: the bulk is not looked for.
  auto after = frame;
  v1::Envelope more;
  more.set_priority(3);
  after += more.SerializeAsString();
  CHECK(find_bulk(std::string_view{after}.substr(0, 6000), after.size()).size
        == 0);
  // A frame size that disagrees with the payload's length.
  CHECK(find_bulk(std::string_view{frame}.substr(0, 6000), frame.size() + 1)
          .size
        == 0);
}

TEST_CASE("a split payload parses as Protobuf parses the whole",
          "[unit][frame]") {
  std::string big(bulk_threshold + 123, 'b');
  auto same = [&](const tpb::Blob& blob) {
    auto frame = frame_of(blob);
    tpb::Blob back;
    bool parsed = false;
    REQUIRE(read_split(frame, 8192, back, parsed));
    REQUIRE(parsed);
    CHECK(back.SerializeAsString() == blob.SerializeAsString());
  };
  SECTION("a repeated bytes field") {
    tpb::Blob blob;
    blob.add_chunks("one");
    blob.add_chunks(big);
    blob.add_chunks("three");
    same(blob);
  }
  SECTION("a proto3 string field with valid UTF-8") {
    tpb::Blob blob;
    std::string text;
    while (text.size() < bulk_threshold)
      text += "gr\xc3\xbc\xc3\x9f "; // "grüß "
    blob.set_text(text);
    same(blob);
  }
  SECTION("a oneof member") {
    tpb::Blob blob;
    blob.set_left(big);
    same(blob);
  }
  SECTION("a bulk in a nested message is joined, not adopted") {
    tpb::Blob blob;
    blob.mutable_inner()->set_data(big);
    blob.set_after(5);
    same(blob);
  }
  SECTION("the field twice: the last counts; a later oneof member wins") {
    // Hand-made payloads: two data fields, then a right after a left.
    tpb::Blob first;
    first.set_data(big);
    first.set_left(big);
    tpb::Blob second;
    second.set_data("short");
    second.set_right("r");
    std::string payload = first.SerializeAsString() + second.SerializeAsString();
    v1::Envelope last; // the payload last, as encode_frame writes it
    last.set_payload(payload);
    auto frame = blob_header().SerializeAsString() + last.SerializeAsString();
    tpb::Blob expected;
    REQUIRE(expected.ParseFromString(payload));
    tpb::Blob back;
    bool parsed = false;
    REQUIRE(read_split(frame, 8192, back, parsed));
    REQUIRE(parsed);
    CHECK(back.data() == "short");
    CHECK(back.right() == "r");
    CHECK(back.SerializeAsString() == expected.SerializeAsString());
  }
  SECTION("a field this side does not know is kept, as Protobuf keeps it") {
    tpb::Blob blob;
    blob.set_data(big);
    blob.set_after(9);
    auto frame = frame_of(blob);
    tpb::Ping other; // field 2 is a string here: same wire type, adopted
    bool parsed = false;
    REQUIRE(read_split(frame, 8192, other, parsed));
    CHECK(parsed);
    CHECK(other.text() == big);
    tpb::Sum unknown; // no field 2: joined and kept as unknown
    REQUIRE(read_split(frame, 8192, unknown, parsed));
    REQUIRE(parsed);
    tpb::Blob again;
    REQUIRE(again.ParseFromString(unknown.SerializeAsString()));
    CHECK(again.data() == big);
  }
}

TEST_CASE("a split payload Protobuf refuses is refused", "[unit][frame]") {
  SECTION("invalid UTF-8 in a proto3 string") {
    tpb::Blob blob;
    blob.set_data(std::string(bulk_threshold, 'x') + "\xff\xfe");
    auto frame = frame_of(blob);
    tpb::Ping as_text; // field 2 is a proto3 string there
    REQUIRE_FALSE(as_text.ParseFromString(
      frame.substr(frame.size() - blob.ByteSizeLong())));
    bool parsed = true;
    REQUIRE(read_split(frame, 8192, as_text, parsed));
    CHECK_FALSE(parsed);
  }
  SECTION("damaged fields after the bulk") {
    tpb::Blob blob;
    blob.set_data(std::string(bulk_threshold, 'x'));
    blob.set_after(1);
    auto frame = frame_of(blob);
    frame.back() = '\xff'; // the varint of 'after' never ends
    tpb::Blob back;
    bool parsed = true;
    REQUIRE(read_split(frame, 8192, back, parsed));
    CHECK_FALSE(parsed);
  }
  SECTION("a split that is not where the bulk is") {
    tpb::Blob blob;
    blob.set_data(std::string(bulk_threshold, 'x'));
    auto frame = frame_of(blob);
    auto span = find_bulk(frame, frame.size());
    REQUIRE(span.size > 0);
    auto rest = frame.substr(0, span.begin + 1)
                + frame.substr(span.begin + span.size);
    v1::Envelope env;
    split_payload payload;
    CHECK_FALSE(decode_split_frame(rest, span.begin + 1, span.size - 1, env,
                                   payload));
    CHECK_FALSE(decode_split_frame(frame.substr(0, span.begin), span.begin,
                                   span.size + 1, env, payload));
  }
}

TEST_CASE("a split frame reader agrees with Protobuf on damaged bytes",
          "[unit][frame]") {
  std::mt19937 random{112426};
  tpb::Blob blob;
  blob.set_label("label");
  blob.set_data(std::string(bulk_threshold + 10, 'q'));
  blob.set_after(-3);
  blob.add_chunks("c");
  auto valid = frame_of(blob);
  auto span = find_bulk(valid, valid.size());
  REQUIRE(span.size > 0);
  for (int i = 0; i < 2000; ++i) {
    auto damaged = valid;
    // Damage the parts a split leaves in `rest`: before and after the bulk.
    for (int k = 0; k < 1 + i % 3; ++k) {
      auto at = random() % (damaged.size() - span.size);
      if (at >= span.begin)
        at += span.size;
      damaged[at] ^= static_cast<char>(1u << (random() % 8));
    }
    auto found = find_bulk(std::string_view{damaged}.substr(0, 4096),
                           damaged.size());
    if (found.size == 0)
      continue; // read whole: the plain reader's test covers it
    std::string bulk = damaged.substr(found.begin, found.size);
    std::string rest = damaged.substr(0, found.begin)
                       + damaged.substr(found.begin + found.size);
    v1::Envelope env;
    split_payload payload;
    v1::Envelope theirs;
    bool whole = theirs.ParseFromString(damaged);
    if (!decode_split_frame(rest, found.begin, bulk.size(), env, payload))
      continue;
    REQUIRE(whole); // accepted by us, so by Protobuf
    tpb::Blob ours;
    bool parsed = parse_split_payload(payload, bulk, ours, 100);
    tpb::Blob reference;
    bool reference_parsed = reference.ParseFromString(theirs.payload());
    REQUIRE(parsed == reference_parsed);
    if (parsed)
      REQUIRE(ours.SerializeAsString() == reference.SerializeAsString());
    env.clear_payload();
    theirs.clear_payload();
    REQUIRE(env.SerializeAsString() == theirs.SerializeAsString());
  }
}

TEST_CASE("a split payload keeps the recursion limit around its bulk",
          "[unit][frame]") {
  tpb::Blob blob;
  blob.set_data(std::string(bulk_threshold, 'x'));
  auto* deep = blob.mutable_inner();
  for (int depth = 0; depth < 20; ++depth)
    deep = deep->mutable_inner();
  deep->set_after(1);
  auto frame = frame_of(blob);
  auto span = find_bulk(frame, frame.size());
  REQUIRE(span.size == bulk_threshold);
  auto rest = frame.substr(0, span.begin) + frame.substr(span.begin + span.size);
  v1::Envelope env;
  split_payload payload;
  REQUIRE(decode_split_frame(rest, span.begin, span.size, env, payload));
  for (int limit : {10, 100}) {
    std::string bulk = frame.substr(span.begin, span.size);
    tpb::Blob back;
    CHECK(parse_split_payload(payload, bulk, back, limit) == (limit == 100));
  }
}

TEST_CASE("a message that adopted a bulk hands its string back to the pool "
          "when deleted",
          "[unit][frame]") {
  using courier::detail::bulk_pool;
  using courier::detail::new_bulk_owner;
  auto pool = std::make_shared<bulk_pool>(std::size_t{32} << 20);
  tpb::Blob blob;
  blob.set_data(std::string(bulk_threshold + 5, 'p'));
  blob.set_after(3);
  auto frame = frame_of(blob);
  auto span = find_bulk(frame, frame.size());
  REQUIRE(span.size > 0);
  auto rest = frame.substr(0, span.begin) + frame.substr(span.begin + span.size);
  v1::Envelope env;
  split_payload payload;
  REQUIRE(decode_split_frame(rest, span.begin, span.size, env, payload));
  std::string bulk = frame.substr(span.begin, span.size);
  const auto* storage = bulk.data();

  auto msg = new_bulk_owner(tpb::Blob::default_instance(), payload.field, pool);
  REQUIRE(parse_split_payload(payload, bulk, *msg, 100));
  CHECK(pool->take(1).empty()); // nothing to hand back yet
  msg.reset();
  auto back = pool->take(bulk_threshold);
  CHECK(back.data() == storage); // the very string, for the next frame
  CHECK(back.capacity() >= bulk_threshold);

  // Once the pool is gone, a message is deleted as any other.
  auto orphan = new_bulk_owner(tpb::Blob::default_instance(), payload.field,
                               std::weak_ptr<bulk_pool>{});
  std::string again = frame.substr(span.begin, span.size);
  REQUIRE(parse_split_payload(payload, again, *orphan, 100));
  orphan.reset();
  // A small string is not worth keeping.
  pool->give(std::string(100, 's'));
  CHECK(pool->take(1).empty());
}

TEST_CASE("the spare buffer pool keeps to its budget, hands out a buffer "
          "large enough, and lets idle ones go",
          "[unit][frame]") {
  using courier::detail::bulk_pool;
  const std::size_t big = 256u << 10;
  bulk_pool pool{3 * big, std::chrono::milliseconds{50}};
  std::vector<const char*> given;
  for (int i = 0; i < 5; ++i) {
    std::string spare(big, 'a');
    given.push_back(spare.data());
    pool.give(std::move(spare));
  }
  // Three fit the budget (capacity may round up: at most three).
  CHECK(pool.held() <= 3 * big + 3 * 64);
  CHECK(pool.held() >= 2 * big);
  // Too small for a larger run: nothing, and the spares stay.
  auto held = pool.held();
  CHECK(pool.take(2 * big).empty());
  CHECK(pool.held() == held);
  // The most recently given that fits, with its bytes (no clearing needed).
  auto back = pool.take(big);
  CHECK(back.size() == big);
  CHECK(back.capacity() >= big);
  CHECK(std::find(given.begin(), given.end(), back.data()) != given.end());
  CHECK(pool.held() == held - back.capacity());

  // Spares nobody took for longer than the idle time go at the next give.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds{5};
  while (std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds{60});
    pool.give(std::string(big, 'b')); // the one given now stays
    if (pool.held() < 2 * big)
      break;
  }
  CHECK(pool.held() >= big);
  CHECK(pool.held() < 2 * big);

  // A budget of 0 keeps nothing.
  bulk_pool none{0};
  none.give(std::string(big, 'c'));
  CHECK(none.held() == 0);
  CHECK(none.take(1).empty());
}

namespace {

using courier::detail::envelope_head;
using courier::detail::head_of;

/// The Envelope a head stands for.
v1::Envelope envelope_of(const envelope_head& h) {
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
  env.set_created_unix_ns(h.created_unix_ns);
  if (h.has_error) {
    env.mutable_error()->set_code(h.error_code);
    env.mutable_error()->set_message(std::string{h.error_message});
  }
  if (h.trace.valid()) {
    std::string bytes(h.trace.trace_id.begin(), h.trace.trace_id.end());
    bytes.append(h.trace.span_id.begin(), h.trace.span_id.end());
    bytes += static_cast<char>(h.trace.flags);
    env.set_trace(bytes);
  }
  return env;
}

/// Random heads: every field empty, small or at its extremes, by turns.
struct head_maker {
  std::mt19937_64 random{20261125};
  std::vector<std::string> texts; // what the views point into

  std::uint64_t number() {
    switch (random() % 4) {
      case 0:
        return 0;
      case 1:
        return random() % 200;
      case 2:
        return random() >> (random() % 64);
      default:
        return ~std::uint64_t{0};
    }
  }

  std::string_view text() {
    auto& t = texts.emplace_back(random() % 3 == 0 ? 0 : random() % 300, 'n');
    for (auto& c : t)
      c = static_cast<char>('a' + random() % 26);
    return t;
  }

  envelope_head make() {
    texts.reserve(texts.size() + 8); // the views stay valid
    envelope_head h;
    h.target = text();
    h.has_sender = random() % 4 != 0;
    if (h.has_sender) {
      h.sender_node = text();
      h.sender_actor = text();
    }
    h.type_name = text();
    h.message_id = number();
    h.correlation_id = number();
    h.kind = static_cast<std::int32_t>(random() % 6);
    h.timeout_ns = number();
    h.priority = static_cast<std::uint32_t>(number());
    h.created_unix_ns = static_cast<std::int64_t>(number());
    h.has_error = random() % 4 == 0;
    if (h.has_error) {
      h.error_code = static_cast<std::uint32_t>(number());
      h.error_message = text();
    }
    if (random() % 3 == 0) {
      h.trace = courier::trace_context::start();
      h.trace.flags = static_cast<std::uint8_t>(random());
    }
    return h;
  }
};

} // namespace

TEST_CASE("an envelope head is written as Protobuf writes its envelope, and "
          "read back without it",
          "[unit][frame]") {
  head_maker heads;
  heads.texts.reserve(8 * 2000);
  auto ping = testing::ping(9, "payload");
  for (int i = 0; i < 2000; ++i) {
    auto h = heads.make();
    const google::protobuf::Message* payload = i % 5 == 0 ? nullptr : &ping;
    courier::frame by_hand;
    courier::frame by_protobuf;
    REQUIRE(encode_frame(h, payload, by_hand));
    REQUIRE(encode_frame(envelope_of(h), payload, by_protobuf));
    auto bytes = std::move(by_hand).flatten();
    REQUIRE(bytes == std::move(by_protobuf).flatten());

    envelope_head back;
    v1::Envelope spare;
    std::string_view read_payload;
    REQUIRE(decode_frame(bytes, back, spare, read_payload));
    CHECK(envelope_of(back).SerializeAsString()
          == envelope_of(h).SerializeAsString());
    CHECK(spare.ByteSizeLong() == 0); // read by hand: Protobuf had no part
    if (payload != nullptr)
      CHECK(read_payload == ping.SerializeAsString());
    else
      CHECK(read_payload.empty());
  }
}

TEST_CASE("the envelope head reader accepts and refuses what Protobuf does",
          "[unit][frame]") {
  std::mt19937 random{20261125};
  head_maker heads;
  heads.texts.reserve(8 * 4000);
  auto check = [](const std::string& bytes) {
    envelope_head ours;
    v1::Envelope spare;
    std::string_view payload;
    bool accepted = decode_frame(bytes, ours, spare, payload).has_value();
    v1::Envelope theirs;
    bool parsed = theirs.ParseFromString(bytes);
    if (!accepted) {
      // Protobuf may accept more only in what no envelope has: groups.
      if (parsed)
        CHECK(theirs.GetReflection()->GetUnknownFields(theirs).field_count()
              > 0);
      return;
    }
    REQUIRE(parsed);
    CHECK(envelope_of(ours).SerializeAsString()
          == envelope_of(head_of(theirs)).SerializeAsString());
    CHECK(payload == theirs.payload());
  };
  for (int i = 0; i < 4000; ++i) {
    auto ping = testing::ping(i, "payload");
    courier::frame out;
    REQUIRE(encode_frame(heads.make(), &ping, out));
    auto bytes = std::move(out).flatten();
    switch (i % 6) {
      case 0: // flip a few bits
        for (int k = 0; k < 1 + i % 4; ++k)
          bytes[random() % bytes.size()] ^=
            static_cast<char>(1u << (random() % 8));
        break;
      case 1: // cut it short
        bytes.resize(random() % bytes.size());
        break;
      case 2: { // a field the head has not (durable, producer), or a known
                // one again, after it
        v1::Envelope extra;
        switch (random() % 4) {
          case 0:
            extra.set_delivery(v1::DELIVERY_DURABLE);
            break;
          case 1:
            extra.set_sequence(random());
            break;
          case 2:
            extra.set_target("again");
            break;
          default:
            extra.mutable_sender()->set_actor("merged");
        }
        bytes += extra.SerializeAsString();
        break;
      }
      case 3: // a string that is UTF-8 but not ASCII, or not even UTF-8
        if (auto at = bytes.find("payload"); at != std::string::npos
                                             && random() % 2 == 0)
          bytes[at] = '\xff'; // inside the payload: bytes, not text
        else if (bytes.size() > 4)
          bytes.replace(bytes.size() / 2, 1,
                        random() % 2 == 0 ? "\xc3\xa9" : "\xc3");
        break;
      case 4: // random bytes
        bytes.assign(random() % 64, '\0');
        for (auto& c : bytes)
          c = static_cast<char>(random());
        break;
      default: // as written
        break;
    }
    check(bytes);
  }
}

TEST_CASE("an envelope head carries the durable and ordering fields both "
          "ways, in Protobuf's bytes",
          "[unit][frame]") {
  courier::detail::envelope_head head;
  head.target = "billing";
  head.has_sender = true;
  head.sender_node = "here";
  head.type_name = "courier_test.v1.Ping";
  head.message_id = 7;
  head.kind = v1::KIND_POST;
  head.priority = 5;
  head.delivery = v1::DELIVERY_DURABLE;
  head.created_unix_ns = 1'700'000'000'000'000'000;
  head.time_to_reach_queue_ns = 30'000'000'000;
  head.time_to_be_received_ns = 60'000'000'000;
  head.producer_id = 0xfeedULL;
  head.producer_epoch = 3;
  head.sequence = 12345;
  auto ping = testing::ping(9);
  courier::frame out;
  REQUIRE(encode_frame(head, &ping, out));
  auto bytes = std::move(out).flatten();
  // What Protobuf writes for the same envelope, payload last.
  auto reference = courier::detail::envelope_from(head);
  auto expected_bytes = reference.SerializeAsString();
  *reference.mutable_payload() = ping.SerializeAsString();
  v1::Envelope parsed;
  REQUIRE(parsed.ParseFromString(bytes));
  CHECK(parsed.SerializeAsString() == reference.SerializeAsString());
  CHECK(bytes.starts_with(expected_bytes));

  courier::detail::envelope_head back;
  v1::Envelope spare;
  std::string_view payload;
  REQUIRE(decode_frame(bytes, back, spare, payload));
  CHECK(back.delivery == v1::DELIVERY_DURABLE);
  CHECK(back.time_to_reach_queue_ns == head.time_to_reach_queue_ns);
  CHECK(back.time_to_be_received_ns == head.time_to_be_received_ns);
  CHECK(back.producer_id == head.producer_id);
  CHECK(back.producer_epoch == 3);
  CHECK(back.sequence == 12345);
  CHECK(back.created_unix_ns == head.created_unix_ns);
  CHECK(back.target == "billing");
  CHECK(payload == ping.SerializeAsString());
}

TEST_CASE("frame codec errors say why", "[unit][frame]") {
  v1::Envelope env;
  std::string_view payload;
  auto truncated = decode_frame(std::string_view{"\x0a\x10" "abc", 5}, env,
                                payload);
  REQUIRE_FALSE(truncated);
  CHECK(truncated.code() == errc::invalid_argument);
  CHECK(truncated.error().message()
        == "a frame that is not an envelope: a field's tag or length is "
           "malformed or runs past the end");
  // A payload without its required fields cannot be framed (proto2 types
  // have them; proto3 ones do not): the text names the type.
  courier::detail::envelope_head head;
  head.kind = v1::KIND_POST;
  google::protobuf::UninterpretedOption::NamePart missing; // two required
  courier::frame out;
  auto framed = encode_frame(head, &missing, out);
  REQUIRE_FALSE(framed);
  CHECK(framed.code() == errc::invalid_argument);
  CHECK(framed.error().message().find(
          "cannot serialize google.protobuf.UninterpretedOption.NamePart: "
          "required fields are missing")
        != std::string::npos);
  CHECK(encode_frame(head, nullptr, out)); // a head alone always encodes
}

TEST_CASE("a trace costs 28 bytes in a head, nothing without one, and a "
          "trace field of another length is ignored",
          "[unit][frame][trace]") {
  envelope_head h;
  h.target = "billing";
  h.has_sender = true;
  h.sender_node = "a";
  h.type_name = "courier_test.v1.Ping";
  h.message_id = 7;
  h.kind = v1::KIND_REQUEST;
  courier::frame plain;
  REQUIRE(encode_frame(h, nullptr, plain));
  h.trace = courier::trace_context::start();
  courier::frame traced;
  REQUIRE(encode_frame(h, nullptr, traced));
  CHECK(traced.size() == plain.size() + 28);

  auto bytes = std::move(traced).flatten();
  envelope_head back;
  v1::Envelope spare;
  std::string_view payload;
  REQUIRE(decode_frame(bytes, back, spare, payload));
  CHECK(back.trace == h.trace);
  CHECK(spare.ByteSizeLong() == 0); // by hand

  // 24 bytes: Protobuf reads the frame, and the head has no trace.
  auto env = envelope_of(h);
  env.mutable_trace()->resize(24);
  REQUIRE(decode_frame(env.SerializeAsString(), back, spare, payload));
  CHECK(!back.trace.valid());
  CHECK(back.target == "billing");
}

TEST_CASE("traceparent: the W3C text form, read and written",
          "[unit][trace]") {
  using courier::trace_context;
  auto read = trace_context::parse(
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  REQUIRE(read);
  CHECK(read->trace_id_hex() == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(read->span_id_hex() == "00f067aa0ba902b7");
  CHECK(read->flags == 1);
  CHECK(read->traceparent()
        == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  // A later version may add fields; version ff, upper case, zero ids and
  // wrong lengths are refused (the receiver starts a new trace).
  CHECK(trace_context::parse(
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"));
  for (const char* bad :
       {"", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    CHECK_FALSE(trace_context::parse(bad));
  auto child = read->child();
  CHECK(child.trace_id == read->trace_id);
  CHECK(child.span_id != read->span_id);
  CHECK(child.flags == read->flags);
  auto fresh = trace_context::start();
  CHECK(fresh.valid());
  CHECK(fresh.trace_id != trace_context::start().trace_id);
  CHECK_FALSE(trace_context{}.valid());
  CHECK(trace_context{}.trace_id_hex().empty());
}

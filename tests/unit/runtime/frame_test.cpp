// Frames between nodes: envelopes whose payload is written into the frame
// and read where it lies.

#include <cstring>
#include <random>

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
    bool accepted = decode_frame(bytes, ours, payload);
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

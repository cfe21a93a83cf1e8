#pragma once

// Frames between nodes are encoded envelopes (docs/wire-format.md). These
// two functions keep the payload out of the Envelope object: it is written
// straight into the frame (or, for large fields, not written at all: the
// frame refers to them), and read where it lies in the frame.

#include <chrono>
#include <memory>
#include <mutex>
#include <vector>
#include <string>
#include <string_view>

#include <google/protobuf/message.h>

#include "courier/error.hpp"
#include "courier/frame.hpp"
#include "courier/trace.hpp"
#include "courier/v1/envelope.pb.h"

namespace courier::detail {

/// Every envelope field but the payload (docs/wire-format.md), strings as
/// views: into the frame they were read from, or into what the frame is
/// written from. Express letters and answers use the fields up to
/// error_message, which the hot path encodes and decodes by hand, to the
/// same bytes as Protobuf, without building an Envelope (docs/benchmarks.md:
/// that took half of a frame's cost). A head that sets any of the others
/// (durable delivery, its lifetimes, the producer's numbering) goes through
/// Protobuf both ways.
struct envelope_head {
  std::string_view target;
  bool has_sender = false;
  std::string_view sender_node;
  std::string_view sender_actor;
  std::string_view type_name;
  std::uint64_t message_id = 0;
  std::uint64_t correlation_id = 0;
  std::int32_t kind = 0; // a v1::Kind
  std::uint64_t timeout_ns = 0;
  std::uint32_t priority = 0;
  std::int64_t created_unix_ns = 0;
  bool has_error = false;
  std::uint32_t error_code = 0;
  std::string_view error_message;
  // The trace context (field 19, 25 bytes in binary); not valid(): none.
  trace_context trace;
  // Durable delivery and ordering (docs/wire-format.md, "Durable fields").
  std::int32_t delivery = 0; // a v1::DeliveryClass
  std::uint64_t time_to_reach_queue_ns = 0;
  std::uint64_t time_to_be_received_ns = 0;
  std::uint64_t producer_id = 0;
  std::uint32_t producer_epoch = 0;
  std::uint64_t sequence = 0;
  // A broadcast's request (docs/security.md); rare, so left to Protobuf.
  bool broadcast = false;

  /// True if a field the hand codec leaves to Protobuf is set.
  bool has_durable_fields() const noexcept {
    return delivery != 0 || time_to_reach_queue_ns != 0
           || time_to_be_received_ns != 0 || producer_id != 0
           || producer_epoch != 0 || sequence != 0 || broadcast;
  }
};

/// The head of `env`, viewing its strings.
envelope_head head_of(const v1::Envelope& env);

/// The Envelope with the fields of `head` (copies), its payload empty.
v1::Envelope envelope_from(const envelope_head& head);

/// Writes `env` (its payload field empty) and then `payload`, if any, as
/// its payload field into `out`. With `keep_alive` (the owner of `payload`),
/// the large string and bytes fields of a large payload stay where they are
/// and `out` refers to them, holding `keep_alive`. Fails with
/// invalid_argument when `payload` lacks required fields, and with
/// resource_exhausted when it is over 2 GiB; the text says which.
expected<void> encode_frame(const v1::Envelope& env,
                            const google::protobuf::Message* payload,
                            frame& out,
                            std::shared_ptr<const void> keep_alive = {});

/// As above, the envelope given by its head: the same bytes as Protobuf
/// writes for the Envelope with those fields.
expected<void> encode_frame(const envelope_head& head,
                            const google::protobuf::Message* payload,
                            frame& out,
                            std::shared_ptr<const void> keep_alive = {});

/// As decode_frame below, into a head that views `frame`. A frame with
/// fields other than the hand codec's is parsed by Protobuf into `spare`,
/// which the head then views. Accepts and refuses what Protobuf does.
expected<void> decode_frame(std::string_view frame, envelope_head& head,
                            v1::Envelope& spare, std::string_view& payload);

/// Parses `frame` into `env` except for the payload field, which `payload`
/// then views inside `frame` (or inside `env`, for the rare frame that
/// repeats the field). Fails with invalid_argument, saying why, for bytes
/// that are not an envelope.
expected<void> decode_frame(std::string_view frame, v1::Envelope& env,
                            std::string_view& payload);

// -- large frames, read in two strings ------------------------------------------
//
// A large payload field (a megabyte blob, say) is read by the transport into
// a string of its own, which the parsed message then adopts as its field:
// no copy after the kernel's (link_events::split, docs/wire-format.md).

/// Where the bulk of a large frame lies: the bytes of the first length-
/// delimited field of at least `bulk_threshold` bytes at the top level of
/// the payload, when the payload is the frame's last field (as
/// encode_frame writes it).
struct bulk_span {
  std::size_t payload_field = 0; // the payload's tag
  std::size_t payload_begin = 0; // the payload's first byte
  std::size_t field_begin = 0;   // the bulk field's tag
  std::size_t begin = 0;         // the bulk's first byte
  std::size_t size = 0;          // 0: no bulk
};

/// Bulk fields start at this size.
constexpr std::size_t bulk_threshold = std::size_t{64} << 10;

/// Finds the bulk of a frame of `frame_size` bytes from its first bytes,
/// `head`: none unless the payload's fields before the bulk, and the bulk
/// field's tag and length, all lie in `head`.
bulk_span find_bulk(std::string_view head, std::size_t frame_size);

/// The payload of a frame read in two strings, around its bulk.
struct split_payload {
  std::string_view before; // the payload's fields before the bulk field
  std::string_view header; // the bulk field's tag and length
  std::string_view after;  // the payload's fields after the bulk
  int field = 0;           // the bulk field's number
};

/// Parses a frame read in two strings (`rest`, the frame without its bulk of
/// `bulk_size` bytes, which was at `bulk_at`) into `env` except for the
/// payload, which `payload` views in `rest`. Fails (invalid_argument, with
/// the reason) unless the bulk is the one find_bulk() finds, and for bytes
/// that are not an envelope.
expected<void> decode_split_frame(std::string_view rest, std::size_t bulk_at,
                                  std::size_t bulk_size, v1::Envelope& env,
                                  split_payload& payload);

/// Parses a payload with its bulk into `msg` (cleared first), as Protobuf
/// parses the whole, with nesting up to `recursion_limit`. A bulk that is a
/// bytes or string field of `msg` is moved into it, not copied (`bulk` is
/// then empty); other fields are parsed from a joined copy. False for bytes
/// that are no `msg`, invalid UTF-8 in a proto3 string, missing required
/// fields.
bool parse_split_payload(const split_payload& payload, std::string& bulk,
                         google::protobuf::Message& msg, int recursion_limit);

/// Strings of adopted bulks, handed back as their messages are deleted, for
/// the next large frames to be read into: no fresh memory to allocate, fault
/// in and clear for every one (at 1 MiB a frame, the clearing and the page
/// faults cost the reading thread about as much as the copy from the
/// socket). One pool serves all links of a node, within a byte budget
/// (transport_limits::spare_buffers); a spare left unused for `idle` is let
/// go at the next give().
class bulk_pool {
public:
  using clock = std::chrono::steady_clock;

  explicit bulk_pool(std::size_t budget,
                     clock::duration idle = std::chrono::seconds{2})
    : budget_(budget), idle_(idle) {
  }

  /// A spare string of at least `size` bytes of capacity (the most recently
  /// given one that is large enough, with its old bytes), or an empty one.
  std::string take(std::size_t size);

  /// Keeps `bulk` for take() if it is large and the budget has room.
  void give(std::string bulk);

  /// Bytes held (capacity of the spares).
  std::size_t held() const;

private:
  struct spare {
    std::string bytes;
    clock::time_point since;
  };

  const std::size_t budget_;
  const clock::duration idle_;
  mutable std::mutex mu_;
  std::vector<spare> spares_; // guarded by mu_: oldest first
  std::size_t held_ = 0;      // guarded by mu_
};

/// A new message like `prototype` for a split payload to be parsed into: once
/// deleted, the bulk it adopted as field `field` goes back to `pool`.
std::shared_ptr<google::protobuf::Message>
new_bulk_owner(const google::protobuf::Message& prototype, int field,
               std::weak_ptr<bulk_pool> pool);

/// Parses `bytes` into `msg` (cleared first) with nesting up to
/// `recursion_limit`; false unless they are a whole, initialized `msg`.
bool parse_payload(std::string_view bytes, google::protobuf::Message& msg,
                   int recursion_limit);

} // namespace courier::detail

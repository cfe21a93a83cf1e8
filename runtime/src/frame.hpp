#pragma once

// Frames between nodes are encoded envelopes (docs/wire-format.md). These
// two functions keep the payload out of the Envelope object: it is written
// straight into the frame (or, for large fields, not written at all: the
// frame refers to them), and read where it lies in the frame.

#include <memory>
#include <string>
#include <string_view>

#include <google/protobuf/message.h>

#include "courier/frame.hpp"
#include "courier/v1/envelope.pb.h"

namespace courier::detail {

/// Writes `env` (its payload field empty) and then `payload`, if any, as
/// its payload field into `out`. With `keep_alive` (the owner of `payload`),
/// the large string and bytes fields of a large payload stay where they are
/// and `out` refers to them, holding `keep_alive`. False when `payload`
/// lacks required fields or is over 2 GiB.
bool encode_frame(const v1::Envelope& env,
                  const google::protobuf::Message* payload, frame& out,
                  std::shared_ptr<const void> keep_alive = {});

/// Parses `frame` into `env` except for the payload field, which `payload`
/// then views inside `frame` (or inside `env`, for the rare frame that
/// repeats the field). False for bytes that are not an envelope.
bool decode_frame(std::string_view frame, v1::Envelope& env,
                  std::string_view& payload);

} // namespace courier::detail

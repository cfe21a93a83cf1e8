#pragma once

// The messages a link's proxy receives from the link's other threads (the
// bridge, answering actors, the node) and sends itself. Private to the
// link files (link_core.cpp, link_bridge.hpp, link_proxy.cpp).

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/allowed_unsafe_message_type.hpp>

#include "binding.hpp"
#include "courier/frame.hpp"
#include "courier/v1/control.pb.h"
#include "letter.hpp"

namespace courier::detail {

/// A frame, or (with a bulk) a large frame read in two strings.
struct frame_msg {
  std::string bytes;
  std::string bulk; // see split_frame
  std::size_t bulk_at = 0;
};

struct frames_msg {
  std::vector<std::string> frames;
};

struct closed_msg {
  error reason;
};

struct watch_msg {
  std::string name;
  std::function<void(const down_notice&)> fn;
  std::shared_ptr<monitor_token> token;
};

struct unwatch_msg {
  std::shared_ptr<monitor_token> token;
};

struct local_down_msg {
  std::uint64_t watch_id;
  down_notice notice;
};

struct released_msg {
  std::string name;
};

struct tick_msg {};

/// The link's outbound queue has room again.
struct writable_msg {};

/// Sent by a proxy to itself, behind the letters it is writing as a batch.
struct uncork_msg {};

/// Local actors have caught up with what the link brought: read on.
struct resume_reading_msg {};

struct drain_msg {};

/// Asks a side link's proxy to confirm that its peer has taken everything
/// written so far (answered with flushed_msg).
struct flush_msg {};

struct flushed_msg {};

/// An answer that queues behind the letters waiting in the proxy.
struct answer_msg {
  std::uint64_t id; // of the request answered
  std::shared_ptr<frame> out; // shared: CAF wants copyable messages
  std::shared_ptr<backlog_charge> charge;
  std::shared_ptr<backlog_charge> owed; // link_core::answers_waiting()
};

/// Asks the proxy which names its peer holds that match `pattern` and
/// that this node's principal may find there (NamesQuery); answered with a
/// names_msg.
struct names_query_msg {
  std::string pattern;
  deadline until; // the asker gives up then: so does the proxy
  bool with_types = false;
};

struct names_msg {
  std::vector<std::string> names;
  errc code = errc::ok; // the link went, or the peer did not answer
  std::string text;
  std::vector<std::string> type_files; // when asked for
  std::vector<v1::ServedService> services; // when asked for
};

/// Answers owed to the peer would pass their budget: it does not read them.
struct overrun_msg {
  std::size_t waiting; // bytes of answers waiting in the proxy
};

} // namespace courier::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::frame_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::frames_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::closed_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::watch_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::unwatch_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::local_down_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::released_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::tick_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::writable_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::uncork_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::resume_reading_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::drain_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::flush_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::flushed_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::answer_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::overrun_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::names_query_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::names_msg)

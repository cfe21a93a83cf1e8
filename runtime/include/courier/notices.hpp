#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "courier/error.hpp"
#include "courier/fwd.hpp"
#include "courier/message.hpp"

namespace courier {

/// Why an actor stopped.
enum class down_reason : std::uint8_t {
  stopped,     ///< It stopped on purpose (context::stop, node::stop).
  failed,      ///< A handler threw, or it called context::fail.
  node_down,   ///< Its node shut down or died.
  unreachable, ///< Its node can no longer be reached.
};

std::string_view to_string(down_reason reason) noexcept;

/// The one notice a monitor receives when the watched actor stops.
struct down_notice {
  std::string name;
  down_reason reason;
  /// What happened, for people (the exception text for a failure).
  std::string detail;
  /// True when a supervisor will restart the actor under the same name.
  bool restarting = false;
};

/// A monitor, to cancel it with demonitor(). Empty by default. Copies
/// name the same monitor.
///
/// Thread safety: a handle may be copied and used from any thread.
class monitor_handle {
public:
  monitor_handle() noexcept = default;

  explicit operator bool() const noexcept {
    return token_ != nullptr;
  }

private:
  friend class node;
  friend class context;
  friend class detail::node_impl;

  explicit monitor_handle(std::shared_ptr<detail::monitor_token> token) noexcept
    : token_(std::move(token)) {
  }

  std::shared_ptr<detail::monitor_token> token_;
};

/// Why a message reached nobody.
enum class dead_letter_reason : std::uint8_t {
  no_such_name,   ///< Nobody held the target name.
  actor_stopped,  ///< The actor stopped with the message still queued.
  unhandled_type, ///< The actor has no handler for the message's type.
  expired,        ///< Its deadline passed before it was handled.
  restarting,     ///< The actor was being restarted by its supervisor.
  unreachable,    ///< Its node could not be reached, or was lost.
  malformed,      ///< It came from another node and could not be parsed.
};

inline constexpr std::size_t dead_letter_reason_count = 7;

std::string_view to_string(dead_letter_reason reason) noexcept;

/// A message that reached nobody, as reported to the dead-letter hook.
struct dead_letter {
  dead_letter_reason reason;
  std::string target;
  std::string type_name;
  /// The sending actor's name; empty when sent from outside any actor.
  std::string sender;
};

/// The outcome of a broadcast: every matching actor appears in exactly one
/// list. Each list is sorted by name.
struct broadcast_result {
  struct reply {
    std::string name;
    message payload;
  };
  struct failure {
    std::string name;
    error reason;
  };
  std::vector<reply> replied;        ///< Answered with a message.
  std::vector<failure> failed;       ///< Answered with an error.
  std::vector<std::string> timed_out; ///< No answer by the deadline.
  std::vector<std::string> dead;     ///< Stopped or restarting; never answered.

  std::size_t size() const noexcept {
    return replied.size() + failed.size() + timed_out.size() + dead.size();
  }
};

/// A node of this machine, as its directory record says.
struct node_info {
  std::string name;
  int pid = 0;
  unsigned uid = 0;
  std::string session;
  std::vector<std::string> tiers;
  /// Where each tier listens, in the order of `tiers`.
  std::vector<std::string> addresses;
  /// Its host: machine id, boot id and network namespace, as the node
  /// published them ("<machine>/<boot>/<netns>").
  std::string host;
};

/// A name held somewhere on this machine.
struct name_info {
  std::string actor;
  std::string node;
};

/// A gRPC service an actor declared at spawn (spawn_options::services),
/// the actor and the node it runs on.
struct service_info {
  std::string service;
  std::string actor;
  std::string node;
};

/// One route from this node to another, and the tier it takes.
struct route_info {
  std::string peer;
  std::string tier;
  /// Why this tier, e.g. why a faster one was not used.
  std::string note;
  std::uint64_t messages_out = 0;
  std::uint64_t messages_in = 0;
};

} // namespace courier

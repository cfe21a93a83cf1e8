#pragma once

// Authorization per actor name and verb (ARCHITECTURE.md, section 7), on
// the receiving node. The authenticator makes a link's principal once, when
// the link is admitted or opened, and with it the link's access: the rules
// of node_config::rules that name that principal. The threads that read
// the link then ask the access, per envelope, before the payload is parsed
// (link_core::deliver), and the link's proxy asks it for monitors and name
// listings. Refusals are counted and logged here (refusal_log).
//
// The node's own user gets an unrestricted access: the readers skip the
// check altogether (one flag), so same-user links cost nothing.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "binding.hpp"
#include "courier/access.hpp"

namespace courier::detail {

/// What one link's principal may do to the actors of this node.
///
/// Thread safety: immutable but for an internal cache guarded by a mutex;
/// every member function may be called from any thread.
class link_access {
public:
  /// `principal` as the authenticator names it ("uid:1000"); `rules` those
  /// of node_config::rules that name it; `unrestricted` for the node's own
  /// user (and the users of allowed_uids and allowed_gids).
  link_access(std::string principal, std::vector<access_rule> rules,
              bool unrestricted);

  /// An access that allows everything, for links whose peer is trusted
  /// as a whole (tests of the link protocol).
  static std::shared_ptr<const link_access> everything(std::string principal);

  /// "uid:1000", "cert:CN=billing-1", ...: for refusals and log lines.
  const std::string& principal() const noexcept {
    return principal_;
  }

  /// True if every verb on every name is allowed: callers skip the check.
  bool unrestricted() const noexcept {
    return unrestricted_;
  }

  /// True if some rule allows something: the principal may link at all.
  bool allows_anything() const noexcept {
    return unrestricted_ || !rules_.empty();
  }

  /// The verbs allowed on `target` ("actor" or "actor@node": the actor's
  /// name counts). Decisions are cached per name (at most a few thousand).
  verbs allowed(std::string_view target) const;

  /// Whether `verb` is allowed on `target`.
  bool allows(std::string_view target, verbs verb) const {
    return unrestricted_ || courier::allows(allowed(target), verb);
  }

private:
  const std::string principal_;
  const std::vector<access_rule> rules_;
  const bool unrestricted_;
  mutable std::mutex mu_;
  mutable string_map<verbs> decided_; // guarded by mu_
};

/// The name of one verb ("post"), for refusals and log lines.
std::string_view verb_name(verbs verb) noexcept;

/// Counts the node's refusals and words its log lines: the first refusal
/// is logged, then at most one line per `interval`, which says how many
/// refusals it stands for. A flood of refused messages thus costs a few
/// lines, and the count (node::refusals) says the rest.
///
/// Thread safety: all member functions may be called from any thread.
class refusal_log {
public:
  explicit refusal_log(std::chrono::nanoseconds interval
                       = std::chrono::seconds{1}) noexcept
    : interval_(interval) {}

  /// Counts one refusal; returns the line to log, or nothing when a line
  /// was logged less than an interval ago.
  std::optional<std::string> count(std::string_view principal,
                                   std::string_view peer_node, verbs verb,
                                   std::string_view target);

  /// Refusals since the node started.
  std::uint64_t total() const noexcept {
    return total_.load(std::memory_order_relaxed);
  }

  /// Refusals of one verb (a single bit of `verbs`) since the node started.
  std::uint64_t of(verbs verb) const noexcept;

private:
  const std::chrono::nanoseconds interval_;
  std::atomic<std::uint64_t> total_{0};
  std::array<std::atomic<std::uint64_t>, 5> by_verb_{}; // bit i of verbs
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_line_{}; // guarded by mu_
  bool logged_any_ = false;                           // guarded by mu_
  std::uint64_t unlogged_ = 0;                        // guarded by mu_
};

} // namespace courier::detail

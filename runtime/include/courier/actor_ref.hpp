#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "courier/fwd.hpp"

namespace courier {

/// A handle on a name binding, as returned by find() and spawn(). It follows
/// the name across restarts by a supervisor, and verbs given an actor_ref skip
/// the name lookup.
///
/// Thread safety: a value type; copies may be used from any thread.
class actor_ref {
public:
  actor_ref() noexcept = default;

  /// The actor's name; empty for a default-constructed ref.
  const std::string& name() const noexcept;

  /// True while the name is bound to this binding (running or restarting).
  bool bound() const noexcept;

  explicit operator bool() const noexcept {
    return slot_ != nullptr;
  }

  friend bool operator==(const actor_ref& x, const actor_ref& y) noexcept {
    return x.slot_ == y.slot_;
  }

private:
  friend class detail::node_impl;
  friend class detail::shell;
  friend class context;

  explicit actor_ref(std::shared_ptr<detail::name_slot> slot) noexcept
    : slot_(std::move(slot)) {
  }

  std::shared_ptr<detail::name_slot> slot_;
};

/// Where a verb goes: an actor name ("orders", "orders@node-7") or an
/// actor_ref. Built implicitly; lives only for the call.
class destination {
public:
  destination(const char* name) noexcept : name_(name) {
  }

  destination(std::string_view name) noexcept : name_(name) {
  }

  destination(const std::string& name) noexcept : name_(name) {
  }

  destination(const actor_ref& ref) noexcept : name_(ref.name()), ref_(&ref) {
  }

  std::string_view name() const noexcept {
    return name_;
  }

  /// The ref this destination was built from, or nullptr.
  const actor_ref* ref() const noexcept {
    return ref_;
  }

private:
  std::string_view name_;
  const actor_ref* ref_ = nullptr;
};

} // namespace courier

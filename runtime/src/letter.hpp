#pragma once

// The in-process form of a message and the other CAF message types the
// runtime uses. Private to the runtime.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <caf/allowed_unsafe_message_type.hpp>

#include "courier/deadline.hpp"
#include "courier/errc.hpp"
#include "courier/message.hpp"
#include "courier/notices.hpp"
#include "courier/options.hpp"
#include "courier/trace.hpp"

namespace courier::detail {

class node_impl;
struct name_slot;

enum class letter_kind : std::uint8_t { post, request };

/// Bytes waiting: posts for a route to another node that are not yet
/// written to its link, or messages a link brought that local actors have
/// not yet handled; or, for an actor here, the posts in its mailbox (then
/// `bytes` counts posts). The owner may pause what fills it, and be told (once)
/// when it has drained to `resume_at`.
struct backlog {
  std::atomic<std::size_t> bytes{0};
  std::atomic<bool> paused{false};
  std::size_t resume_at = 0;     // set before use
  std::function<void()> resume;  // idem; runs on the thread that settles
  /// Posters blocked until there is room (post_options::wait_for_room),
  /// woken once the bytes are down to room_at. A waiter counts itself and
  /// tries again under room_mu, and whoever settles takes room_mu before
  /// waking, so no wake-up falls between a waiter's try and its wait.
  std::atomic<int> waiters{0};
  std::atomic<std::size_t> room_at{0};
  std::mutex room_mu;
  std::condition_variable room_cv;

  void wake_waiters() {
    { std::lock_guard guard{room_mu}; }
    room_cv.notify_all();
  }
};

/// The bytes one letter adds to a backlog, given back when the letter is
/// done with (written, handled, refused or dropped).
class backlog_charge {
public:
  backlog_charge() noexcept = default;

  /// Takes over `bytes` already added to `backlog`.
  backlog_charge(std::shared_ptr<backlog> backlog, std::size_t bytes) noexcept
    : backlog_(std::move(backlog)), bytes_(bytes) {
  }

  backlog_charge(backlog_charge&& other) noexcept
    : backlog_(std::move(other.backlog_)), bytes_(other.bytes_) {
  }

  backlog_charge& operator=(backlog_charge&& other) noexcept {
    if (this != &other) {
      settle();
      backlog_ = std::move(other.backlog_);
      bytes_ = other.bytes_;
    }
    return *this;
  }

  ~backlog_charge() {
    settle();
  }

  /// Adds `bytes` to the backlog, given back with the rest. Needs a
  /// backlog.
  void add(std::size_t bytes) noexcept {
    backlog_->bytes.fetch_add(bytes, std::memory_order_relaxed);
    bytes_ += bytes;
  }

  void settle() noexcept {
    if (!backlog_)
      return;
    // seq_cst, as the waiters' count is read after it: a waiter counts
    // itself before it tries, so one of the two sees the other.
    auto after = backlog_->bytes.fetch_sub(bytes_, std::memory_order_seq_cst)
                 - bytes_;
    if (backlog_->waiters.load(std::memory_order_seq_cst) > 0
        && after <= backlog_->room_at.load(std::memory_order_relaxed))
      backlog_->wake_waiters();
    if (after <= backlog_->resume_at
        && backlog_->paused.load(std::memory_order_acquire)
        && backlog_->paused.exchange(false) && backlog_->resume)
      backlog_->resume();
    backlog_.reset();
  }

private:
  std::shared_ptr<backlog> backlog_;
  std::size_t bytes_ = 0;
};

/// The answer to a request, as delivered through a CAF response promise or
/// a reply_sink.
struct reply_msg {
  message payload; // set when code == ok
  errc code = errc::ok;
  std::string text;
};

/// The way back for a request that came over a link: whoever answers
/// writes the answer to that link, on its own thread, with no hop through
/// the link's proxy. It answers once, and if it is dropped unanswered (the
/// letter died in a mailbox, say), it answers aborted.
class reply_sink {
public:
  virtual ~reply_sink() = default;
  virtual void deliver(reply_msg reply) = 0;
};

/// A backlog_charge held by a letter: moved with the letter, never copied
/// (a copy of a letter holds none).
class letter_charge : public backlog_charge {
public:
  using backlog_charge::backlog_charge;

  letter_charge() noexcept = default;
  letter_charge(letter_charge&&) noexcept = default;
  letter_charge& operator=(letter_charge&&) noexcept = default;

  /// A copy starts empty: the bytes stay with the original.
  letter_charge(const letter_charge&) noexcept : backlog_charge() {
  }

  letter_charge& operator=(const letter_charge&) = delete;

  letter_charge& operator=(backlog_charge&& other) noexcept {
    backlog_charge::operator=(std::move(other));
    return *this;
  }
};

/// What a letter carries: every field, listed once. Moved and copied as a
/// whole by letter's special members.
struct letter_fields {
  message payload;
  std::shared_ptr<name_slot> target;
  std::shared_ptr<name_slot> sender;
  deadline expires;
  /// The tier asked for by the sender (post_options::tier); empty: any.
  std::string tier;
  /// For a request that came over a link: where its answer goes (instead
  /// of the CAF requester's promise).
  std::shared_ptr<reply_sink> reply_to;
  letter_kind kind = letter_kind::post;
  /// A request that is one target's part of a broadcast: another node
  /// authorizes it as the verb broadcast (docs/security.md).
  bool broadcast = false;
  std::uint8_t priority = default_priority;
  /// The trace this letter belongs to (courier/trace.hpp); not valid():
  /// none.
  trace_context trace;
  /// Held while the letter waits for its route to another node or in an
  /// actor's mailbox; a copy holds none.
  letter_charge charge;
};

/// The node a letter reports to if it dies unconsumed. Moving hands the
/// duty over; a copy has none (only the original may report).
class dead_letter_duty {
public:
  dead_letter_duty() noexcept = default;

  explicit dead_letter_duty(node_impl* office) noexcept : office_(office) {
  }

  dead_letter_duty(dead_letter_duty&& other) noexcept
    : office_(std::exchange(other.office_, nullptr)) {
  }

  dead_letter_duty& operator=(dead_letter_duty&& other) noexcept {
    office_ = std::exchange(other.office_, nullptr);
    return *this;
  }

  dead_letter_duty(const dead_letter_duty&) noexcept {
  }

  dead_letter_duty& operator=(const dead_letter_duty&) = delete;

  /// The office, once: later calls return null.
  node_impl* take() noexcept {
    return std::exchange(office_, nullptr);
  }

private:
  node_impl* office_ = nullptr;
};

/// One message on its way to an in-process actor. It carries the payload
/// object itself (shared, immutable) and tracks its own delivery: a letter
/// destroyed before a handler consumed it is reported as a dead letter
/// (actor_stopped), once, which is how messages drained from a dead actor's
/// mailbox get counted without hooking into CAF. CAF requires copyable
/// message types; a copy never reports itself and holds no charge.
class letter : public letter_fields {
public:
  letter() noexcept = default;

  letter(letter_kind kind, message payload, std::shared_ptr<name_slot> target,
         std::shared_ptr<name_slot> sender, deadline expires,
         node_impl* office) noexcept
    : duty_(office) {
    letter_fields::payload = std::move(payload);
    letter_fields::target = std::move(target);
    letter_fields::sender = std::move(sender);
    letter_fields::expires = expires;
    letter_fields::kind = kind;
  }

  letter(letter&&) noexcept = default;
  letter(const letter&) = default;

  /// Reports this letter first if it was still owed a delivery.
  letter& operator=(letter&& other) noexcept {
    if (this != &other) {
      report_unconsumed();
      letter_fields::operator=(std::move(other));
      duty_ = std::move(other.duty_);
    }
    return *this;
  }

  letter& operator=(const letter&) = delete;

  ~letter() {
    report_unconsumed();
  }

  /// Marks the letter as handled (or reported): it will not report itself.
  void consume() noexcept {
    duty_.take();
  }

private:
  /// Reports the letter as a dead letter (actor_stopped) unless consumed.
  void report_unconsumed() noexcept;

  dead_letter_duty duty_;
};

/// A function to run inside an actor (continuations that must not run on
/// the caller's stack, down notices for context::monitor).
struct deferred_call {
  std::function<void()> fn;
};

/// Asks the supervisor to bring a failed actor back under its name.
struct restart_msg {
  std::shared_ptr<name_slot> slot;
  std::string reason; // the failure, for the log line
};

} // namespace courier::detail

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::letter)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::reply_msg)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::deferred_call)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(courier::detail::restart_msg)

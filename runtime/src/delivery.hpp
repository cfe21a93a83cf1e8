#pragma once

// The delivery stage: the place between the router and the links where a
// letter's delivery class is decided and the letter is handed on. The verbs
// (verbs.hpp) build a letter for a route the router (or the name registry)
// resolved and give it here; this stage knows nothing of tiers.
//
// Today every letter is express: it goes to the route's actor, which is the
// actor itself for a name here (the in-process hand-off) or the proxy of
// the route's link for a name elsewhere (remote.hpp); a request to another
// node may skip the proxy and be written to the link at once
// (request_direct). Durable posts (store-and-forward on disk,
// ARCHITECTURE.md section 6) never become letters: the verbs hand them to
// the node's durable plug-in (courier/durable_plugin.hpp), whose forwarder
// and dispatcher come back through the verbs as express requests.
//
// Thread safety: the functions are thread-safe; each is called on the
// thread of the verb's caller (a plain thread, or an actor running its
// handler) and returns once the letter is handed on, without waiting for
// it to arrive.

#include <cstdint>

#include <caf/fwd.hpp>
#include <caf/message_id.hpp>

#include "binding.hpp"
#include "letter.hpp"

namespace courier::detail {

class node_impl;

/// How one letter travels (ARCHITECTURE.md section 4's delivery class).
enum class delivery_class : std::uint8_t {
  /// At most once, in order per pair: the in-process hand-off, or the
  /// route's link.
  express,
  // Durable posts go to the durable plug-in before they become letters.
};

/// The delivery class of `msg`: every letter is express (durable posts
/// never become letters).
delivery_class class_of(const letter& msg) noexcept;

/// Letters of this priority and above take CAF's urgent lane, overtaking
/// queued letters of lower priority in the receiving mailbox.
inline constexpr std::uint8_t urgent_priority = 6;

/// Hands a post to its route. `from` is the posting actor (the CAF sender
/// of the letter, and the execution unit it is enqueued from), or null for
/// a plain thread (an anonymous message). Never fails: refusals (options,
/// backlog) are the verbs' and come before.
void deliver_post(const route& to, letter msg, caf::local_actor* from);

/// Hands a letter for an actor of this node to it from a plain thread, as
/// deliver_post(to, msg, nullptr) does, and if that made the actor
/// runnable (it was idle), runs it on the calling thread for that one
/// letter before returning: the thread is lent to the actor instead of
/// waking a scheduler thread. What the run makes runnable, and the rest
/// of the actor's mailbox, go to the scheduler. Not from inside an actor.
void deliver_here(caf::actor_system& system, const route& to, letter msg);

/// Hands a request to its route under `id`, a request id `from` made; the
/// answer (a reply_msg, or a caf::error) comes to `from` as
/// `id.response_id()`, and `from` waits for it in its own way (blocking or a
/// continuation), keeping the deadline itself. With `direct`, a request to
/// another node is written straight to the link when its proxy holds
/// nothing back (request_direct); else it goes through the route's actor,
/// counted into the route's backlog (node_impl::charge_request).
void deliver_request(node_impl& node, const route& to, letter msg,
                     caf::local_actor& from, caf::message_id id, bool direct);

} // namespace courier::detail

#include "verbs.hpp"

#include <algorithm>
#include <chrono>

#include <caf/local_actor.hpp>

#include "delivery.hpp"
#include "node_impl.hpp"

namespace courier::detail {

// -- route_cache --------------------------------------------------------------

expected<const route*> route_cache::resolve(node_impl& node, destination to,
                                            const message& msg,
                                            const name_slot* sender) {
  if (to.ref() != nullptr || capacity_ == 0) {
    // A ref skips the name lookup: nothing to cache.
    auto found = node.resolve(to, msg, sender);
    if (!found)
      return std::move(found).error();
    last_ = std::move(*found);
    return &last_;
  }
  // Read the generation first: a change racing with the lookup below then
  // makes the new entry stale rather than wrong.
  auto generation = node.generation();
  auto i
    = std::find_if(routes_.begin(), routes_.end(),
                   [&](const cached_route& x) { return x.name == to.name(); });
  if (i != routes_.end() && i->generation == generation)
    return &i->target;
  if (i != routes_.end())
    routes_.erase(i);
  auto found = node.resolve(to, msg, sender);
  if (!found)
    return std::move(found).error();
  routes_.insert(routes_.begin(),
                 {std::string{to.name()}, generation, std::move(*found)});
  if (routes_.size() > capacity_)
    routes_.pop_back();
  return &routes_.front().target;
}

void route_cache::clear() noexcept {
  routes_.clear();
  last_ = route{};
}

const std::shared_ptr<name_slot>& no_binding() noexcept {
  static const std::shared_ptr<name_slot> none;
  return none;
}

namespace {

/// The counters of the calling actor; null for a plain thread.
actor_stats* sender_stats(const verb_caller& from) noexcept {
  return from.binding ? from.binding->stats : nullptr;
}

} // namespace

// -- post ---------------------------------------------------------------------

expected<void> post(node_impl& node, const verb_caller& from, destination to,
                    message msg, post_options options) {
  if (options.durable) {
    trace_context trace;
    next_trace(trace, from.trace, node.config().trace);
    auto stored = node.post_durable(to.name(), msg, options, trace);
    if (!stored)
      return std::move(stored).error();
    return {};
  }
  if (!msg)
    return error{errc::invalid_argument, "cannot post a null message"};
  auto target = from.routes.resolve(node, to, msg, from.binding.get());
  if (!target)
    return std::move(target).error();
  if (auto checked = node.check_post_options(options); !checked)
    return checked;
  const route& dest = **target;
  // An actor never waits: it would hold its scheduler thread.
  auto charge = node.charge_backlog(
    dest, msg,
    from.binding ? std::chrono::nanoseconds{0} : options.wait_for_room);
  if (!charge)
    return std::move(charge).error();
  auto envelope = node.make_letter(letter_kind::post, std::move(msg), dest,
                                   from.binding, options.expires);
  envelope.charge = std::move(*charge);
  envelope.priority = options.priority;
  envelope.tier = std::move(options.tier);
  next_trace(envelope.trace, from.trace, node.config().trace);
  if (options.lend_thread && from.self == nullptr && !from.binding
      && dest.slot->node.empty())
    deliver_here(node.system(), dest, std::move(envelope));
  else
    deliver_post(dest, std::move(envelope), from.self);
  if (!dest.link)
    node.metrics().count_local(sender_stats(from));
  return {};
}

// -- requests -----------------------------------------------------------------

namespace {

/// The route of a request's destination, as the caller resolves it;
/// invalid_argument for a null message.
expected<const route*> request_route(node_impl& node, const verb_caller& from,
                                     destination to, const message& msg) {
  if (!msg)
    return error{errc::invalid_argument, "cannot request with a null message"};
  return from.routes.resolve(node, to, msg, from.binding.get());
}

/// The letter of a request to `to`, continuing the caller's trace;
/// deadline_exceeded if its deadline has passed already.
expected<letter> request_letter(node_impl& node, const verb_caller& from,
                                const route& to, message msg, deadline until) {
  if (until.expired())
    return error{errc::deadline_exceeded,
                 "the deadline had passed before asking "
                   + quoted(to.slot->name)};
  auto envelope = node.make_letter(letter_kind::request, std::move(msg), to,
                                   from.binding, until);
  next_trace(envelope.trace, from.trace, node.config().trace);
  return expected<letter>{std::move(envelope)}; // moved: a copy owes nothing
}

} // namespace

expected<started_request> start_request(node_impl& node,
                                        const verb_caller& from, destination to,
                                        message msg, deadline until,
                                        bool direct) {
  auto target = request_route(node, from, to, msg);
  if (!target)
    return std::move(target).error();
  return start_request(node, from, **target, std::move(msg), until, direct);
}

expected<started_request> start_request(node_impl& node,
                                        const verb_caller& from,
                                        const route& to, message msg,
                                        deadline until, bool direct,
                                        bool broadcast) {
  COURIER_RUNTIME_ASSERT(from.self != nullptr, "a request needs an actor");
  auto envelope = request_letter(node, from, to, std::move(msg), until);
  if (!envelope)
    return std::move(envelope).error();
  envelope->broadcast = broadcast;
  auto id = from.self->new_request_id(caf::message_priority::normal);
  // Timed from here to the answer when the target is an actor here (the
  // links time requests to other nodes), one in timing_sample.
  auto sent = to.slot->stats != nullptr && sample_request()
                ? metrics_clock::now()
                : metrics_clock::time_point{};
  deliver_request(node, to, std::move(*envelope), *from.self, id, direct);
  if (!to.link)
    node.metrics().count_local(sender_stats(from));
  return started_request{id, to.slot, sent};
}

expected<bool> request_to_sink(node_impl& node, const verb_caller& from,
                               destination to, message msg, deadline until,
                               std::shared_ptr<reply_sink> sink,
                               bool lend_thread) {
  auto target = request_route(node, from, to, msg);
  if (!target)
    return std::move(target).error();
  const route& dest = **target;
  if (!dest.slot->node.empty())
    return false;
  auto envelope = request_letter(node, from, dest, std::move(msg), until);
  if (!envelope)
    return std::move(envelope).error();
  envelope->reply_to = std::move(sink);
  envelope->charge = node.charge_request(dest, envelope->payload);
  // Handed on as a plain thread's post is (anonymous): the answer takes
  // reply_to, not CAF's response id.
  if (lend_thread)
    deliver_here(node.system(), dest, std::move(*envelope));
  else
    deliver_post(dest, std::move(*envelope), nullptr);
  node.metrics().count_local(sender_stats(from));
  return true;
}

expected<message> outcome_of(reply_msg& reply) {
  if (reply.code == errc::ok)
    return std::move(reply.payload);
  return error{reply.code, std::move(reply.text)};
}

error outcome_of(const caf::error& err, const name_slot& target) {
  return from_caf(err, target.name, !target.node.empty());
}

caf::duration to_caf(deadline until) {
  if (until.is_never())
    return caf::duration{caf::infinite};
  return caf::duration{
    std::chrono::duration_cast<std::chrono::nanoseconds>(until.remaining())};
}

error from_caf(const caf::error& err, std::string_view target, bool remote) {
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
      case caf::sec::request_timeout:
        return {errc::deadline_exceeded,
                "no reply from " + quoted(target) + " before the deadline"};
      case caf::sec::request_receiver_down:
        if (remote)
          return {errc::unavailable,
                  "the link to the node of " + quoted(target) + " closed"};
        return {errc::aborted, quoted(target) + " stopped before replying"};
      default:
        break;
    }
  }
  return {errc::internal, quoted(target) + ": " + caf::to_string(err)};
}

// -- broadcast ----------------------------------------------------------------

broadcast_result refuse_broadcast(node_impl& node, const verb_caller& from,
                                  std::string_view pattern, const error& why) {
  broadcast_result refused;
  for (auto& target : node.match(pattern))
    if (target.slot != from.binding)
      refused.failed.push_back({target.slot->name, why});
  sort_result(refused);
  return refused;
}

broadcast_plan plan_broadcast(node_impl& node, const verb_caller& from,
                              std::string_view pattern, const message& msg) {
  if (!msg)
    return {refuse_broadcast(
              node, from, pattern,
              error{errc::invalid_argument, "cannot broadcast a null message"}),
            {}};
  broadcast_plan plan;
  for (auto& target : node.match(pattern)) {
    if (target.slot == from.binding)
      continue;
    if (!target.handle) {
      plan.known.dead.push_back(target.slot->name);
      continue;
    }
    plan.targets.push_back(std::move(target));
  }
  return plan;
}

void classify(broadcast_result& result, std::string name,
              expected<message> outcome) {
  if (outcome) {
    result.replied.push_back({std::move(name), std::move(*outcome)});
    return;
  }
  switch (outcome.code()) {
    case errc::deadline_exceeded:
      result.timed_out.push_back(std::move(name));
      break;
    case errc::aborted:
    case errc::not_found:
    case errc::unavailable:
      result.dead.push_back(std::move(name));
      break;
    default:
      result.failed.push_back({std::move(name), outcome.error()});
  }
}

void sort_result(broadcast_result& result) {
  auto by_name = [](const auto& x, const auto& y) { return x.name < y.name; };
  std::sort(result.replied.begin(), result.replied.end(), by_name);
  std::sort(result.failed.begin(), result.failed.end(), by_name);
  std::sort(result.timed_out.begin(), result.timed_out.end());
  std::sort(result.dead.begin(), result.dead.end());
}

} // namespace courier::detail

#include "link_core.hpp"

#include <caf/send.hpp>

#include "courier/v1/durable.pb.h"
#include "link_messages.hpp"

namespace courier::detail {

namespace {

constexpr std::string_view durable_transfer_type = "courier.v1.DurableTransfer";

} // namespace

/// The envelope of a letter to another node (viewing the letter's strings
/// and `node_name`), or nothing when its deadline has passed.
std::optional<envelope_head> envelope_of(const letter& msg,
                                         const std::string& node_name,
                                         std::uint64_t id) {
  envelope_head env;
  if (!msg.expires.is_never()) {
    auto left = msg.expires.remaining();
    if (left <= deadline::clock::duration::zero())
      return std::nullopt;
    env.timeout_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(left).count());
  }
  env.target = msg.target->name;
  env.has_sender = true;
  env.sender_node = node_name;
  if (msg.sender)
    env.sender_actor = msg.sender->name;
  env.type_name = msg.payload->GetDescriptor()->full_name();
  env.message_id = id;
  env.kind = msg.kind == letter_kind::request ? v1::KIND_REQUEST
                                              : v1::KIND_POST;
  env.priority = msg.priority;
  env.broadcast = msg.broadcast;
  env.trace = msg.trace;
  // created_unix_ns is for durable messages: express ones leave it out.
  return env;
}

/// The way back for one request that came over a link (see reply_sink).
class link_reply final : public reply_sink {
public:
  link_reply(std::shared_ptr<link_core> core, std::uint64_t id,
             std::shared_ptr<name_slot> target)
    : core_(std::move(core)), id_(id), target_(std::move(target)) {
  }

  ~link_reply() override {
    if (!done_)
      core_->answer(id_, reply_msg{nullptr, errc::aborted,
                                   quoted(target_->name)
                                     + " stopped before replying"});
  }

  void deliver(reply_msg reply) override {
    if (!std::exchange(done_, true))
      core_->answer(id_, std::move(reply));
  }

private:
  std::shared_ptr<link_core> core_;
  std::uint64_t id_;
  std::shared_ptr<name_slot> target_;
  bool done_ = false;
};

void link_core::deliver(const inbound_frame& frame, backlog_charge& charge) {
  const auto& env = frame.env;
  const bool is_request = env.kind == v1::KIND_REQUEST;
  auto refuse = [&](errc code, const std::string& text,
                    dead_letter_reason reason) {
    owner_.report_dead_letter(reason, env.target, nullptr, nullptr);
    if (is_request)
      answer(env.message_id, reply_msg{nullptr, code, text});
  };
  // Authorized before anything else, the payload unparsed: a refusal
  // reaches neither the actor nor its dead letters, and says nothing of
  // whether the name is held here.
  // A durable transfer is a request only to carry its acknowledgement: it
  // asks to post to the name (docs/durable.md).
  const bool durable = is_request && !env.broadcast
                       && env.type_name == durable_transfer_type;
  const auto verb = !is_request || durable ? verbs::post
                    : env.broadcast        ? verbs::broadcast
                                           : verbs::send;
  if (!authorized(env.target, verb, env.trace)) {
    if (is_request)
      answer(env.message_id,
             reply_msg{nullptr, errc::permission_denied,
                       access_->principal() + " may not "
                         + std::string{verb_name(verb)} + " to "
                         + quoted(env.target) + " on node "
                         + quoted(node_name_)});
    return;
  }
  auto target = owner_.resolve_local(env.target);
  if (!target)
    return refuse(target.code(), target.error().message(),
                  target.code() == errc::unavailable
                    ? dead_letter_reason::restarting
                    : dead_letter_reason::no_such_name);
  if (durable)
    return accept_durable(frame, charge);
  auto prototype = owner_.prototype(env.type_name);
  if (!prototype)
    return refuse(errc::unimplemented,
                  "'" + std::string{env.target} + "' has no handler for "
                    + std::string{env.type_name},
                  dead_letter_reason::unhandled_type);
  auto payload = new_payload(frame, **prototype);
  if (!parse(frame, *payload))
    return refuse(errc::invalid_argument,
                  "the payload is not a valid " + std::string{env.type_name},
                  dead_letter_reason::malformed);
  if (auto over = charge_parsed(frame, **prototype, *payload, charge))
    return refuse(errc::resource_exhausted, *over,
                  dead_letter_reason::malformed);
  deadline until;
  if (env.timeout_ns > 0)
    until = deadline{std::chrono::nanoseconds{
      std::min<std::uint64_t>(env.timeout_ns, std::uint64_t{1} << 62)}};
  auto sender = sender_slot(env.sender_actor);
  auto msg = owner_.make_letter(is_request ? letter_kind::request
                                           : letter_kind::post,
                                std::move(payload), *target, std::move(sender),
                                until);
  msg.charge = std::move(charge); // until the actor has handled it
  msg.trace = env.trace;
  if (is_request)
    // The target answers, or the letter dies unanswered and says so.
    msg.reply_to = std::make_shared<link_reply>(shared_from_this(),
                                                env.message_id,
                                                target->slot);
  caf::anon_send(target->handle, std::move(msg));
}

std::optional<std::string>
link_core::charge_parsed(const inbound_frame& frame,
                         const google::protobuf::Message& prototype,
                         const google::protobuf::Message& payload,
                         backlog_charge& charge) {
  const auto& env = frame.env;
  const auto wire = frame.bulk == nullptr
                      ? frame.payload.size()
                      : frame.split.before.size() + frame.split.header.size()
                          + frame.bulk->size() + frame.split.after.size();
  // The inbound budget counts what the message holds until it is handled,
  // not its wire bytes (repeated empty elements take 20 times more).
  auto held = held_size(prototype, payload, wire);
  if (held <= wire)
    return std::nullopt;
  if (held > budget_) {
    owner_.log_peer_fault(
      "refused a " + std::string{env.type_name} + " from node '" + peer_
        + "': parsed, it holds " + std::to_string(held)
        + " bytes, over the link's budget of " + std::to_string(budget_)
        + " (limits.max_queued)",
      {env.target, peer_, "resource_exhausted", env.trace});
    return "the payload holds " + std::to_string(held)
           + " bytes parsed, over the link's budget of "
           + std::to_string(budget_);
  }
  charge.add(held - wire);
  return std::nullopt;
}

void link_core::accept_durable(const inbound_frame& frame,
                               backlog_charge& charge) {
  const auto& env = frame.env;
  auto transfer = std::make_shared<v1::DurableTransfer>();
  if (!parse(frame, *transfer))
    return answer(env.message_id,
                  reply_msg{nullptr, errc::invalid_argument,
                            "the payload is not a valid "
                              + std::string{durable_transfer_type}});
  // Many empty items are few bytes on the wire and much more parsed.
  if (auto over = charge_parsed(frame, v1::DurableTransfer::default_instance(),
                                *transfer, charge))
    return answer(env.message_id,
                  reply_msg{nullptr, errc::resource_exhausted, *over});
  // The link's inbound budget holds the transfer until it is stored.
  auto held = std::make_shared<backlog_charge>(std::move(charge));
  owner_.accept_durable(
    env.target, std::move(transfer),
    [self = shared_from_this(), id = env.message_id,
     held](expected<message> outcome) mutable {
      held.reset();
      if (outcome)
        self->answer(id, reply_msg{std::move(*outcome), errc::ok, {}});
      else
        self->answer(id, reply_msg{nullptr, outcome.code(),
                                   outcome.error().message()});
    });
}

void link_core::complete(const inbound_frame& frame) {
  const auto& env = frame.env;
  auto request = take(env.correlation_id);
  if (!request)
    return; // late: the requester has given up already
  if (request->sent != metrics_clock::time_point{})
    info_->request_rtt.record(metrics_clock::now() - request->sent);
  reply_msg reply;
  if (env.kind == v1::KIND_ERROR) {
    reply.code = static_cast<errc>(env.error_code);
    if (reply.code == errc::ok)
      reply.code = errc::unknown;
    reply.text = env.error_message;
  } else if (auto prototype = owner_.prototype(env.type_name)) {
    auto payload = new_payload(frame, **prototype);
    if (parse(frame, *payload))
      reply.payload = std::move(payload);
    else
      reply = reply_msg{nullptr, errc::internal,
                        "a malformed reply of type "
                          + std::string{env.type_name}};
  } else {
    reply = reply_msg{nullptr, errc::internal,
                      "a reply of unknown type " + std::string{env.type_name}};
  }
  request->answer(std::move(reply));
}

frame link_core::answer_frame(std::uint64_t id, const reply_msg& reply) const {
  envelope_head env;
  env.correlation_id = id;
  env.has_sender = true;
  env.sender_node = node_name_;
  const google::protobuf::Message* payload = nullptr;
  if (reply.code == errc::ok) {
    env.kind = v1::KIND_REPLY;
    env.type_name = reply.payload->GetDescriptor()->full_name();
    payload = reply.payload.get();
  } else {
    env.kind = v1::KIND_ERROR;
    env.has_error = true;
    env.error_code = static_cast<std::uint32_t>(reply.code);
    env.error_message = reply.text;
  }
  frame out;
  if (auto encoded = encode_frame(env, payload, out, reply.payload);
      !encoded) {
    // A reply that cannot be serialized: say why instead of a broken reply.
    auto why = "the reply cannot be sent: " + encoded.error().message();
    env.type_name = {};
    env.kind = v1::KIND_ERROR;
    env.has_error = true;
    env.error_code = static_cast<std::uint32_t>(errc::internal);
    env.error_message = why;
    (void)encode_frame(env, nullptr, out); // a head alone always encodes
  }
  return out;
}

bool link_core::write_answer(link& conn, std::uint64_t id, frame out) const {
  auto written = conn.write(std::move(out));
  if (written || written.code() == errc::unavailable)
    return static_cast<bool>(written); // closed: on_closed tells everyone
  // The link stays, but would not take the answer (a transport's own
  // limit): the requester learns why instead of waiting out its deadline.
  return static_cast<bool>(conn.write(answer_frame(
    id, reply_msg{nullptr, written.code(),
                  "the reply could not be written: "
                    + written.error().message()})));
}

void link_core::answer(std::uint64_t id, reply_msg reply) {
  auto out = answer_frame(id, reply);
  if (out.size() > max_frame_) // the requester learns why, not nothing
    out = answer_frame(id, reply_msg{nullptr, errc::resource_exhausted,
                                     "the reply of " + std::to_string(out.size())
                                       + " bytes is over the frame limit of "
                                       + std::to_string(max_frame_)});
  // Nothing waits to be written to this link (letters are counted into the
  // route's backlog until written), no move to a side link is under way and
  // the link has room: the answer may go now, from here.
  auto& waiting = info_->backlog;
  {
    std::lock_guard guard{conn_mu_};
    if (conn_ == nullptr)
      return; // the link is gone
    if (direct_ && waiting->bytes.load(std::memory_order_acquire) == 0
        && conn_->writable()) {
      if (write_answer(*conn_, id, std::move(out)))
        dirty_.store(true, std::memory_order_release);
      return;
    }
  }
  auto proxy = caf::actor_cast<caf::actor>(proxy_);
  if (!proxy)
    return; // the link is gone
  auto bytes = std::max<std::size_t>(out.size(), 1);
  // Answers the peer does not read count against the link: past the
  // budget, the link closes (overrun_msg) and the answer is dropped with it.
  auto owed = answers_->bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (owed > 0 && owed + bytes > budget_) {
    answers_->bytes.fetch_sub(bytes, std::memory_order_relaxed);
    if (!overrun_.exchange(true))
      caf::anon_send(proxy, overrun_msg{owed});
    return;
  }
  waiting->bytes.fetch_add(bytes, std::memory_order_relaxed);
  caf::anon_send(proxy,
                 answer_msg{id, std::make_shared<frame>(std::move(out)),
                            std::make_shared<backlog_charge>(waiting, bytes),
                            std::make_shared<backlog_charge>(answers_, bytes)});
}

bool link_core::request_here(letter& msg, caf::strong_actor_ptr requester,
                             caf::message_id id) {
  auto& waiting = info_->backlog->bytes;
  if (waiting.load(std::memory_order_acquire) != 0)
    return false; // behind what waits in the proxy
  auto message_id = next_id();
  auto env = envelope_of(msg, node_name_, message_id);
  frame out;
  if (!env || !encode_frame(*env, msg.payload.get(), out, msg.payload))
    return false; // the proxy says why
  std::lock_guard guard{conn_mu_};
  if (conn_ == nullptr || !direct_
      || waiting.load(std::memory_order_acquire) != 0 || !conn_->writable())
    return false;
  // Expected before it is written: the answer may come at once.
  expect(message_id,
         pending_request{std::move(requester), id, msg.target->name,
                         msg.expires, send_time()});
  auto bytes = out.size();
  if (!conn_->write(std::move(out))) {
    take(message_id);
    return false; // the proxy tries, and learns why
  }
  dirty_.store(true, std::memory_order_release);
  count_out(bytes);
  msg.consume();
  return true;
}

} // namespace courier::detail

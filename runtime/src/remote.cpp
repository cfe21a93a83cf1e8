#include "remote.hpp"

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include <google/protobuf/descriptor.h>

#include "frame.hpp"
#include "node_impl.hpp"

namespace courier::detail {

namespace {

/// Monitors a peer may hold on actors of this node through one link; one
/// more closes the link (each costs the node a monitor entry).
constexpr std::size_t max_served_watches = std::size_t{1} << 16;

/// Bumped whenever the link protocol changes incompatibly.
/// Version 2: barriers (Barrier/BarrierAck) for moving a route between links.
/// Version 3: the Hello and HelloAck are at most hello_frame_limit bytes
/// (their records leave out type_files), and the connector writes nothing
/// but its Hello until it has read the HelloAck.
constexpr std::uint32_t protocol_version = 3;

/// What one frame from a link is charged in the link's inbound budget
/// beyond the bytes that payload holds (see link_core::held_size): the
/// letter, mailbox element and message object around it, and what a flat
/// payload may hold beyond its wire bytes (its object and at most 16
/// string headers). Tiny messages are thus counted at what they cost.
constexpr std::size_t message_overhead = 1024;

/// Whether a message has unknown fields, which Protobuf keeps (a field
/// unknown here costs 16 bytes and more for its 2 bytes on the wire), read
/// without reflection (GetUnknownFields() costs ~35 ns).
struct unknown_fields_peek : google::protobuf::MessageLite {
  static bool present(const google::protobuf::MessageLite& msg) {
    return (msg.*(&unknown_fields_peek::_internal_metadata_))
      .have_unknown_fields();
  }
};

/// True if a parsed `type` holds at most its wire bytes plus
/// message_overhead when it has no unknown fields: a generated type of at
/// most 16 fields, none repeated, map or message, without extensions.
bool flat_type(const google::protobuf::Descriptor& type) {
  if (type.field_count() > 16 || type.extension_range_count() > 0
      || type.file()->pool()
           != google::protobuf::DescriptorPool::generated_pool())
    return false;
  for (int i = 0; i < type.field_count(); ++i) {
    const auto* field = type.field(i);
    if (field->is_repeated()
        || field->cpp_type()
             == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE)
      return false;
  }
  return true;
}

/// Letters a proxy holds back while it moves writes to another link or waits
/// for room in its link's queue; more are refused (resource_exhausted)
/// rather than kept without bound.
constexpr std::size_t max_held_letters = std::size_t{1} << 16;
constexpr std::size_t max_held_bytes = std::size_t{64} << 20;

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
  std::shared_ptr<frame> out; // shared: CAF wants copyable messages
  std::shared_ptr<backlog_charge> charge;
  std::shared_ptr<backlog_charge> owed; // link_core::answers_waiting()
};

/// Answers owed to the peer would pass their budget: it does not read them.
struct overrun_msg {
  std::size_t waiting; // bytes of answers waiting in the proxy
};

} // namespace
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

namespace courier::detail {

namespace {

using namespace std::chrono_literals;

// -- what a proxy shares with other threads ---------------------------------------
//
// A letter crossing to another node costs CAF mailbox hops, and a round trip
// over shared memory is mostly hops. So the hot paths skip the proxy:
// - the thread that reads a frame (the transport's, or an idle scheduler
//   thread polling it) parses it and hands the letter straight to the target
//   actor, or completes the waiting request straight into the requester's
//   mailbox;
// - whoever answers a request that came over the link writes the answer to
//   the link itself (link_reply);
// - an actor's request goes to the link from the actor's own thread
//   (request_direct).
// The proxy still handles the handshake, system messages, and every frame
// that arrives while frames it was given earlier are unfinished: frames of
// one link reach actors in the order read. Answers and requests go through
// the proxy, behind them, while letters wait there for the same link (the
// route's backlog is not zero) or the proxy moves writes to another link:
// order per (sender, receiver) holds for them too.

/// A frame read from a link, decoded. Its head views the frame's bytes, or
/// `full` (so it stays where it is).
struct inbound_frame {
  inbound_frame() = default;
  inbound_frame(const inbound_frame&) = delete;
  inbound_frame& operator=(const inbound_frame&) = delete;

  envelope_head env;
  v1::Envelope full;        // when Protobuf parsed the frame
  std::string_view payload; // unsplit frames
  split_payload split;      // split frames: the payload around the bulk
  std::string* bulk = nullptr;
};

/// A request sent over the link, waiting for its answer.
struct pending_request {
  caf::strong_actor_ptr requester;
  caf::message_id id; // of the requester's CAF request
  std::string target;
  deadline until;

  /// Answers the CAF request, from any thread (no actor of ours in between).
  void answer(reply_msg reply) {
    if (requester)
      requester->enqueue(nullptr, id.response_id(),
                         caf::make_message(std::move(reply)), nullptr);
  }
};

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
  // created_unix_ns is for durable messages: express ones leave it out.
  return env;
}

} // namespace

/// What a link's proxy shares with the threads that read its link and the
/// actors that write to it or answer over it (see above).
class link_core : public std::enable_shared_from_this<link_core> {
public:
  link_core(node_impl& owner, link& conn, std::shared_ptr<link_info> info)
    : owner_(owner),
      node_name_(owner.name()),
      max_frame_(owner.config().limits.max_frame),
      budget_(owner.config().limits.max_queued),
      info_(std::move(info)),
      conn_(&conn) {
  }

  const std::shared_ptr<backlog>& inbound() const noexcept {
    return inbound_;
  }

  const std::shared_ptr<bulk_pool>& bulks() const noexcept {
    return bulks_;
  }

  /// The link's budget: limits.max_queued bytes of messages brought and not
  /// yet handled (inbound()), and as much again of answers waiting in the
  /// proxy for room in the link (answers_waiting()).
  std::size_t budget() const noexcept {
    return budget_;
  }

  /// Bytes of answers to the peer waiting in the proxy (or on their way to
  /// it) for room in the link.
  const std::shared_ptr<backlog>& answers_waiting() const noexcept {
    return answers_;
  }

  caf::actor proxy() const {
    return caf::actor_cast<caf::actor>(proxy_);
  }

  // -- the proxy's side ----------------------------------------------------------

  /// Names the proxy, before its link starts.
  void bind(caf::actor_addr proxy) {
    proxy_ = std::move(proxy);
  }

  /// Whether actors may write requests to the link themselves
  /// (request_here): not while the proxy moves writes to another link.
  /// Once this returns false, no such write is under way.
  void allow_direct(bool allowed) {
    std::lock_guard guard{conn_mu_};
    direct_ = allowed;
  }

  /// Written to since the last barrier (see "choosing the link").
  bool dirty() const noexcept {
    return dirty_.load(std::memory_order_acquire);
  }

  void mark_dirty(bool written = true) noexcept {
    dirty_.store(written, std::memory_order_release);
  }

  /// A fresh message id for the link.
  std::uint64_t next_id() noexcept {
    return next_id_.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  /// The handshake is done: frames may now be handled where they are read.
  void open(const std::string& peer) {
    peer_ = peer;
    open_.store(true, std::memory_order_release);
  }

  /// The link is lost: every frame goes to the proxy (which drops them).
  /// Once this returns, no frame is being handled here any more (the node
  /// may be on its way down).
  void lose() {
    std::lock_guard guard{read_mu_};
    open_.store(false, std::memory_order_release);
  }

  /// The proxy lets go of the link: answers written later are dropped.
  void detach() {
    std::lock_guard guard{conn_mu_};
    conn_ = nullptr;
  }

  /// Hands the string of a frame handled here back to the link.
  void recycle(std::string buffer) {
    std::lock_guard guard{conn_mu_};
    if (conn_ != nullptr)
      conn_->recycle(std::move(buffer));
  }

  /// Counts a frame message sent to the proxy, or (handled) done with.
  void forwarded() {
    in_proxy_.fetch_add(1, std::memory_order_relaxed);
  }

  void handled() {
    in_proxy_.fetch_sub(1, std::memory_order_release);
  }

  // -- reading -------------------------------------------------------------------

  /// Handles a frame on the thread that read it, if it is a letter, an
  /// answer or an error and nothing the proxy was given before is
  /// unfinished; false leaves it to the proxy. `size` bytes were counted
  /// into inbound().
  bool read_here(std::string_view bytes, std::string* bulk,
                 std::size_t bulk_at, std::size_t size) {
    std::lock_guard guard{read_mu_}; // one reader at a time: never waits
    if (!open_.load(std::memory_order_acquire)
        || in_proxy_.load(std::memory_order_acquire) != 0)
      return false;
    inbound_frame frame;
    if (!decode(bytes, bulk, bulk_at, frame))
      return false; // the proxy says why, and closes the link
    auto kind = frame.env.kind;
    if (kind == v1::KIND_SYSTEM || !v1::Kind_IsValid(kind))
      return false;
    backlog_charge charge{inbound_, size};
    if (kind == v1::KIND_POST || kind == v1::KIND_REQUEST)
      deliver(frame, charge);
    else
      complete(frame);
    // Counted once handed over: a count seen means the letter is there.
    info_->messages_in.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  static bool decode(std::string_view bytes, std::string* bulk,
                     std::size_t bulk_at, inbound_frame& out) {
    out.bulk = bulk;
    if (bulk == nullptr)
      return decode_frame(bytes, out.env, out.full, out.payload);
    if (!decode_split_frame(bytes, bulk_at, bulk->size(), out.full, out.split))
      return false;
    out.env = head_of(out.full);
    return true;
  }

  /// Parses a frame's payload into `msg` (once per frame: a bulk moves into
  /// the message).
  bool parse(const inbound_frame& frame, google::protobuf::Message& msg) {
    auto limit = owner_.config().recursion_limit;
    return frame.bulk != nullptr
             ? parse_split_payload(frame.split, *frame.bulk, msg, limit)
             : parse_payload(frame.payload, msg, limit);
  }

  /// A message to parse a frame's payload into; with a bulk, one that hands
  /// the bulk's storage back once deleted.
  std::shared_ptr<google::protobuf::Message>
  new_payload(const inbound_frame& frame,
              const google::protobuf::Message& prototype) {
    if (frame.bulk != nullptr)
      return new_bulk_owner(prototype, frame.split.field, bulks_);
    return std::shared_ptr<google::protobuf::Message>{prototype.New()};
  }

  /// The binding standing for `actor` of the peer node, or none for a plain
  /// thread there.
  std::shared_ptr<name_slot> sender_slot(std::string_view actor) {
    if (actor.empty())
      return nullptr;
    std::lock_guard guard{sender_mu_};
    if (last_sender_ == nullptr || actor != last_sender_name_) {
      last_sender_ = owner_.remote_sender(actor, peer_);
      last_sender_name_.assign(actor);
    }
    return last_sender_;
  }

  /// A post or request for an actor here; `charge` holds the frame's bytes
  /// until the actor has handled it.
  void deliver(const inbound_frame& frame, backlog_charge& charge);

  /// The bytes a payload parsed from `wire` bytes holds, for the inbound
  /// budget: `wire` for a flat type (flat_type()) without unknown fields,
  /// which holds at most that plus message_overhead; otherwise what
  /// Protobuf counts (SpaceUsedLong: ~65 ns for a small message, so only
  /// for payloads that may hold much more than their wire bytes).
  std::size_t held_size(const google::protobuf::Message& prototype,
                        const google::protobuf::Message& payload,
                        std::size_t wire) {
    if (&prototype != flat_prototype_.load(std::memory_order_relaxed)) {
      if (!flat_type(*prototype.GetDescriptor()))
        return payload.SpaceUsedLong();
      flat_prototype_.store(&prototype, std::memory_order_relaxed);
    }
    return unknown_fields_peek::present(payload) ? payload.SpaceUsedLong()
                                                 : wire;
  }

  /// An answer to a request sent over the link.
  void complete(const inbound_frame& frame);

  // -- writing -------------------------------------------------------------------

  /// See request_direct().
  bool request_here(letter& msg, caf::strong_actor_ptr requester,
                    caf::message_id id);

  /// Writes the answer to request `id` of the peer: at once from this
  /// thread, or, while the proxy holds letters back or the link is full,
  /// through the proxy, behind them.
  void answer(std::uint64_t id, reply_msg reply);

  /// The frame of an answer.
  frame answer_frame(std::uint64_t id, const reply_msg& reply) const;

  // -- requests waiting for an answer --------------------------------------------

  void expect(std::uint64_t id, pending_request request) {
    std::lock_guard guard{pending_mu_};
    pending_.emplace(id, std::move(request));
  }

  std::optional<pending_request> take(std::uint64_t id) {
    std::lock_guard guard{pending_mu_};
    auto i = pending_.find(id);
    if (i == pending_.end())
      return std::nullopt;
    auto request = std::move(i->second);
    pending_.erase(i);
    return request;
  }

  /// Takes the requests whose deadline has passed.
  std::vector<pending_request> take_expired() {
    return take_if([now = deadline::clock::now()](const pending_request& r) {
      return r.until.expired(now);
    });
  }

  /// Takes every request (the link is gone).
  std::vector<pending_request> take_all() {
    return take_if([](const pending_request&) { return true; });
  }

private:
  template <class Predicate>
  std::vector<pending_request> take_if(Predicate pred) {
    std::vector<pending_request> out;
    std::lock_guard guard{pending_mu_};
    for (auto i = pending_.begin(); i != pending_.end();) {
      if (pred(i->second)) {
        out.push_back(std::move(i->second));
        i = pending_.erase(i);
      } else {
        ++i;
      }
    }
    return out;
  }

  node_impl& owner_;
  const std::string node_name_;
  const std::size_t max_frame_;
  const std::size_t budget_;
  std::shared_ptr<link_info> info_;
  caf::actor_addr proxy_; // set by bind() before the link starts
  const std::shared_ptr<backlog> inbound_ = std::make_shared<backlog>();
  const std::shared_ptr<bulk_pool> bulks_ = std::make_shared<bulk_pool>();
  const std::shared_ptr<backlog> answers_ = std::make_shared<backlog>();
  std::atomic<bool> overrun_{false}; // an overrun_msg went to the proxy
  // The last payload type found flat (held_size): most links carry few.
  std::atomic<const google::protobuf::Message*> flat_prototype_{nullptr};
  std::string peer_; // written before open_, read after it
  std::mutex read_mu_; // held while a frame is handled here; see lose()
  std::atomic<bool> open_{false};
  std::atomic<std::size_t> in_proxy_{0};
  std::mutex conn_mu_;
  link* conn_;          // guarded by conn_mu_; owned by the proxy
  bool direct_ = false; // guarded by conn_mu_; see allow_direct()
  std::atomic<bool> dirty_{false};
  std::atomic<std::uint64_t> next_id_{0};
  std::mutex pending_mu_;
  std::unordered_map<std::uint64_t, pending_request> pending_; // pending_mu_
  // The last remote sender seen here: a link carries the letters of few
  // actors, so most frames skip the node's cache (a key built, a lookup).
  std::mutex sender_mu_;
  std::string last_sender_name_;          // guarded by sender_mu_
  std::shared_ptr<name_slot> last_sender_; // guarded by sender_mu_
};

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
  auto target = owner_.resolve_local(env.target);
  if (!target)
    return refuse(target.code(), target.error().message(),
                  target.code() == errc::unavailable
                    ? dead_letter_reason::restarting
                    : dead_letter_reason::no_such_name);
  auto prototype = owner_.prototype(env.type_name);
  if (!prototype)
    return refuse(errc::unimplemented,
                  "'" + std::string{env.target} + "' has no handler for "
                    + std::string{env.type_name},
                  dead_letter_reason::unhandled_type);
  auto payload = new_payload(frame, **prototype);
  const auto wire = frame.bulk == nullptr
                      ? frame.payload.size()
                      : frame.split.before.size() + frame.split.header.size()
                          + frame.bulk->size() + frame.split.after.size();
  if (!parse(frame, *payload))
    return refuse(errc::invalid_argument,
                  "the payload is not a valid " + std::string{env.type_name},
                  dead_letter_reason::malformed);
  // The inbound budget counts what the message holds until it is handled,
  // not its wire bytes (repeated empty elements take 20 times more).
  if (auto held = held_size(**prototype, *payload, wire); held > wire) {
    if (held > budget_) {
      owner_.log(log_level::warning,
                 "refused a " + std::string{env.type_name} + " from node '"
                   + peer_ + "': parsed, it holds " + std::to_string(held)
                   + " bytes, over the link's budget of "
                   + std::to_string(budget_) + " (limits.max_queued)");
      return refuse(errc::resource_exhausted,
                    "the payload holds " + std::to_string(held)
                      + " bytes parsed, over the link's budget of "
                      + std::to_string(budget_),
                    dead_letter_reason::malformed);
    }
    charge.add(held - wire);
  }
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
  if (is_request)
    // The target answers, or the letter dies unanswered and says so.
    msg.reply_to = std::make_shared<link_reply>(shared_from_this(),
                                                env.message_id,
                                                target->slot);
  caf::anon_send(target->handle, std::move(msg));
}

void link_core::complete(const inbound_frame& frame) {
  const auto& env = frame.env;
  auto request = take(env.correlation_id);
  if (!request)
    return; // late: the requester has given up already
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
  if (!encode_frame(env, payload, out, reply.payload)) {
    // A reply missing required fields: say so instead of a broken reply.
    env.type_name = {};
    env.kind = v1::KIND_ERROR;
    env.has_error = true;
    env.error_code = static_cast<std::uint32_t>(errc::internal);
    env.error_message = "the reply cannot be serialized "
                        "(missing required fields?)";
    encode_frame(env, nullptr, out);
  }
  return out;
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
      if (conn_->write(std::move(out)))
        dirty_.store(true, std::memory_order_release);
      return; // a write that fails here closes the link
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
                 answer_msg{std::make_shared<frame>(std::move(out)),
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
  expect(message_id, pending_request{std::move(requester), id,
                                     msg.target->name, msg.expires});
  if (!conn_->write(std::move(out))) {
    take(message_id);
    return false; // the proxy tries, and learns why
  }
  dirty_.store(true, std::memory_order_release);
  info_->messages_out.fetch_add(1, std::memory_order_relaxed);
  msg.consume();
  return true;
}

namespace {

/// Hands what the transport reads (on its threads) to the actors, through
/// the proxy when it must, counting the bytes into the link's inbound
/// backlog: the letters made from them hold them until local actors have
/// handled them. Over `limit`, the transport is told to stop reading
/// (wants_more()).
class bridge final : public link_events {
public:
  /// What a frame of `size` bytes is charged when it arrives.
  static std::size_t charged(std::size_t size) noexcept {
    return size + message_overhead;
  }

  bridge(std::shared_ptr<link_core> core, std::size_t limit)
    : core_(std::move(core)), inbound_(core_->inbound()), limit_(limit) {
  }

  void on_frame(std::string frame) override {
    inbound_->bytes.fetch_add(charged(frame.size()), std::memory_order_relaxed);
    if (core_->read_here(frame, nullptr, 0, charged(frame.size()))) {
      // Only large strings are worth reading into again (link::recycle);
      // small ones skip the link's lock, which answer writers take too.
      if (frame.capacity() >= bulk_threshold)
        core_->recycle(std::move(frame));
      return;
    }
    forward(frame_msg{std::move(frame), {}, 0});
  }

  bool on_frame_here(std::string_view frame) override {
    inbound_->bytes.fetch_add(charged(frame.size()), std::memory_order_relaxed);
    if (core_->read_here(frame, nullptr, 0, charged(frame.size())))
      return true;
    // on_frame() follows, and counts it again.
    inbound_->bytes.fetch_sub(charged(frame.size()), std::memory_order_relaxed);
    return false;
  }

  frame_range split(std::string_view head, std::size_t size) override {
    auto bulk = find_bulk(head, size);
    return {bulk.begin, bulk.size};
  }

  std::string take_buffer() override {
    return core_->bulks()->take();
  }

  void on_split_frame(split_frame frame) override {
    auto size = charged(frame.size());
    inbound_->bytes.fetch_add(size, std::memory_order_relaxed);
    if (core_->read_here(frame.rest, &frame.bulk, frame.bulk_at, size)) {
      core_->bulks()->give(std::move(frame.bulk)); // unless a payload took it
      return;
    }
    forward(frame_msg{std::move(frame.rest), std::move(frame.bulk),
                      frame.bulk_at});
  }

  void on_frames(std::vector<std::string>& frames) override {
    std::size_t bytes = 0;
    for (auto& frame : frames)
      bytes += charged(frame.size());
    inbound_->bytes.fetch_add(bytes, std::memory_order_relaxed);
    std::size_t done = 0;
    while (done < frames.size()
           && core_->read_here(frames[done], nullptr, 0,
                               charged(frames[done].size())))
      ++done;
    if (done == frames.size())
      return;
    frames.erase(frames.begin(),
                 frames.begin() + static_cast<std::ptrdiff_t>(done));
    forward(frames_msg{std::move(frames)});
  }

  bool wants_more() override {
    if (inbound_->bytes.load(std::memory_order_relaxed) <= limit_)
      return true;
    if (inbound_->paused.exchange(true))
      return true; // paused already: one pause, one resume
    // Caught up in the meantime, unseen by backlog_charge::settle()?
    return inbound_->bytes.load() <= inbound_->resume_at
           && inbound_->paused.exchange(false);
  }

  void on_closed(const error& reason) override {
    if (auto proxy = core_->proxy())
      caf::anon_send(proxy, closed_msg{reason});
  }

  void on_writable() override {
    if (auto proxy = core_->proxy())
      caf::anon_send(proxy, writable_msg{});
  }

private:
  template <class Message>
  void forward(Message msg) {
    auto proxy = core_->proxy();
    if (!proxy)
      return;
    core_->forwarded(); // until the proxy has handled it
    caf::anon_send(proxy, std::move(msg));
  }

  std::shared_ptr<link_core> core_;
  std::shared_ptr<backlog> inbound_;
  std::size_t limit_;
};

class link_proxy : public caf::event_based_actor {
public:
  link_proxy(caf::actor_config& cfg, node_impl& owner,
             std::unique_ptr<link> conn, std::shared_ptr<link_info> info,
             std::shared_ptr<link_core> core,
             std::optional<v1::NodeRecord> peer)
    : caf::event_based_actor(cfg),
      owner_(owner),
      conn_(std::move(conn)),
      info_(std::move(info)),
      outbound_(peer.has_value()),
      half_open_(!outbound_),
      core_(std::move(core)) {
    if (peer)
      peer_ = std::move(*peer);
  }

  caf::behavior make_behavior() override {
    core_->bind(address());
    auto& brought = *core_->inbound();
    brought.resume_at = owner_.config().limits.max_queued / 2;
    brought.resume = [proxy = address()] {
      if (auto alive = caf::actor_cast<caf::actor>(proxy))
        caf::anon_send(alive, resume_reading_msg{});
    };
    // Until the hello, the peer may send a hello-sized frame and no more.
    conn_->limit_frames(hello_frame_limit);
    conn_->start(
      std::make_shared<bridge>(core_, owner_.config().limits.max_queued));
    if (outbound_) {
      v1::Hello hello;
      *hello.mutable_node() = owner_.record();
      hello.mutable_node()->clear_type_files(); // in the directory
      hello.set_protocol(protocol_version);
      write_system(hello);
    }
    delayed_send(this, owner_.config().handshake_timeout, tick_msg{});
    return {
      [this](letter& msg) { on_letter(msg); },
      [this](frame_msg& frame) {
        // The charge settles here, unless a letter took it.
        backlog_charge charge{
          core_->inbound(),
          bridge::charged(frame.bytes.size() + frame.bulk.size())};
        if (frame.bulk.empty()) {
          inbound(frame.bytes, nullptr, 0, charge);
          conn_->recycle(std::move(frame.bytes));
        } else {
          inbound(frame.bytes, &frame.bulk, frame.bulk_at, charge);
          // Unless a payload took it:
          core_->bulks()->give(std::move(frame.bulk));
        }
        core_->handled();
      },
      [this](frames_msg& batch) {
        for (auto& frame : batch.frames) {
          backlog_charge charge{core_->inbound(),
                                bridge::charged(frame.size())};
          inbound(frame, nullptr, 0, charge);
        }
        core_->handled();
      },
      [this](answer_msg& msg) { on_answer(msg); },
      [this](overrun_msg& msg) {
        auto why = "node '" + peer_.name() + "' does not read its answers: "
                   + std::to_string(msg.waiting)
                   + " bytes of them wait, and the link's budget is "
                   + std::to_string(core_->budget())
                   + " (limits.max_queued); closing the link";
        owner_.log(log_level::warning, why);
        close_with(error{errc::resource_exhausted, why});
      },
      [this](closed_msg& closed) {
        if (closed.reason.code() == errc::resource_exhausted) // over a limit
          owner_.log(log_level::warning,
                     "closed the link with "
                       + (peer_.name().empty() ? std::string{"a new peer"}
                                               : "node '" + peer_.name() + "'")
                       + ": " + closed.reason.message());
        lost(closed.reason);
      },
      [this](watch_msg& watch) { watch_peer(watch); },
      [this](unwatch_msg& unwatch) { unwatch_peer(unwatch); },
      [this](local_down_msg& down) { report_down(down); },
      [this](released_msg& released) {
        v1::NameReleased msg;
        msg.set_name(released.name);
        write_system(msg);
      },
      [this](tick_msg&) { tick(); },
      [this](resume_reading_msg&) { conn_->resume_reading(); },
      [this](uncork_msg&) {
        corked_ = false;
        conn_->flush();
      },
      [this](writable_msg&) {
        congested_ = false;
        advance();
      },
      // Queued behind every letter sent before the node began to stop. A
      // tombstone has nothing left to tell anyone once its node stops.
      [this](drain_msg&) {
        if (gone_)
          return quit();
        if (!hello_done_ && !held_.empty()) {
          drain_after_hello_ = true; // what waits for the hello goes first
          return;
        }
        close_with(error{errc::unavailable, "the node is shutting down"},
                   false);
      },
      [this](flush_msg&) {
        auto promise = make_response_promise();
        if (!hello_done_ && !gone_) // letters wait for the hello: after them
          early_flushes_.push_back(std::move(promise));
        else
          flush(std::move(promise));
      },
    };
  }

  void on_exit() override {
    end_half_open();
    // Whatever is still pending will never be answered.
    core_->lose();
    core_->allow_direct(false);
    fail_pending(error{errc::unavailable,
                       "the link to node '" + peer_.name() + "' closed"});
    release_side_links();
    conn_->close();
    core_->detach(); // the link dies with this proxy
  }

private:
  // -- choosing the link --------------------------------------------------------
  //
  // Letters with a tier of their own (post_options::tier) go over a side link
  // on that tier, which this proxy opens and alone writes to. Moving from one
  // link to another keeps the order per (sender, receiver): the proxy holds
  // letters back until the peer confirms, with a barrier on the link written
  // so far, that it has handed everything sent before to its actors.
  //
  // Letters also wait while the link's outbound queue is over half full
  // (congested_), until the link says it has room: a burst of posts is
  // held back, in order, instead of refused.

  using promise_slot = std::optional<caf::response_promise>;

  struct held_letter {
    letter msg;
    promise_slot promise;
    std::size_t bytes = 0; // of the payload, counted against max_held_bytes
    /// Set for an answer to the peer (link_core::answer) instead of a
    /// letter: it goes on our own link, which its request came by.
    std::shared_ptr<answer_msg> answer = {};
  };

  /// The link a letter goes by: empty for this proxy's own.
  std::string tier_for(const letter& msg) const {
    if (msg.tier.empty() || msg.tier == info_->tier
        || unreachable_tiers_.count(msg.tier) > 0)
      return {};
    return msg.tier;
  }

  void on_letter(letter& msg) {
    if (held_.empty() && !switching_ && hello_done_) {
      auto tier = tier_for(msg);
      if (tier == writer_) {
        if (!tier.empty()) {
          forward(msg, promise_for(msg), tier);
          return;
        }
        if (own_link_writable()) {
          outbound(msg, std::nullopt);
          return;
        }
      }
    }
    auto bytes = msg.payload ? msg.payload->ByteSizeLong() : 0;
    if (held_.size() >= max_held_letters
        || held_bytes_ + bytes > max_held_bytes) {
      refuse(msg, std::nullopt,
             error{errc::resource_exhausted,
                   "too many messages wait for the route to node '"
                     + peer_.name() + "' ("
                     + (switching_ ? "it changes tier" : "its link is full")
                     + ")"});
      return;
    }
    auto promise = promise_for(msg);
    held_bytes_ += bytes;
    held_.push_back(held_letter{std::move(msg), std::move(promise), bytes});
    advance();
  }

  /// An answer that may not skip what the proxy holds: written now if
  /// nothing is held and our link is the one in use and has room, else
  /// held in order with the letters (never refused: its request waits).
  void on_answer(answer_msg& msg) {
    if (held_.empty() && !switching_ && writer_.empty()
        && own_link_writable()) {
      write_answer(msg);
      return;
    }
    // Counted in link_core::answers_waiting() while held.
    held_.push_back(
      held_letter{letter{}, std::nullopt, 0,
                  std::make_shared<answer_msg>(std::move(msg))});
    advance();
  }

  void write_answer(answer_msg& msg) {
    if (conn_->write(std::move(*msg.out)))
      core_->mark_dirty();
    msg.charge->settle(); // a failure closes the link
    msg.owed->settle();
  }

  /// False, and congested_ until the link says otherwise, while our link's
  /// outbound queue is too full to take more (a link that has closed takes
  /// letters: outbound() reports them).
  bool own_link_writable() {
    if (congested_)
      return false;
    if (gone_ || conn_->writable())
      return true;
    congested_ = true;
    return false;
  }

  promise_slot promise_for(const letter& msg) {
    if (msg.kind == letter_kind::request)
      return make_response_promise();
    return std::nullopt;
  }

  /// Sends held letters until one needs a change of link; none before the
  /// hello is done (the peer takes nothing larger until then).
  void advance() {
    while (!switching_ && !held_.empty() && (hello_done_ || gone_)) {
      auto& front = held_.front();
      auto tier = front.answer ? std::string{} : tier_for(front.msg);
      if (tier != writer_) {
        begin_switch(tier);
        continue; // done at once, or switching_ now holds the rest
      }
      if (tier.empty() && !own_link_writable())
        return; // writable_msg resumes
      auto next = std::move(held_.front());
      held_.pop_front();
      held_bytes_ -= next.bytes;
      if (next.answer)
        write_answer(*next.answer);
      else if (tier.empty())
        outbound(next.msg, std::move(next.promise));
      else
        forward(next.msg, std::move(next.promise), tier);
    }
  }

  /// Starts moving writes to `tier` (empty: our own link).
  void begin_switch(const std::string& tier) {
    if (!tier.empty() && side_.count(tier) == 0) {
      auto side = gone_ ? expected<caf::actor>{errc::unavailable,
                                               "the route is gone"}
                        : owner_.open_side_link(peer_.name(), tier);
      if (!side) {
        owner_.log(log_level::warning,
                   "messages that ask for tier " + tier + " to node '"
                     + peer_.name() + "' take the route's own tier ("
                     + info_->tier + "): " + side.error().message());
        unreachable_tiers_.insert(tier);
        return; // tier_for() now answers "our own link"
      }
      side_.emplace(tier, *side);
    }
    core_->allow_direct(false); // no actor's write slips past the barrier
    if (writer_.empty()) {
      if (!core_->dirty() || gone_) {
        writer_ = tier;
        return;
      }
      switching_ = true;
      next_writer_ = tier;
      awaited_barrier_ = write_barrier();
      return;
    }
    switching_ = true;
    next_writer_ = tier;
    request(side_[writer_], caf::infinite, flush_msg{})
      .then([this](flushed_msg&) { finish_switch(); },
            [this](caf::error&) { finish_switch(); }); // its link died
  }

  void finish_switch() {
    switching_ = false;
    writer_ = std::move(next_writer_);
    next_writer_.clear();
    allow_direct();
    advance();
  }

  /// Lets actors write requests to our link themselves while it is the
  /// link in use (link_core::request_here).
  void allow_direct() {
    core_->allow_direct(hello_done_ && !gone_ && !switching_
                        && writer_.empty());
  }

  /// Answers a flush_msg once the peer has taken what was written so far.
  void flush(caf::response_promise promise) {
    if (gone_ || !core_->dirty())
      promise.deliver(flushed_msg{});
    else
      flushes_.emplace(write_barrier(), std::move(promise));
  }

  std::uint64_t write_barrier() {
    v1::Barrier barrier;
    barrier.set_id(++next_barrier_);
    write_system(barrier);
    core_->mark_dirty(false);
    return barrier.id();
  }

  void forward(letter& msg, promise_slot promise, const std::string& tier) {
    auto& side = side_[tier];
    if (!promise) {
      send(side, std::move(msg));
      return;
    }
    auto target = msg.target->name;
    request(side, caf::infinite, std::move(msg))
      .then(
        [promise = *promise](reply_msg& reply) mutable {
          promise.deliver(std::move(reply));
        },
        [promise = *promise, target](caf::error& err) mutable {
          auto why = from_caf(err, target);
          promise.deliver(reply_msg{nullptr, why.code(), why.message()});
        });
  }

  void release_side_links() {
    for (auto& [tier, side] : side_)
      drain_link(side);
    side_.clear();
  }

  // -- outbound -----------------------------------------------------------------

  void outbound(letter& msg, promise_slot promise) {
    msg.consume();
    const bool is_request = msg.kind == letter_kind::request;
    auto respond = [&]() -> caf::response_promise& {
      if (!promise)
        promise = make_response_promise();
      return *promise;
    };
    if (tombstone_) { // raced with the loss: say what happened
      refuse(msg, std::move(promise), *tombstone_);
      return;
    }
    auto made = envelope_of(msg, owner_.name(), core_->next_id());
    if (!made) {
      owner_.report_dead_letter(dead_letter_reason::expired, msg.target->name,
                                msg.payload, msg.sender.get());
      if (is_request)
        respond().deliver(reply_msg{nullptr, errc::deadline_exceeded,
                                    "the deadline passed before sending to '"
                                      + msg.target->name + "'"});
      return;
    }
    const auto& env = *made;
    frame out;
    if (!encode_frame(env, msg.payload.get(), out, msg.payload)) {
      refuse(msg, std::move(promise),
             error{errc::invalid_argument,
                   "cannot serialize " + std::string{env.type_name}
                     + " (missing required fields?)"});
      return;
    }
    if (is_request) { // before writing: the answer may come at once
      auto& requester = respond();
      core_->expect(env.message_id,
                    pending_request{requester.source(), requester.id(),
                                    msg.target->name, msg.expires});
    }
    if (auto written = write_letter(std::move(out)); !written) {
      // A request on a link that just closed waits: why (a refusal, say) is
      // still queued in our mailbox, and lost() answers it with that.
      const bool lost_answers = is_request && !gone_
                                && written.code() == errc::unavailable;
      if (!is_request || (!lost_answers && core_->take(env.message_id)))
        refuse(msg, std::move(promise), written.error());
      return;
    }
    core_->mark_dirty();
    msg.charge.settle(); // in the link's queue now, bounded by it
    info_->messages_out.fetch_add(1, std::memory_order_relaxed);
  }

  /// Writes a letter's frame. While more messages wait in the mailbox, the
  /// link holds frames back and writes them together (one system call for
  /// a burst of posts), flushed at the latest by an uncork_msg queued behind
  /// them; an idle proxy writes at once.
  expected<void> write_letter(frame out) {
    if (mailbox().empty())
      return conn_->write(std::move(out));
    if (!corked_) {
      corked_ = true;
      send(this, uncork_msg{});
    }
    return conn_->write_more(std::move(out));
  }

  /// Reports a letter that cannot be sent; a request learns why.
  void refuse(letter& msg, promise_slot promise, const error& why) {
    msg.consume();
    owner_.report_dead_letter(dead_letter_reason::unreachable,
                              msg.target->name, msg.payload, msg.sender.get());
    if (msg.kind != letter_kind::request)
      return;
    if (!promise)
      promise = make_response_promise();
    promise->deliver(reply_msg{nullptr, why.code(), why.message()});
  }

  template <class Message>
  void write_system(const Message& msg) {
    v1::Envelope env;
    env.set_kind(v1::KIND_SYSTEM);
    env.mutable_sender()->set_node(owner_.name());
    env.set_type_name(msg.GetDescriptor()->full_name());
    frame out;
    if (encode_frame(env, &msg, out))
      (void)conn_->write(std::move(out)); // a failure closes the link
  }

  // -- inbound ------------------------------------------------------------------
  //
  // Frames the bridge could not hand over where they were read; `charge`
  // holds the frame's bytes.

  void inbound(const std::string& bytes, std::string* bulk,
               std::size_t bulk_at, backlog_charge& charge) {
    if (gone_)
      return;
    inbound_frame frame;
    if (!link_core::decode(bytes, bulk, bulk_at, frame))
      return protocol_error("a frame that is not an envelope");
    dispatch(frame, charge);
  }

  void dispatch(const inbound_frame& frame, backlog_charge& charge) {
    const auto& env = frame.env;
    if (!hello_done_)
      return handshake(frame);
    switch (env.kind) {
      case v1::KIND_POST:
      case v1::KIND_REQUEST:
        core_->deliver(frame, charge);
        break;
      case v1::KIND_REPLY:
      case v1::KIND_ERROR:
        core_->complete(frame);
        break;
      case v1::KIND_SYSTEM:
        system(frame);
        break;
      default:
        return protocol_error("an envelope of kind "
                              + std::to_string(env.kind));
    }
    info_->messages_in.fetch_add(1, std::memory_order_relaxed);
  }

  void handshake(const inbound_frame& frame) {
    const auto& env = frame.env;
    if (env.kind != v1::KIND_SYSTEM)
      return protocol_error("a message before the handshake");
    if (outbound_) {
      v1::HelloAck ack;
      if (env.type_name != ack.GetDescriptor()->full_name()
          || !core_->parse(frame, ack))
        return protocol_error("a handshake answer that is not a HelloAck");
      if (ack.has_refused()) {
        owner_.log(log_level::warning,
                   "node '" + peer_.name() + "' refused our link: "
                     + ack.refused().message());
        return close_with(error{static_cast<errc>(ack.refused().code()),
                                "node '" + peer_.name()
                                  + "' refused the link: "
                                  + ack.refused().message()});
      }
      conn_->limit_frames(owner_.config().limits.max_frame);
      hello_done_ = true;
      core_->open(peer_.name());
      allow_direct();
      advance(); // what waited for the hello
      for (auto& promise : std::exchange(early_flushes_, {}))
        flush(std::move(promise));
      if (drain_after_hello_)
        close_with(error{errc::unavailable, "the node is shutting down"},
                   false);
      return;
    }
    v1::Hello hello;
    if (env.type_name != hello.GetDescriptor()->full_name()
        || !core_->parse(frame, hello))
      return protocol_error("a first message that is not a Hello");
    const auto& claimed = hello.node();
    std::string refusal;
    if (hello.protocol() != protocol_version)
      refusal = "protocol " + std::to_string(hello.protocol())
                + " is not spoken here";
    else if (!valid_name(claimed.name()))
      refusal = "a malformed node name";
    else if (auto vouched
             = owner_.peers().auth().vouches_for(conn_->peer(), claimed);
             !vouched)
      refusal = vouched.error().message();
    if (refusal.empty()) {
      peer_ = claimed;
      info_->peer = peer_.name();
      owner_.adopt_link(peer_.name(), caf::actor_cast<caf::actor>(this), info_);
    }
    v1::HelloAck ack;
    *ack.mutable_node() = owner_.record();
    ack.mutable_node()->clear_type_files(); // in the directory
    end_half_open();
    if (!refusal.empty()) {
      ack.mutable_refused()->set_code(
        static_cast<std::uint32_t>(errc::permission_denied));
      ack.mutable_refused()->set_message(refusal);
      write_system(ack);
      owner_.log(log_level::warning, "refused a link: " + refusal);
      return close_with(error{errc::permission_denied, refusal});
    }
    // Raised before the peer can read the ack and send more.
    conn_->limit_frames(owner_.config().limits.max_frame);
    write_system(ack);
    hello_done_ = true;
    core_->open(peer_.name());
    allow_direct();
  }

  void system(const inbound_frame& frame) {
    auto type = frame.env.type_name;
    auto parse_payload = [&](google::protobuf::Message& msg) {
      return core_->parse(frame, msg);
    };
    if (type == v1::Monitor::descriptor()->full_name()) {
      v1::Monitor watch;
      if (!parse_payload(watch))
        return protocol_error("a malformed Monitor");
      auto id = watch.watch_id();
      if (served_.size() >= max_served_watches)
        return protocol_error("more than "
                              + std::to_string(max_served_watches)
                              + " monitors");
      auto watched = owner_.monitor(
        watch.name(),
        [proxy = address(), id](const down_notice& notice) {
          if (auto self = caf::actor_cast<caf::actor>(proxy))
            caf::anon_send(self, local_down_msg{id, notice});
        },
        address());
      if (!watched) {
        local_down_msg gone{id, down_notice{watch.name(), down_reason::stopped,
                                            watched.error().message(), false}};
        report_down(gone);
      } else {
        served_[id] = std::move(*watched);
      }
    } else if (type == v1::Demonitor::descriptor()->full_name()) {
      v1::Demonitor unwatch;
      if (!parse_payload(unwatch))
        return protocol_error("a malformed Demonitor");
      if (auto i = served_.find(unwatch.watch_id()); i != served_.end()) {
        owner_.demonitor(i->second);
        served_.erase(i);
      }
    } else if (type == v1::DownNotice::descriptor()->full_name()) {
      v1::DownNotice down;
      if (!parse_payload(down))
        return protocol_error("a malformed DownNotice");
      auto i = watches_.find(down.watch_id());
      if (i == watches_.end())
        return;
      auto fn = std::move(i->second.fn);
      auto cancelled = i->second.token->cancelled.load();
      watches_.erase(i);
      if (cancelled)
        return;
      auto reason = down.reason() <= static_cast<std::uint32_t>(
                                       down_reason::unreachable)
                      ? static_cast<down_reason>(down.reason())
                      : down_reason::failed;
      fn(down_notice{down.name(), reason, down.detail(), down.restarting()});
    } else if (type == v1::Barrier::descriptor()->full_name()) {
      // Everything the link carried before it is with our actors now.
      v1::Barrier barrier;
      if (!parse_payload(barrier))
        return protocol_error("a malformed Barrier");
      v1::BarrierAck ack;
      ack.set_id(barrier.id());
      write_system(ack);
    } else if (type == v1::BarrierAck::descriptor()->full_name()) {
      v1::BarrierAck ack;
      if (!parse_payload(ack))
        return protocol_error("a malformed BarrierAck");
      if (switching_ && writer_.empty() && ack.id() == awaited_barrier_)
        finish_switch();
      else if (auto i = flushes_.find(ack.id()); i != flushes_.end()) {
        i->second.deliver(flushed_msg{});
        flushes_.erase(i);
      }
    } else if (type == v1::NameReleased::descriptor()->full_name()) {
      v1::NameReleased released;
      if (parse_payload(released))
        owner_.forget_remote_name(released.name(), peer_.name());
    }
    // Unknown system messages come from newer peers: ignore them.
  }

  // -- monitors across the link ------------------------------------------------

  void watch_peer(watch_msg& watch) {
    if (tombstone_) {
      if (!watch.token->cancelled.load())
        watch.fn(down_notice{watch.name, down_reason::node_down,
                             tombstone_->message(), false});
      return;
    }
    auto id = ++next_watch_;
    watches_.emplace(id, remote_watch{watch.name, std::move(watch.fn),
                                      std::move(watch.token)});
    v1::Monitor msg;
    msg.set_name(watch.name);
    msg.set_watch_id(id);
    write_system(msg);
  }

  /// A watch cancelled by demonitor: forgotten here, and over there.
  void unwatch_peer(const unwatch_msg& unwatch) {
    auto i = std::find_if(watches_.begin(), watches_.end(),
                          [&](const auto& w) {
                            return w.second.token == unwatch.token;
                          });
    if (i == watches_.end())
      return;
    v1::Demonitor msg;
    msg.set_watch_id(i->first);
    watches_.erase(i);
    if (!gone_)
      write_system(msg);
  }

  void report_down(const local_down_msg& down) {
    served_.erase(down.watch_id);
    v1::DownNotice msg;
    msg.set_name(down.notice.name);
    msg.set_watch_id(down.watch_id);
    msg.set_reason(static_cast<std::uint32_t>(down.notice.reason));
    msg.set_detail(down.notice.detail);
    msg.set_restarting(down.notice.restarting);
    write_system(msg);
  }

  // -- failure ------------------------------------------------------------------

  void tick() {
    if (tombstone_) {
      quit();
      return;
    }
    if (!hello_done_)
      return close_with(error{errc::deadline_exceeded,
                              "the peer did not finish the handshake in time"});
    // Answer requests whose deadline passed: the requester has given up
    // already (its own timer said deadline_exceeded); this ends its CAF
    // request, which waits without a timeout of its own.
    for (auto& request : core_->take_expired())
      request.answer(reply_msg{nullptr, errc::deadline_exceeded,
                               "no reply from " + quoted(request.target)
                                 + " before the deadline"});
    delayed_send(this, std::chrono::seconds{1}, tick_msg{});
  }

  void protocol_error(const std::string& what) {
    owner_.log(log_level::warning, "closing the link with "
                                     + (peer_.name().empty()
                                          ? std::string{"a new peer"}
                                          : "node '" + peer_.name() + "'")
                                     + ": it sent " + what);
    close_with(error{errc::invalid_argument, "protocol error: " + what});
  }

  void close_with(const error& why, bool linger = true) {
    conn_->close();
    lost(why, linger);
  }

  /// The link is gone: answer everything that waits, and (with `linger`)
  /// stay a second as a tombstone so that letters already on their way
  /// here learn the reason instead of bouncing.
  void lost(const error& why, bool linger = true) {
    if (gone_)
      return;
    gone_ = true;
    end_half_open();
    core_->lose();
    allow_direct();
    auto text = peer_.name().empty()
                  ? why.message()
                  : "node '" + peer_.name() + "' is unreachable ("
                      + why.message() + ")";
    // A refusal stays a refusal; every other loss is "unreachable".
    auto code = why.code() == errc::permission_denied ? errc::permission_denied
                                                       : errc::unavailable;
    // Unrouted first: whoever learns of the loss below and sends again
    // finds the node gone, not this proxy.
    if (!peer_.name().empty())
      owner_.drop_link(peer_.name(), caf::actor_cast<caf::actor>(this));
    fail_pending(error{code, why.code() == errc::permission_denied
                               ? why.message()
                               : text});
    for (auto& [id, watch] : watches_)
      if (!watch.token->cancelled.load())
        watch.fn(down_notice{watch.name, down_reason::node_down, text, false});
    watches_.clear();
    info_->open.store(false);
    // No barrier will come back over a dead link: nothing more to wait for.
    for (auto& [id, flush] : flushes_)
      flush.deliver(flushed_msg{});
    flushes_.clear();
    for (auto& flush : early_flushes_)
      flush.deliver(flushed_msg{});
    early_flushes_.clear();
    tombstone_ = error{code, why.code() == errc::permission_denied
                               ? why.message()
                               : text};
    // Held letters go their way now (outbound() refuses them with the
    // tombstone's reason): no room will be announced by a dead link.
    congested_ = false;
    if (switching_ && writer_.empty())
      finish_switch();
    else if (!switching_)
      advance();
    release_side_links(); // after the held letters went their way
    if (linger)
      delayed_send(this, std::chrono::seconds{1}, tick_msg{});
    else
      quit();
  }

  /// An accepted link said hello, or is gone before it did
  /// (node_impl::accept counts them); once.
  void end_half_open() {
    if (std::exchange(half_open_, false))
      owner_.end_half_open();
  }

  void fail_pending(const error& why) {
    for (auto& request : core_->take_all())
      request.answer(reply_msg{nullptr, why.code(), why.message()});
  }

  struct remote_watch {
    std::string name;
    std::function<void(const down_notice&)> fn;
    std::shared_ptr<monitor_token> token;
  };

  node_impl& owner_;
  std::unique_ptr<link> conn_;
  std::shared_ptr<link_info> info_;
  const bool outbound_;
  bool half_open_; // accepted, no hello yet: see end_half_open()
  v1::NodeRecord peer_;
  bool hello_done_ = false;
  bool drain_after_hello_ = false; // see drain_msg
  bool gone_ = false;
  std::optional<error> tombstone_;
  std::uint64_t next_watch_ = 0;
  std::unordered_map<std::uint64_t, remote_watch> watches_;
  /// The peer's monitors of actors here, by its watch id (for Demonitor).
  std::unordered_map<std::uint64_t, monitor_handle> served_;
  std::shared_ptr<link_core> core_;

  // Link choice (see "choosing the link").
  std::map<std::string, caf::actor> side_;   // side links by tier
  std::set<std::string> unreachable_tiers_;  // side links that failed
  std::string writer_;      // the link written last: empty is our own
  std::string next_writer_; // while switching_
  bool switching_ = false;
  std::uint64_t next_barrier_ = 0;
  std::uint64_t awaited_barrier_ = 0;
  std::deque<held_letter> held_;
  std::size_t held_bytes_ = 0;
  bool congested_ = false; // our link's queue is full: see own_link_writable
  bool corked_ = false;    // an uncork_msg is on its way: see write_letter
  std::unordered_map<std::uint64_t, caf::response_promise> flushes_;
  std::vector<caf::response_promise> early_flushes_; // before the hello
};

} // namespace

caf::actor spawn_link_proxy(node_impl& owner, std::unique_ptr<link> conn,
                            std::shared_ptr<link_info> info,
                            std::optional<v1::NodeRecord> peer) {
  auto core = std::make_shared<link_core>(owner, *conn, info);
  info->core = core;
  return owner.system().spawn<link_proxy>(owner, std::move(conn),
                                          std::move(info), std::move(core),
                                          std::move(peer));
}

bool request_direct(link_info& info, letter& msg,
                    caf::strong_actor_ptr requester, caf::message_id id) {
  auto core = info.core.lock();
  return core && core->request_here(msg, std::move(requester), id);
}

void watch_remote(const caf::actor& proxy, std::string name,
                  std::function<void(const down_notice&)> fn,
                  std::shared_ptr<monitor_token> token) {
  caf::anon_send(proxy,
                 watch_msg{std::move(name), std::move(fn), std::move(token)});
}

void unwatch_remote(const caf::actor& proxy,
                    std::shared_ptr<monitor_token> token) {
  caf::anon_send(proxy, unwatch_msg{std::move(token)});
}

void drain_link(const caf::actor& proxy) {
  caf::anon_send(proxy, drain_msg{});
}

void announce_release(const caf::actor& proxy, std::string name) {
  caf::anon_send(proxy, released_msg{std::move(name)});
}

} // namespace courier::detail

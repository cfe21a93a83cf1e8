#pragma once

// link_core: what a link's proxy shares with the threads that read its
// link and with the actors that write to it or answer over it.
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


#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_cast.hpp>
#include <caf/message_id.hpp>

#include <google/protobuf/descriptor.h>

#include "frame.hpp"
#include "link_host.hpp"
#include "remote.hpp"

namespace courier::detail {

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
inline bool flat_type(const google::protobuf::Descriptor& type) {
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
  /// When it was written, for the link's request_rtt; the epoch when
  /// metrics are off.
  metrics_clock::time_point sent{};

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
                                         std::uint64_t id);

/// What a link's proxy shares with the threads that read its link and the
/// actors that write to it or answer over it (see above).
class link_core : public std::enable_shared_from_this<link_core> {
public:
  link_core(link_host& owner, link& conn, std::shared_ptr<link_info> info,
            std::shared_ptr<const link_access> access)
    : owner_(owner),
      node_name_(owner.name()),
      max_frame_(owner.config().limits.max_frame),
      budget_(owner.config().limits.max_queued),
      timed_(owner.config().metrics),
      info_(std::move(info)),
      access_(std::move(access)),
      conn_(&conn) {
  }

  /// What the link's peer may do here (access.hpp).
  const link_access& access() const noexcept {
    return *access_;
  }

  /// Whether the peer may use `verb` on `target`; if not, the refusal is
  /// counted and logged (link_host::report_refusal). Cheap for the node's
  /// own user: one flag.
  bool authorized(std::string_view target, verbs verb,
                  const trace_context& trace = {}) {
    if (access_->unrestricted() || access_->allows(target, verb))
      return true;
    owner_.report_refusal(*access_, peer_, verb, target, trace);
    return false;
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

  /// When a request written now was sent, for request_rtt; the epoch when
  /// it is not timed (metrics off, or not in the sample).
  metrics_clock::time_point send_time() const noexcept {
    return timed_ && sample_request() ? metrics_clock::now()
                                      : metrics_clock::time_point{};
  }

  /// Counts a letter or an answer read from the link.
  void count_in(std::size_t bytes) noexcept {
    info_->messages_in.fetch_add(1, std::memory_order_relaxed);
    info_->bytes_in.fetch_add(bytes, std::memory_order_relaxed);
  }

  /// Counts a letter written to the link.
  void count_out(std::size_t bytes) noexcept {
    info_->messages_out.fetch_add(1, std::memory_order_relaxed);
    info_->bytes_out.fetch_add(bytes, std::memory_order_relaxed);
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
    auto wire = bytes.size() + (bulk ? bulk->size() : 0);
    if (kind == v1::KIND_POST || kind == v1::KIND_REQUEST) {
      deliver(frame, charge);
      // Counted once handed over: a count seen means the letter is there.
      count_in(wire);
    } else {
      // Counted before the requester wakes: one who sees its answer sees
      // it counted.
      count_in(wire);
      complete(frame);
    }
    return true;
  }

  static expected<void> decode(std::string_view bytes, std::string* bulk,
                               std::size_t bulk_at, inbound_frame& out) {
    out.bulk = bulk;
    if (bulk == nullptr)
      return decode_frame(bytes, out.env, out.full, out.payload);
    auto decoded = decode_split_frame(bytes, bulk_at, bulk->size(), out.full,
                                      out.split);
    if (decoded)
      out.env = head_of(out.full);
    return decoded;
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

  /// A durable transfer for a name here, authorized: to the node's durable
  /// plug-in, which answers once its items are stored.
  void accept_durable(const inbound_frame& frame, backlog_charge& charge);

  /// Charges `charge` with what `payload` (parsed from `frame`) holds
  /// beyond its wire bytes; over the link's budget, says why (logged as a
  /// peer fault) and charges nothing.
  std::optional<std::string> charge_parsed(
    const inbound_frame& frame, const google::protobuf::Message& prototype,
    const google::protobuf::Message& payload, backlog_charge& charge);

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

  /// Writes the answer to request `id` to `conn`. One the link refuses
  /// while it stays open becomes an error answer saying why; false if
  /// nothing was written.
  bool write_answer(link& conn, std::uint64_t id, frame out) const;

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

  link_host& owner_;
  const std::string node_name_;
  const std::size_t max_frame_;
  const std::size_t budget_;
  const bool timed_; // node_config::metrics: requests are timed
  std::shared_ptr<link_info> info_;
  const std::shared_ptr<const link_access> access_;
  caf::actor_addr proxy_; // set by bind() before the link starts
  const std::shared_ptr<backlog> inbound_ = std::make_shared<backlog>();
  const std::shared_ptr<bulk_pool> bulks_ = owner_.bulks();
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

} // namespace courier::detail

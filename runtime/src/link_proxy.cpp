// The link protocol: one link_proxy actor per link runs the hello, monitors
// and down notices across the link, barriers when writes move to another
// link, name releases, and the letters that cannot skip it (see
// link_core.hpp for those that can). It reaches its node only through
// link_host.
//
// Over 600 lines for a reason: this is one actor's state machine, whose
// parts (choosing the link, outbound, inbound and the handshake, system
// messages, monitors, failure) share its members; each part is a section
// below.

#include "remote.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include <caf/actor_cast.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "directory.hpp"
#include "frame.hpp"
#include "link_bridge.hpp"
#include "link_core.hpp"
#include "link_messages.hpp"

namespace courier::detail {

namespace {

using namespace std::chrono_literals;

/// Monitors a peer may hold on actors of this node through one link; one
/// more closes the link (each costs the node a monitor entry).
constexpr std::size_t max_served_watches = std::size_t{1} << 16;

/// Bumped whenever the link protocol changes incompatibly.
/// Version 2: barriers (Barrier/BarrierAck) for moving a route between links.
/// Version 3: the Hello and HelloAck are at most hello_frame_limit bytes
/// (their records leave out type_files), and the connector writes nothing
/// but its Hello until it has read the HelloAck.
constexpr std::uint32_t protocol_version = 3;

/// Letters a proxy holds back while it moves writes to another link or waits
/// for room in its link's queue; more are refused (resource_exhausted)
/// rather than kept without bound.
constexpr std::size_t max_held_letters = std::size_t{1} << 16;
constexpr std::size_t max_held_bytes = std::size_t{64} << 20;

class link_proxy : public caf::event_based_actor {
public:
  link_proxy(caf::actor_config& cfg, link_host& owner,
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
      [this](names_query_msg& query) { ask_names(query); },
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
    if (core_->write_answer(*conn_, msg.id, std::move(*msg.out)))
      core_->mark_dirty();
    msg.charge->settle();
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
          auto why = from_caf(err, target, true); // the side link died
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
    if (auto encoded = encode_frame(env, msg.payload.get(), out, msg.payload);
        !encoded) {
      refuse(msg, std::move(promise), encoded.error());
      return;
    }
    if (is_request) { // before writing: the answer may come at once
      auto& requester = respond();
      core_->expect(env.message_id,
                    pending_request{requester.source(), requester.id(),
                                    msg.target->name, msg.expires,
                                    core_->send_time()});
    }
    auto bytes = out.size();
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
    core_->count_out(bytes);
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
    if (auto decoded = link_core::decode(bytes, bulk, bulk_at, frame);
        !decoded)
      return protocol_error(decoded.error().message());
    dispatch(frame, charge, bytes.size() + (bulk ? bulk->size() : 0));
  }

  /// Handles a frame of `wire` bytes.
  void dispatch(const inbound_frame& frame, backlog_charge& charge,
                std::size_t wire) {
    const auto& env = frame.env;
    if (!hello_done_)
      return handshake(frame);
    switch (env.kind) {
      case v1::KIND_POST:
      case v1::KIND_REQUEST:
        core_->deliver(frame, charge);
        core_->count_in(wire); // see link_core::read_here
        break;
      case v1::KIND_REPLY:
      case v1::KIND_ERROR:
        core_->count_in(wire);
        core_->complete(frame);
        break;
      case v1::KIND_SYSTEM:
        system(frame); // control traffic: not counted as messages
        break;
      default:
        return protocol_error("an envelope of kind "
                              + std::to_string(env.kind));
    }
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
      if (ack.has_node() && ack.node().name() != peer_.name()) {
        // A stale directory entry, or a seed's address that serves
        // another node now.
        auto why = "dialled node " + quoted(peer_.name()) + ", but node "
                   + quoted(ack.node().name()) + " answered";
        owner_.log(log_level::warning, why);
        return close_with(error{errc::unavailable, why});
      }
      owner_.learned_peer(ack.node());
      conn_->limit_frames(owner_.config().limits.max_frame);
      hello_done_ = true;
      core_->open(peer_.name());
      allow_direct();
      write_early_queries();
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
             = owner_.vouches_for(conn_->peer(), claimed);
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
      owner_.log_peer_fault("refused a link: " + refusal,
                            {{}, peer_.name(), "permission_denied", {}});
      return close_with(error{errc::permission_denied, refusal});
    }
    // Raised before the peer can read the ack and send more.
    conn_->limit_frames(owner_.config().limits.max_frame);
    write_system(ack);
    hello_done_ = true;
    core_->open(peer_.name());
    allow_direct();
    write_early_queries();
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
      if (!core_->authorized(watch.name(), verbs::monitor)) {
        // The watcher's one notice says why.
        local_down_msg refused{
          id, down_notice{watch.name(), down_reason::stopped,
                          "permission_denied: "
                            + core_->access().principal() + " may not "
                            + "monitor " + quoted(watch.name()) + " on node "
                            + quoted(owner_.name()),
                          false}};
        return report_down(refused);
      }
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
    } else if (type == v1::NamesQuery::descriptor()->full_name()) {
      v1::NamesQuery query;
      if (!parse_payload(query))
        return protocol_error("a malformed NamesQuery");
      answer_names(query);
    } else if (type == v1::NamesReport::descriptor()->full_name()) {
      v1::NamesReport report;
      if (!parse_payload(report))
        return protocol_error("a malformed NamesReport");
      auto i = queries_.find(report.query_id());
      if (i == queries_.end())
        return; // late: the asker gave up
      names_msg answer;
      answer.names.assign(report.names().begin(), report.names().end());
      answer.type_files.assign(report.type_files().begin(),
                               report.type_files().end());
      answer.services.assign(report.services().begin(),
                             report.services().end());
      i->second.promise.deliver(std::move(answer));
      queries_.erase(i);
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

  // -- names across the link ----------------------------------------------------
  //
  // Which names a peer holds, as far as its rules let this node find them
  // (docs/security.md): asked by NamesQuery, answered by NamesReport.

  void ask_names(names_query_msg& query) {
    auto promise = make_response_promise();
    if (gone_) {
      auto why = tombstone_ ? *tombstone_
                            : error{errc::unavailable, "the link is gone"};
      promise.deliver(names_msg{{}, why.code(), why.message(), {}, {}});
      return;
    }
    v1::NamesQuery msg;
    msg.set_query_id(++next_query_);
    msg.set_pattern(std::move(query.pattern));
    msg.set_with_types(query.with_types);
    queries_.emplace(msg.query_id(),
                     names_query{std::move(promise), query.until});
    if (hello_done_)
      write_system(msg);
    else
      early_queries_.push_back(std::move(msg)); // the hello goes first
  }

  void write_early_queries() {
    for (auto& query : std::exchange(early_queries_, {}))
      write_system(query);
  }

  /// Answers with the names here that the peer may find: as many as half
  /// a frame holds (a name is at most 255 bytes).
  void answer_names(const v1::NamesQuery& query) {
    v1::NamesReport report;
    report.set_query_id(query.query_id());
    const auto room = owner_.config().limits.max_frame / 2;
    std::size_t bytes = 0;
    for (auto& name :
         owner_.visible_names(query.pattern(), core_->access())) {
      bytes += name.size() + 3; // its tag and length
      if (bytes > room) {
        report.set_truncated(true);
        break;
      }
      report.add_names(std::move(name));
    }
    if (query.with_types()) {
      auto record = owner_.record();
      std::size_t size = 0;
      for (const auto& file : record.type_files())
        size += file.size() + 5; // its tag and length
      if (size <= room) // all of them, or none: a file needs its imports
        for (auto& file : *record.mutable_type_files())
          report.add_type_files(std::move(file));
      else
        report.set_truncated(true);
      // A service is as visible as its actor's name (the listed names
      // are sorted).
      for (auto& served : *record.mutable_services()) {
        bytes += served.ByteSizeLong() + 3;
        if (bytes > room) {
          report.set_truncated(true);
          break;
        }
        if (std::binary_search(report.names().begin(), report.names().end(),
                               served.actor()))
          *report.add_services() = std::move(served);
      }
    }
    write_system(report);
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
    // Names queries a peer left unanswered (an older peer ignores them).
    const auto now = deadline::clock::now();
    for (auto i = queries_.begin(); i != queries_.end();) {
      if (!i->second.until.expired(now)) {
        ++i;
        continue;
      }
      i->second.promise.deliver(names_msg{
        {}, errc::deadline_exceeded, "the peer did not list its names", {}, {}});
      i = queries_.erase(i);
    }
    delayed_send(this, std::chrono::seconds{1}, tick_msg{});
  }

  void protocol_error(const std::string& what) {
    owner_.log_peer_fault("closing the link with "
                            + (peer_.name().empty()
                                 ? std::string{"a new peer"}
                                 : "node '" + peer_.name() + "'")
                            + ": it sent " + what,
                          {{}, peer_.name(), "invalid_argument", {}});
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
    // A peer gone silent, refused or misbehaving is worth a warning; one
    // that closed (it stopped, or we did) is ordinary.
    if (!peer_.name().empty() && why.code() != errc::cancelled) {
      auto code = why.code();
      auto level = code == errc::deadline_exceeded
                       || code == errc::resource_exhausted
                       || code == errc::invalid_argument
                       || code == errc::permission_denied
                     ? log_level::warning
                     : log_level::info;
      owner_.log(level, "lost the link with node " + quoted(peer_.name())
                          + ": " + why.message());
    }
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
    // Silence (heartbeats missed) says the node cannot be reached, not that
    // it is gone; a closed or broken connection says it is gone.
    auto down = why.code() == errc::deadline_exceeded ? down_reason::unreachable
                                                      : down_reason::node_down;
    for (auto& [id, watch] : watches_)
      if (!watch.token->cancelled.load())
        watch.fn(down_notice{watch.name, down, text, false});
    watches_.clear();
    info_->open.store(false);
    // No barrier will come back over a dead link: nothing more to wait for.
    for (auto& [id, flush] : flushes_)
      flush.deliver(flushed_msg{});
    flushes_.clear();
    for (auto& flush : early_flushes_)
      flush.deliver(flushed_msg{});
    early_flushes_.clear();
    for (auto& [id, query] : queries_)
      query.promise.deliver(names_msg{{}, code, text, {}, {}});
    queries_.clear();
    early_queries_.clear();
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
  /// (peers::accept counts them); once.
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

  link_host& owner_;
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

  // Names asked of the peer (see "names across the link").
  struct names_query {
    caf::response_promise promise;
    deadline until;
  };
  std::uint64_t next_query_ = 0;
  std::unordered_map<std::uint64_t, names_query> queries_;
  std::vector<v1::NamesQuery> early_queries_; // before the hello
};

} // namespace

caf::actor spawn_link_proxy(link_host& owner, std::unique_ptr<link> conn,
                            std::shared_ptr<link_info> info,
                            std::optional<v1::NodeRecord> peer,
                            std::shared_ptr<const link_access> access) {
  COURIER_RUNTIME_ASSERT(access != nullptr, "a link needs its access");
  auto core = std::make_shared<link_core>(owner, *conn, info,
                                          std::move(access));
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

expected<std::vector<std::string>>
names_over(caf::actor_system& system, const caf::actor& proxy,
           std::string pattern, deadline until,
           peer_publications* published) {
  expected<std::vector<std::string>> out{errc::deadline_exceeded,
                                         "no answer before the deadline"};
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    until.remaining());
  if (left.count() <= 0)
    return out;
  caf::scoped_actor self{system};
  self
    ->request(proxy, caf::duration{left},
              names_query_msg{std::move(pattern), until, published != nullptr})
    .receive(
      [&](names_msg& answer) {
        if (published != nullptr) {
          published->type_files = std::move(answer.type_files);
          published->services = std::move(answer.services);
        }
        if (answer.code == errc::ok)
          out = std::move(answer.names);
        else
          out = error{answer.code, std::move(answer.text)};
      },
      [&](caf::error& err) {
        out = error{err == caf::sec::request_timeout ? errc::deadline_exceeded
                                                     : errc::unavailable,
                    "the peer did not list its names: "
                      + caf::to_string(err)};
      });
  return out;
}

void drain_link(const caf::actor& proxy) {
  caf::anon_send(proxy, drain_msg{});
}

void announce_release(const caf::actor& proxy, std::string name) {
  caf::anon_send(proxy, released_msg{std::move(name)});
}

} // namespace courier::detail

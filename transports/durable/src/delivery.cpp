// The durable plug-in (delivery.hpp): a node's store, its forwarder and
// dispatcher lanes, and the actor that runs their verbs.
//
// Threads: the pump thread decides which lane moves next and claims its
// messages; the actor "courier.durable.<node>" issues the requests (a
// forward, or a handler call) and continues in their continuations; the
// store's writer thread runs append callbacks; links call accept(). A lane
// (one store queue) has at most one batch in flight, which keeps its order.
//
// Lock order: mu_ alone (the store's locks are never taken while mu_ is
// held, and store callbacks only take mu_).

#include "courier/durable/delivery.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <google/protobuf/empty.pb.h>

#include "courier/context.hpp"
#include "courier/durable_plugin.hpp"
#include "courier/node.hpp"
#include "courier/v1/durable.pb.h"

namespace courier::durable {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;

constexpr std::string_view out_prefix = "out:";
constexpr std::string_view in_prefix = "in:";
// Holds this node's producer epoch (one message: its decimal value).
constexpr std::string_view epoch_queue = "sys:epoch";

/// Names one (sender node, destination) stream in other nodes' stores:
/// FNV-1a over both names, stable across builds and runs. Never 0 (0
/// means "no de-duplication" to the store).
std::uint64_t stream_id(std::string_view node, std::string_view target) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::string_view text) {
    for (unsigned char c : text) {
      h ^= c;
      h *= 0x100000001b3ull;
    }
  };
  mix(node);
  mix(std::string_view{"\0", 1});
  mix(target);
  return h == 0 ? 1 : h;
}

std::int64_t wall_ns() {
  return std::chrono::duration_cast<nanoseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// A trace context as DurableItem::trace keeps it (the envelope's form).
std::string trace_bytes(const trace_context& trace) {
  std::string out;
  out.append(reinterpret_cast<const char*>(trace.trace_id.data()),
             trace.trace_id.size());
  out.append(reinterpret_cast<const char*>(trace.span_id.data()),
             trace.span_id.size());
  out.push_back(static_cast<char>(trace.flags));
  return out;
}

/// The trace context DurableItem::trace holds; nothing for none (or a
/// malformed one).
std::optional<trace_context> trace_of(std::string_view bytes) {
  trace_context out;
  if (bytes.size() != out.trace_id.size() + out.span_id.size() + 1)
    return std::nullopt;
  std::memcpy(out.trace_id.data(), bytes.data(), out.trace_id.size());
  std::memcpy(out.span_id.data(), bytes.data() + out.trace_id.size(),
              out.span_id.size());
  out.flags = static_cast<std::uint8_t>(bytes.back());
  if (!out.valid())
    return std::nullopt;
  return out;
}

bool has_prefix(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

/// What storing a batch of items in an incoming queue came to: the first
/// `stored` are durable (`duplicates` of them were there already); the
/// rest were not taken, for `failure`.
struct store_outcome {
  std::uint32_t stored = 0;
  std::uint32_t duplicates = 0;
  std::optional<error> failure;
};

/// A bounded log: at most `per_second` lines a second, the rest counted
/// and said with the next line that goes out.
class rate_limited_log {
public:
  rate_limited_log(node& host, int per_second)
    : host_(host), per_second_(per_second) {}

  void write(log_level level, const std::string& line) {
    std::uint64_t dropped = 0;
    {
      std::lock_guard guard{mu_};
      auto now = steady::now();
      if (now - window_ >= 1s) {
        window_ = now;
        lines_ = 0;
      }
      if (lines_ >= per_second_) {
        ++suppressed_;
        return;
      }
      ++lines_;
      dropped = std::exchange(suppressed_, 0);
    }
    host_.log(level, dropped == 0
                       ? line
                       : line + " (" + std::to_string(dropped)
                           + " lines like it left out)");
  }

private:
  node& host_;
  int per_second_;
  std::mutex mu_;
  steady::time_point window_{};
  int lines_ = 0;
  std::uint64_t suppressed_ = 0;
};

class mailroom final : public durable_plugin,
                       public std::enable_shared_from_this<mailroom> {
public:
  mailroom(node& host, delivery_options options)
    : host_(host),
      opt_(std::move(options)),
      actor_name_("courier.durable." + host.name()),
      log_(host, 20) {}

  ~mailroom() override {
    stop();
  }

  expected<void> open();

  expected<std::uint64_t> post(std::string_view to, const message& msg,
                               const post_options& options,
                               const trace_context& trace) override;

  void accept(std::string_view target, message transfer,
              std::function<void(expected<message>)> answer) override;

  void stop() noexcept override;

  void add_metrics(metrics_snapshot& snapshot) const override;

private:
  /// One store queue and who moves it: an outgoing queue's forwarder or
  /// an incoming queue's dispatcher.
  struct lane {
    /// A batch is in flight; nobody else claims from this queue.
    bool busy = false;
    /// There may be something to do.
    bool dirty = true;
    steady::time_point not_before{};
    milliseconds backoff{0};
    /// The dispatcher's first claim since open was made durable first.
    bool flushed = false;
    /// The last failure logged for it (logged again only when it changes).
    std::string last_failure;
  };

  /// Work for the actor, and what to do if it never runs.
  struct job {
    std::function<void(context&)> run;
    std::function<void(const error&)> abandon;
  };

  struct job_queue {
    std::mutex mu;
    std::deque<job> jobs;
  };

  /// A message the dispatcher hands to its actor, and the facts the
  /// notices need.
  struct claimed_item {
    std::uint64_t id = 0;
    v1::DurableItem item;
  };

  // -- the pump ---------------------------------------------------------------
  void pump_loop();
  void run_lane(const std::string& lane);
  /// The lane's batch is done: free it, look again after `delay`.
  void settle(const std::string& lane, bool again, milliseconds delay);
  /// The lane failed: its next backoff, and a log line when the reason is
  /// new.
  milliseconds failed(const std::string& lane, const std::string& why);
  void succeeded(const std::string& lane);
  void kick(const std::string& lane);

  // -- forwarding -----------------------------------------------------------
  void forward(const std::string& lane);
  void forwarded(const std::string& lane, const std::vector<claimed_item>& batch,
                 const store_outcome& outcome);

  // -- receiving ------------------------------------------------------------
  void store_items(const std::string& target,
                   std::vector<const v1::DurableItem*> items,
                   std::function<void(store_outcome)> done);
  /// One claim of an incoming queue, handed to the actor one message at
  /// a time, in order.
  struct dispatch_run {
    std::string lane, target;
    std::vector<claimed_item> items;
    std::vector<message> payloads;
    /// Why item i cannot be handed over (empty: it can).
    std::vector<std::string> unreadable;
    /// The next item to hand over (used inside the actor only).
    std::size_t next = 0;
    std::mutex mu;
    std::size_t removals = 0; // submitted, not yet durable (mu)
    bool finished = false;    // (mu)
    milliseconds delay{0};    // (mu)
  };
  void dispatch(const std::string& lane);
  void hand_over(const std::shared_ptr<dispatch_run>& run, context& ctx);
  /// The item at run->next failed (or was never handed over): a failed
  /// attempt, or a release, and the rest go back.
  void stop_run(const std::shared_ptr<dispatch_run>& run, const error& why);
  void finish_run(const std::shared_ptr<dispatch_run>& run,
                  milliseconds delay);
  void removed(const std::shared_ptr<dispatch_run>& run);

  // -- notices, the actor, administration ----------------------------------
  void notify(const v1::DurableItem& item, v1::DurableNotice::Kind kind,
              std::uint64_t id, std::string reason = {},
              std::string detail = {}, std::uint32_t attempts = 0);
  void on_dead_letter(const dead_letter& dead);
  void submit(job work);
  static void run_jobs(job_queue& queue, context& ctx);
  expected<v1::DurableAdminReply>
  administer(const v1::DurableAdminRequest& request);
  bool is_local(const std::string& name) const;

  node& host_;
  delivery_options opt_;
  std::string actor_name_;
  rate_limited_log log_;
  std::unique_ptr<store> store_;
  std::uint32_t epoch_ = 0;
  std::shared_ptr<job_queue> jobs_ = std::make_shared<job_queue>();

  std::mutex seq_mu_;
  std::unordered_map<std::string, std::uint64_t> next_seq_; // per destination

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, lane, std::less<>> lanes_;           // guarded by mu_
  std::deque<std::pair<std::string, v1::DurableNotice>> notices_; // mu_
  bool stopping_ = false;                                    // guarded by mu_
  std::thread pump_;
};

// -- opening and stopping -------------------------------------------------------

expected<void> mailroom::open() {
  auto options = opt_.store;
  if (options.directory.empty())
    return error{errc::invalid_argument,
                 "durable delivery needs a store directory"};
  std::weak_ptr<mailroom> weak = weak_from_this();
  options.on_dead_letter = [weak](const dead_letter& dead) {
    if (auto self = weak.lock())
      self->on_dead_letter(dead);
  };
  auto opened = store::open(std::move(options));
  if (!opened)
    return std::move(opened).error();
  store_ = std::move(*opened);
  // A new epoch for every start: sequences restart at 1 in it, and
  // messages stored under an older epoch keep theirs.
  std::uint32_t last = 0;
  auto old = store_->peek(epoch_queue, 100);
  for (const auto& m : old)
    last = std::max<std::uint32_t>(
      last, static_cast<std::uint32_t>(std::strtoul(m.payload.c_str(),
                                                    nullptr, 10)));
  epoch_ = last + 1;
  auto kept = store_->append_and_wait(epoch_queue, std::to_string(epoch_));
  if (!kept)
    return error{kept.code(), "cannot store the producer epoch: "
                                + kept.error().message()};
  if (auto claimed = store_->claim_uncounted(epoch_queue, 100))
    for (const auto& m : *claimed) {
      if (m.id == kept->id)
        (void)store_->release(m.id);
      else
        (void)store_->complete_and_wait(m.id);
    }
  for (const auto& q : store_->queues())
    if (has_prefix(q.name, out_prefix) || has_prefix(q.name, in_prefix))
      lanes_[q.name];
  auto self = shared_from_this();
  spawn_options supervised;
  supervised.restart = restart_policy{};
  auto spawned = host_.spawn(
    actor_name_,
    [self, jobs = jobs_](context&) {
      return behavior{
        [jobs](const google::protobuf::Empty&, context& ctx) {
          run_jobs(*jobs, ctx);
        },
        [self](const v1::DurableAdminRequest& request, context&) {
          return self->administer(request);
        }};
    },
    supervised);
  if (!spawned)
    return error{spawned.code(), "cannot start " + actor_name_ + ": "
                                   + spawned.error().message()};
  pump_ = std::thread{[this] { pump_loop(); }};
  return {};
}

void mailroom::stop() noexcept {
  {
    std::lock_guard guard{mu_};
    if (stopping_)
      return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (pump_.joinable())
    pump_.join();
  std::deque<job> left;
  {
    std::lock_guard guard{jobs_->mu};
    left.swap(jobs_->jobs);
  }
  for (auto& work : left)
    work.abandon(error{errc::unavailable, "the node stops"});
  if (store_)
    store_->close();
}

// -- the sender ---------------------------------------------------------------

expected<std::uint64_t> mailroom::post(std::string_view to, const message& msg,
                                       const post_options& options,
                                       const trace_context& trace) {
  if (to.empty() || to.size() > 200
      || to.find_first_of("*?") != std::string_view::npos)
    return error{errc::invalid_argument,
                 "'" + std::string{to}
                   + "' is not an actor name a durable post can go to"};
  if (options.priority > max_priority)
    return error{errc::invalid_argument,
                 "priority " + std::to_string(options.priority)
                   + " is out of range 0 to 7"};
  if (options.time_to_reach_queue.count() < 0
      || options.time_to_be_received.count() < 0)
    return error{errc::invalid_argument, "a negative time to live"};
  {
    std::lock_guard guard{mu_};
    if (stopping_)
      return error{errc::unavailable, "the node stops"};
  }
  std::string target{to};
  v1::DurableItem item;
  item.set_producer_id(stream_id(host_.name(), target));
  item.set_producer_epoch(epoch_);
  {
    std::lock_guard guard{seq_mu_};
    item.set_sequence(++next_seq_[target]);
  }
  item.set_priority(options.priority);
  item.set_time_to_be_received_ns(options.time_to_be_received.count());
  item.set_time_to_reach_queue_ns(options.time_to_reach_queue.count());
  item.set_posted_unix_ns(wall_ns());
  item.set_type_name(msg->GetDescriptor()->full_name());
  if (!msg->SerializeToString(item.mutable_payload()))
    return error{errc::invalid_argument,
                 "the " + item.type_name() + " cannot be serialized"};
  item.set_ack_to(options.ack_to);
  item.set_sender_node(host_.name());
  item.set_target(target);
  if (trace.valid())
    item.set_trace(trace_bytes(trace));
  message_options stored;
  stored.priority = options.priority;
  stored.time_to_reach_queue = options.time_to_reach_queue;
  stored.time_to_be_received = options.time_to_be_received;
  auto lane = std::string{out_prefix} + target;
  auto appended = store_->append_and_wait(lane, item.SerializeAsString(),
                                          stored);
  if (!appended)
    return std::move(appended).error();
  kick(lane);
  return appended->id;
}

void mailroom::forward(const std::string& lane) {
  auto target = lane.substr(out_prefix.size());
  std::vector<claimed_item> batch;
  std::size_t bytes = 0;
  while (batch.size() < opt_.forward_batch
         && bytes < opt_.forward_batch_bytes) {
    auto got = store_->claim_uncounted(lane, 1);
    if (!got) {
      for (const auto& c : batch)
        (void)store_->release(c.id);
      return settle(lane, true, failed(lane, got.error().message()));
    }
    if (got->empty())
      break;
    auto& m = got->front();
    claimed_item c;
    c.id = m.id;
    if (!c.item.ParseFromString(m.payload)) {
      // Not ours: a record this code did not write. Kept, said once.
      log_.write(log_level::error, "durable message " + std::to_string(m.id)
                                     + " in " + lane + " is unreadable");
      (void)store_->release(m.id, opt_.retry_max);
      continue;
    }
    c.item.set_message_id(m.id);
    if (auto ttl = c.item.time_to_be_received_ns(); ttl > 0)
      c.item.set_time_to_be_received_ns(
        std::max<std::int64_t>(1, ttl - m.age.count()));
    bytes += m.payload.size();
    batch.push_back(std::move(c));
  }
  if (batch.empty()) {
    succeeded(lane);
    return settle(lane, false, 0ms);
  }
  auto self = shared_from_this();
  if (is_local(target)) {
    std::vector<const v1::DurableItem*> items;
    for (const auto& c : batch)
      items.push_back(&c.item);
    auto kept = std::make_shared<std::vector<claimed_item>>(std::move(batch));
    return store_items(target, std::move(items),
                       [self, lane, kept](store_outcome outcome) {
                         self->forwarded(lane, *kept, outcome);
                       });
  }
  auto transfer = std::make_shared<v1::DurableTransfer>();
  for (const auto& c : batch)
    *transfer->add_items() = c.item;
  auto kept = std::make_shared<std::vector<claimed_item>>(std::move(batch));
  submit(job{
    [self, lane, kept, transfer, target](context& ctx) {
      ctx.request(target, message{transfer}, self->opt_.forward_timeout)
        .then(
          [self, lane, kept](const v1::DurableTransferAck& ack) {
            store_outcome outcome;
            outcome.stored = ack.stored();
            outcome.duplicates = ack.duplicates();
            if (ack.error_code() != 0)
              outcome.failure = error{static_cast<errc>(ack.error_code()),
                                      ack.error_message()};
            self->forwarded(lane, *kept, outcome);
          },
          [self, lane, kept](const error& why) {
            self->forwarded(lane, *kept, store_outcome{0, 0, why});
          });
    },
    [self, lane, kept](const error& why) {
      self->forwarded(lane, *kept, store_outcome{0, 0, why});
    }});
}

void mailroom::forwarded(const std::string& lane,
                         const std::vector<claimed_item>& batch,
                         const store_outcome& outcome) {
  auto stored = std::min<std::size_t>(outcome.stored, batch.size());
  for (std::size_t i = 0; i < stored; ++i) {
    store_->complete(batch[i].id, [](expected<void>) {});
    notify(batch[i].item, v1::DurableNotice::KIND_REACHED_QUEUE,
           batch[i].id);
  }
  if (stored == batch.size() && !outcome.failure) {
    succeeded(lane);
    return settle(lane, true, 0ms);
  }
  auto why = outcome.failure ? outcome.failure->message()
                             : std::string{"the receiving node took "}
                                 + std::to_string(stored) + " of "
                                 + std::to_string(batch.size());
  auto delay = failed(lane, "durable messages for '"
                              + lane.substr(out_prefix.size())
                              + "' wait on node '" + host_.name()
                              + "': " + why);
  for (std::size_t i = stored; i < batch.size(); ++i)
    (void)store_->release(batch[i].id, delay);
  settle(lane, true, delay);
}

// -- the receiver ----------------------------------------------------------------

void mailroom::store_items(const std::string& target,
                           std::vector<const v1::DurableItem*> items,
                           std::function<void(store_outcome)> done) {
  struct batch_state {
    std::mutex mu;
    std::vector<std::optional<expected<append_result>>> results;
    std::size_t remaining = 1; // the submitting loop holds one
    std::function<void(store_outcome)> done;
  };
  auto lane = std::string{in_prefix} + target;
  auto state = std::make_shared<batch_state>();
  state->results.resize(items.size());
  // The dispatcher looks once the items are stored (not before: a claim
  // would find them pending and the lane would go to sleep).
  state->done = [self = shared_from_this(), lane,
                 done = std::move(done)](store_outcome outcome) {
    if (outcome.stored > 0)
      self->kick(lane);
    done(std::move(outcome));
  };
  auto finish_one = [state] {
    {
      std::lock_guard guard{state->mu};
      if (--state->remaining != 0)
        return;
    }
    store_outcome outcome;
    for (auto& r : state->results) {
      if (!r)
        break; // not submitted: an earlier one failed at once
      if (!*r) {
        outcome.failure = r->error();
        break;
      }
      ++outcome.stored;
      if ((*r)->duplicate)
        ++outcome.duplicates;
    }
    if (!outcome.failure && outcome.stored < state->results.size())
      outcome.failure = error{errc::unavailable, "not stored"};
    state->done(std::move(outcome));
  };
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& item = *items[i];
    message_options o;
    o.producer_id = item.producer_id();
    o.producer_epoch = item.producer_epoch();
    o.sequence = item.sequence();
    o.priority = static_cast<std::uint8_t>(std::min<std::uint32_t>(
      item.priority(), max_priority));
    o.time_to_be_received = nanoseconds{item.time_to_be_received_ns()};
    {
      std::lock_guard guard{state->mu};
      ++state->remaining;
    }
    store_->append(lane, item.SerializeAsString(), o,
                   [state, i, finish_one](expected<append_result> r) {
                     {
                       std::lock_guard guard{state->mu};
                       state->results[i] = std::move(r);
                     }
                     finish_one();
                   });
    // Stop at the first refusal so that what is stored is a prefix (order
    // holds: the rest comes again, after it).
    std::lock_guard guard{state->mu};
    if (state->results[i] && !*state->results[i])
      break;
  }
  finish_one();
}

void mailroom::accept(std::string_view target, message transfer,
                      std::function<void(expected<message>)> answer) {
  auto held = std::dynamic_pointer_cast<const v1::DurableTransfer>(transfer);
  if (!held)
    return answer(error{errc::invalid_argument, "not a durable transfer"});
  {
    std::lock_guard guard{mu_};
    if (stopping_)
      return answer(error{errc::unavailable, "the node stops"});
  }
  std::vector<const v1::DurableItem*> items;
  for (const auto& item : held->items())
    items.push_back(&item);
  store_items(std::string{target}, std::move(items),
              [held, answer = std::move(answer)](store_outcome outcome) {
                auto ack = std::make_shared<v1::DurableTransferAck>();
                ack->set_stored(outcome.stored);
                ack->set_duplicates(outcome.duplicates);
                if (outcome.failure) {
                  ack->set_error_code(
                    static_cast<std::uint32_t>(outcome.failure->code()));
                  ack->set_error_message(outcome.failure->message());
                }
                answer(message{std::move(ack)});
              });
}

void mailroom::dispatch(const std::string& lane) {
  auto target = lane.substr(in_prefix.size());
  if (!is_local(target))
    // Its actor is away (restarting, or not spawned yet): look again.
    return settle(lane, true, failed(lane, {}));
  auto got = store_->claim(lane, std::max<std::size_t>(1, opt_.dispatch_batch));
  if (!got)
    return settle(lane, true, failed(lane, got.error().message()));
  if (got->empty()) {
    succeeded(lane);
    return settle(lane, false, 0ms);
  }
  auto run = std::make_shared<dispatch_run>();
  run->lane = lane;
  run->target = target;
  bool flush_first = false;
  for (auto& m : *got) {
    flush_first = flush_first || m.attempts > 1;
    claimed_item c;
    c.id = m.id;
    message payload;
    std::string bad;
    if (!c.item.ParseFromString(m.payload)) {
      bad = "the stored record is unreadable";
    } else {
      (void)host_.register_type(c.item.type_name());
      auto made = host_.new_message(c.item.type_name());
      if (!made)
        bad = "type " + c.item.type_name() + " is unknown on node '"
              + host_.name() + "'";
      else if (!(*made)->ParseFromString(c.item.payload()))
        bad = "the payload is not a valid " + c.item.type_name();
      else
        payload = message{std::move(*made)};
    }
    run->items.push_back(std::move(c));
    run->payloads.push_back(std::move(payload));
    run->unreadable.push_back(std::move(bad));
  }
  {
    std::lock_guard guard{mu_};
    flush_first = flush_first || !std::exchange(lanes_[lane].flushed, true);
  }
  // A handler that kills the process is counted even so, and becomes
  // poison after max_attempts: its attempt is durable before it runs again.
  if (flush_first)
    (void)store_->flush();
  auto self = shared_from_this();
  submit(job{[self, run](context& ctx) { self->hand_over(run, ctx); },
             [self, run](const error& why) { self->stop_run(run, why); }});
}

void mailroom::hand_over(const std::shared_ptr<dispatch_run>& run,
                         context& ctx) {
  if (run->next == run->items.size())
    return finish_run(run, 0ms);
  auto i = run->next;
  if (!run->unreadable[i].empty())
    return stop_run(run, error{errc::invalid_argument, run->unreadable[i]});
  auto self = shared_from_this();
  // The handler continues the post's trace, if it had one.
  std::optional<trace_scope> traced;
  if (auto trace = trace_of(run->items[i].item.trace()))
    traced.emplace(*trace);
  ctx.request(run->target, run->payloads[i], opt_.handler_timeout)
    .then(
      [self, run, &ctx](const message&) {
        // Handled: removed (its fsync runs while the next one is handled);
        // the next batch is claimed once every removal is durable.
        auto& c = run->items[run->next++];
        {
          std::lock_guard guard{run->mu};
          ++run->removals;
        }
        self->store_->complete(c.id, [self, run](expected<void>) {
          self->removed(run);
        });
        self->notify(c.item, v1::DurableNotice::KIND_HANDLED, c.id);
        self->hand_over(run, ctx);
      },
      [self, run](const error& why) { self->stop_run(run, why); });
}

void mailroom::stop_run(const std::shared_ptr<dispatch_run>& run,
                        const error& why) {
  auto delay = failed(run->lane, {});
  auto i = run->next;
  if (i < run->items.size()) {
    const auto& c = run->items[i];
    if (why.code() == errc::not_found || why.code() == errc::unavailable
        || why.code() == errc::aborted)
      // The handler did not run (its actor was away, or stopped): no
      // attempt.
      (void)store_->release(c.id, delay);
    else
      store_->fail(c.id, std::string{to_string(why.code())} + ": "
                           + why.message(),
                   [](expected<void>) {}, delay);
  }
  // The rest were not handed over: back in their place, no attempt.
  for (auto j = i + 1; j < run->items.size(); ++j)
    (void)store_->release(run->items[j].id, delay);
  finish_run(run, delay);
}

void mailroom::finish_run(const std::shared_ptr<dispatch_run>& run,
                          milliseconds delay) {
  {
    std::lock_guard guard{run->mu};
    run->finished = true;
    run->delay = delay;
    if (run->removals != 0)
      return; // the last removal settles the lane
  }
  if (delay == 0ms)
    succeeded(run->lane);
  settle(run->lane, true, delay);
}

void mailroom::removed(const std::shared_ptr<dispatch_run>& run) {
  milliseconds delay;
  {
    std::lock_guard guard{run->mu};
    if (--run->removals != 0 || !run->finished)
      return;
    delay = run->delay;
  }
  if (delay == 0ms)
    succeeded(run->lane);
  settle(run->lane, true, delay);
}

// -- the pump -------------------------------------------------------------------

void mailroom::kick(const std::string& lane) {
  {
    std::lock_guard guard{mu_};
    lanes_[lane].dirty = true;
  }
  cv_.notify_one();
}

void mailroom::settle(const std::string& lane, bool again, milliseconds delay) {
  {
    std::lock_guard guard{mu_};
    auto& l = lanes_[lane];
    l.busy = false;
    l.dirty = l.dirty || again;
    l.not_before = steady::now() + delay;
  }
  cv_.notify_one();
}

milliseconds mailroom::failed(const std::string& lane, const std::string& why) {
  milliseconds delay;
  bool say = false;
  {
    std::lock_guard guard{mu_};
    auto& l = lanes_[lane];
    l.backoff = std::clamp(l.backoff * 2, opt_.retry_min, opt_.retry_max);
    delay = l.backoff;
    if (!why.empty() && why != l.last_failure) {
      l.last_failure = why;
      say = true;
    }
  }
  if (say)
    log_.write(log_level::warning, why);
  return delay;
}

void mailroom::succeeded(const std::string& lane) {
  std::lock_guard guard{mu_};
  auto& l = lanes_[lane];
  l.backoff = 0ms;
  l.last_failure.clear();
}

void mailroom::pump_loop() {
  std::unique_lock guard{mu_};
  while (!stopping_) {
    auto now = steady::now();
    auto wake = now + 100ms;
    std::vector<std::string> ready;
    for (auto& [name, l] : lanes_) {
      if (l.busy || !l.dirty)
        continue;
      if (l.not_before > now) {
        wake = std::min(wake, l.not_before);
        continue;
      }
      l.dirty = false;
      l.busy = true;
      ready.push_back(name);
    }
    auto notices = std::move(notices_);
    notices_.clear();
    if (ready.empty() && notices.empty()) {
      cv_.wait_until(guard, wake);
      continue;
    }
    guard.unlock();
    for (auto& [to, notice] : notices)
      (void)host_.post(to, notice); // best effort, as MSMQ's acknowledgements
    for (const auto& lane : ready)
      run_lane(lane);
    guard.lock();
  }
}

void mailroom::run_lane(const std::string& lane) {
  if (has_prefix(lane, out_prefix))
    forward(lane);
  else
    dispatch(lane);
}

bool mailroom::is_local(const std::string& name) const {
  return !host_.names(name).empty();
}

// -- notices, the actor, administration ------------------------------------------

void mailroom::notify(const v1::DurableItem& item, v1::DurableNotice::Kind kind,
                      std::uint64_t id, std::string reason, std::string detail,
                      std::uint32_t attempts) {
  if (item.ack_to().empty())
    return;
  v1::DurableNotice notice;
  notice.set_kind(kind);
  notice.set_message_id(item.message_id() != 0 ? item.message_id() : id);
  notice.set_sender_node(item.sender_node());
  notice.set_target(item.target());
  notice.set_node(host_.name());
  notice.set_reason(std::move(reason));
  notice.set_detail(std::move(detail));
  notice.set_attempts(attempts);
  {
    std::lock_guard guard{mu_};
    // Bounded: notices are best effort; past this many waiting, new ones
    // are dropped (and said).
    if (notices_.size() >= 65'536) {
      log_.write(log_level::warning,
                 "durable notices to '" + item.ack_to()
                   + "' dropped: 65536 wait already");
      return;
    }
    notices_.emplace_back(item.ack_to(), std::move(notice));
  }
  cv_.notify_one();
}

void mailroom::on_dead_letter(const dead_letter& dead) {
  v1::DurableItem item;
  (void)item.ParseFromString(dead.message.payload);
  log_.write(log_level::warning,
             "durable message " + std::to_string(dead.message.id) + " ("
               + dead.message.queue + ", from node '" + item.sender_node()
               + "') is a dead letter on node '" + host_.name() + "': "
               + (dead.reason == dead_reason::poison ? "poison, " : "")
               + dead.detail);
  notify(item, v1::DurableNotice::KIND_DEAD_LETTER, dead.message.id,
         std::string{to_string(dead.reason)}, dead.detail,
         dead.message.attempts);
}

void mailroom::submit(job work) {
  bool first = false;
  {
    std::lock_guard guard{jobs_->mu};
    first = jobs_->jobs.empty();
    jobs_->jobs.push_back(std::move(work));
  }
  if (!first)
    return; // a kick is on its way
  if (auto kicked = host_.post(actor_name_, google::protobuf::Empty{});
      !kicked) {
    std::deque<job> left;
    {
      std::lock_guard guard{jobs_->mu};
      left.swap(jobs_->jobs);
    }
    for (auto& w : left)
      w.abandon(kicked.error());
  }
}

void mailroom::run_jobs(job_queue& queue, context& ctx) {
  std::deque<job> now;
  {
    std::lock_guard guard{queue.mu};
    now.swap(queue.jobs);
  }
  for (auto& work : now)
    work.run(ctx);
}

expected<v1::DurableAdminReply>
mailroom::administer(const v1::DurableAdminRequest& request) {
  v1::DurableAdminReply reply;
  auto fill = [](v1::DurableMessageInfo& info, const stored_message& m) {
    info.set_id(m.id);
    info.set_queue(m.queue);
    (void)info.mutable_item()->ParseFromString(m.payload);
    info.set_attempts(m.attempts);
    info.set_stored_unix_ns(m.stored_wall_ns);
  };
  auto queues_of = [](const std::string& name) {
    if (has_prefix(name, out_prefix) || has_prefix(name, in_prefix))
      return std::vector<std::string>{name};
    return std::vector<std::string>{std::string{in_prefix} + name,
                                    std::string{out_prefix} + name};
  };
  auto max = request.max() == 0 ? 10u : std::min(request.max(), 10'000u);
  switch (request.op()) {
    case v1::DurableAdminRequest::OP_QUEUES:
      for (const auto& q : store_->queues()) {
        if (!has_prefix(q.name, out_prefix) && !has_prefix(q.name, in_prefix))
          continue;
        auto& info = *reply.add_queues();
        info.set_name(q.name);
        info.set_depth(q.depth);
        info.set_in_flight(q.in_flight);
        info.set_bytes(q.bytes);
        info.set_oldest_unix_ns(q.oldest_wall_ns);
      }
      break;
    case v1::DurableAdminRequest::OP_PEEK:
      for (const auto& q : queues_of(request.queue()))
        for (const auto& m : store_->peek(q, max))
          fill(*reply.add_messages(), m);
      break;
    case v1::DurableAdminRequest::OP_PURGE:
      for (const auto& q : queues_of(request.queue())) {
        auto purged = store_->purge(q);
        if (!purged)
          return std::move(purged).error();
        reply.set_count(reply.count() + *purged);
      }
      break;
    case v1::DurableAdminRequest::OP_DEAD_LETTERS:
      for (const auto& d : store_->dead_letters()) {
        auto& info = *reply.add_messages();
        fill(info, d.message);
        info.set_reason(std::string{to_string(d.reason)});
        info.set_detail(d.detail);
        info.set_died_unix_ns(d.died_wall_ns);
      }
      break;
    case v1::DurableAdminRequest::OP_REPLAY:
    case v1::DurableAdminRequest::OP_REPLAY_ALL: {
      for (const auto& d : store_->dead_letters()) {
        if (request.op() == v1::DurableAdminRequest::OP_REPLAY
            && d.message.id != request.id())
          continue;
        if (auto replayed = store_->replay(d.message.id); !replayed)
          return replayed.error();
        reply.set_count(reply.count() + 1);
        kick(d.message.queue);
      }
      if (request.op() == v1::DurableAdminRequest::OP_REPLAY
          && reply.count() == 0)
        return error{errc::not_found,
                     "no dead letter " + std::to_string(request.id())};
      break;
    }
    default:
      return error{errc::invalid_argument,
                   "unknown durable administration request"};
  }
  return reply;
}

void mailroom::add_metrics(metrics_snapshot& snapshot) const {
  if (!store_)
    return;
  auto queues = store_->queues();
  std::erase_if(queues, [](const queue_info& q) {
    return !has_prefix(q.name, out_prefix) && !has_prefix(q.name, in_prefix);
  });
  // Bounded labels: the deepest 100 queues (one per destination name).
  constexpr std::size_t most = 100;
  if (queues.size() > most) {
    std::nth_element(queues.begin(), queues.begin() + most, queues.end(),
                     [](const auto& x, const auto& y) {
                       return x.depth > y.depth;
                     });
    queues.resize(most);
  }
  std::sort(queues.begin(), queues.end(),
            [](const auto& x, const auto& y) { return x.name < y.name; });
  auto now = wall_ns();
  for (const auto& q : queues)
    snapshot.durable_queues.push_back(
      {q.name, q.depth, q.in_flight, q.bytes,
       q.oldest_wall_ns == 0
         ? 0.0
         : static_cast<double>(std::max<std::int64_t>(0, now - q.oldest_wall_ns))
             / 1e9});
  snapshot.durable_dead_letters = store_->dead_letter_count();
}

} // namespace

durable_factory delivery(delivery_options options) {
  return [options = std::move(options)](
           node& host) -> expected<std::shared_ptr<durable_plugin>> {
    auto made = std::make_shared<mailroom>(host, options);
    if (auto opened = made->open(); !opened)
      return std::move(opened).error();
    return std::shared_ptr<durable_plugin>{std::move(made)};
  };
}

} // namespace courier::durable

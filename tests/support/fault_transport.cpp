#include "fault_transport.hpp"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <map>
#include <thread>
#include <utility>

#include <sys/stat.h>

namespace courier::testing {

// -- fault_plan ---------------------------------------------------------------

void fault_plan::drop_next(std::size_t frames) {
  std::lock_guard guard{mu_};
  drop_ = frames;
}

void fault_plan::delay(std::chrono::milliseconds by) {
  std::lock_guard guard{mu_};
  delay_ = by;
}

void fault_plan::cut_next() {
  std::lock_guard guard{mu_};
  cut_ = true;
}

void fault_plan::fail_writes(std::size_t frames, error why) {
  std::lock_guard guard{mu_};
  fail_ = frames;
  fail_why_ = std::move(why);
}

void fault_plan::refuse_connects(bool on) {
  std::lock_guard guard{mu_};
  refuse_ = on;
}

void fault_plan::rank(std::optional<unsigned> rank) {
  std::lock_guard guard{mu_};
  rank_ = rank;
}

fault_plan::verdict fault_plan::next_write() {
  std::lock_guard guard{mu_};
  if (fail_ > 0) {
    --fail_;
    ++failed_;
    return {action::fail, {}, fail_why_};
  }
  if (drop_ > 0) {
    --drop_;
    ++dropped_;
    return {action::drop, {}, error{errc::ok}};
  }
  if (std::exchange(cut_, false)) {
    ++cut_count_;
    return {action::cut, delay_, error{errc::ok}};
  }
  return {action::pass, delay_, error{errc::ok}};
}

bool fault_plan::refusing_connects() const {
  std::lock_guard guard{mu_};
  return refuse_;
}

std::optional<unsigned> fault_plan::rank() const {
  std::lock_guard guard{mu_};
  return rank_;
}

std::size_t fault_plan::dropped() const {
  std::lock_guard guard{mu_};
  return dropped_;
}

std::size_t fault_plan::cut() const {
  std::lock_guard guard{mu_};
  return cut_count_;
}

std::size_t fault_plan::failed() const {
  std::lock_guard guard{mu_};
  return failed_;
}

std::size_t fault_plan::refused() const {
  std::lock_guard guard{mu_};
  return refused_;
}

void fault_plan::count_refusal() {
  std::lock_guard guard{mu_};
  ++refused_;
}

namespace {

using clock = std::chrono::steady_clock;
using action = fault_plan::action;

/// One inner link and what the wrapper knows of it; shared by the wrapping
/// link and the delayer, which may write to it after its owner let go.
struct link_state {
  explicit link_state(std::unique_ptr<link> conn) : inner(std::move(conn)) {
  }

  const std::unique_ptr<link> inner;
  /// Held while writing to `inner`, so that frames written now cannot pass
  /// delayed ones. Lock order: before the delayer's own.
  std::mutex mu;
  std::size_t delayed = 0;  // guarded by mu: frames held by the delayer
  clock::time_point due{};  // guarded by mu: when the last of them leaves
  bool close_when_sent = false; // guarded by mu: close() came meanwhile
  bool broken = false;      // guarded by mu: closed by the plan
};

/// Writes a frame that the plan lets go (pass or cut) to the inner link.
/// Called with state.mu held.
expected<void> emit(link_state& state, frame out, action what, bool more) {
  if (state.broken)
    return error{errc::unavailable, "the fault plan closed the link"};
  if (what != action::cut)
    return more ? state.inner->write_more(std::move(out))
                : state.inner->write(std::move(out));
  auto bytes = std::move(out).flatten();
  bytes.resize(bytes.size() / 2);
  (void)state.inner->write(frame{std::move(bytes)});
  state.inner->close();
  state.broken = true;
  return {};
}

/// Writes delayed frames when they are due, on a thread of its own.
class delayer {
public:
  delayer() : thread_{[this] { run(); }} {
  }

  ~delayer() {
    stop();
  }

  /// Takes `out` to be written at `due`, unless stopped (then false, and
  /// `out` stays with the caller). Called with state->mu held.
  bool hold(const std::shared_ptr<link_state>& state, frame& out,
            action what, clock::time_point due) {
    {
      std::lock_guard guard{mu_};
      if (stopping_)
        return false;
      items_.emplace(due, item{state, std::move(out), what});
    }
    cv_.notify_one();
    return true;
  }

  /// Ends the thread; frames not yet due are dropped. Idempotent.
  void stop() {
    {
      std::lock_guard guard{mu_};
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable())
      thread_.join();
    std::multimap<clock::time_point, item> left;
    {
      std::lock_guard guard{mu_};
      left.swap(items_);
    }
  }

private:
  struct item {
    std::shared_ptr<link_state> state;
    frame out;
    action what = action::pass;
  };

  void run() {
    std::unique_lock lock{mu_};
    while (!stopping_) {
      if (items_.empty()) {
        cv_.wait(lock);
        continue;
      }
      auto first = items_.begin();
      if (first->first > clock::now()) {
        cv_.wait_until(lock, first->first);
        continue;
      }
      auto next = std::move(first->second);
      items_.erase(first);
      lock.unlock();
      {
        std::lock_guard guard{next.state->mu};
        (void)emit(*next.state, std::move(next.out), next.what, false);
        if (--next.state->delayed == 0 && next.state->close_when_sent)
          next.state->inner->close();
      }
      next = {}; // may release the inner link: outside our lock
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  /// Guarded by mu_. Due times grow per link and equal keys keep their
  /// order of insertion, so each link's frames leave in the order written.
  std::multimap<clock::time_point, item> items_;
  bool stopping_ = false; // guarded by mu_
  std::thread thread_;
};

/// A link of the inner tier with the plan applied to what it writes.
class fault_link final : public link {
public:
  fault_link(std::unique_ptr<link> inner, std::shared_ptr<fault_plan> plan,
             std::shared_ptr<delayer> delays, std::size_t max_frame)
    : state_(std::make_shared<link_state>(std::move(inner))),
      plan_(std::move(plan)),
      delays_(std::move(delays)),
      max_frame_(max_frame) {
  }

  void start(std::shared_ptr<link_events> events) override {
    state_->inner->start(std::move(events));
  }

  expected<void> write(frame out) override {
    return write(std::move(out), false);
  }

  expected<void> write_more(frame out) override {
    return write(std::move(out), true);
  }

  void flush() override {
    state_->inner->flush();
  }

  void pause_reading() override {
    state_->inner->pause_reading();
  }

  void resume_reading() override {
    state_->inner->resume_reading();
  }

  void limit_frames(std::size_t max_frame) override {
    state_->inner->limit_frames(max_frame);
  }

  void recycle(std::string buffer) override {
    state_->inner->recycle(std::move(buffer));
  }

  bool writable() override {
    return state_->inner->writable();
  }

  void close() override {
    std::lock_guard guard{state_->mu};
    if (state_->delayed > 0)
      state_->close_when_sent = true; // the delayer closes after them
    else
      state_->inner->close();
  }

  const peer_identity& peer() const noexcept override {
    return state_->inner->peer();
  }

private:
  expected<void> write(frame out, bool more) {
    if (out.size() > max_frame_) // the inner tier refuses it, and says why
      return state_->inner->write(std::move(out));
    auto verdict = plan_->next_write();
    if (verdict.what == action::drop)
      return {};
    std::lock_guard guard{state_->mu};
    if (verdict.what == action::fail) {
      if (verdict.why.code() == errc::unavailable && !state_->broken) {
        state_->broken = true;
        state_->inner->close();
      }
      return verdict.why;
    }
    if (verdict.delay.count() > 0 || state_->delayed > 0) {
      auto due = std::max(clock::now() + verdict.delay, state_->due);
      if (!state_->broken
          && delays_->hold(state_, out, verdict.what, due)) {
        state_->due = due;
        ++state_->delayed;
        return {};
      }
    }
    return emit(*state_, std::move(out), verdict.what, more);
  }

  std::shared_ptr<link_state> state_;
  std::shared_ptr<fault_plan> plan_;
  std::shared_ptr<delayer> delays_;
  std::size_t max_frame_;
};

class fault_transport final : public transport {
public:
  fault_transport(std::unique_ptr<transport> inner,
                  std::shared_ptr<fault_plan> plan, std::string name,
                  std::size_t max_frame)
    : inner_(std::move(inner)),
      plan_(std::move(plan)),
      name_(std::move(name)),
      max_frame_(max_frame) {
  }

  ~fault_transport() override {
    stop();
  }

  std::string_view name() const noexcept override {
    return name_;
  }

  reach_result reach(const node_place& self,
                     const node_place& peer) const override {
    auto out = inner_->reach(self, peer);
    if (auto rank = plan_->rank(); rank && out.rank > 0)
      out.rank = *rank;
    return out;
  }

  expected<std::string>
  listen(const listen_context& where,
         std::function<void(std::unique_ptr<link>)> on_accept) override {
    // The inner tier names its endpoint after our registered name
    // (listen_context::tier), beside a plain one of its kind.
    return inner_->listen(where,
                          [this, on_accept = std::move(on_accept)](
                            std::unique_ptr<link> conn) {
                            on_accept(wrap(std::move(conn)));
                          });
  }

  expected<std::unique_ptr<link>> connect(const std::string& address,
                                          deadline until) override {
    if (plan_->refusing_connects()) {
      plan_->count_refusal();
      return error{errc::unavailable,
                   "the fault plan refuses connects (to " + address + ")"};
    }
    auto conn = inner_->connect(address, until);
    if (!conn)
      return conn.error();
    return wrap(std::move(*conn));
  }

  void stop() override {
    delays_->stop(); // lets go of inner links before their tier stops
    inner_->stop();
  }

  bool poll() override {
    return inner_->poll();
  }

  bool pollable() const noexcept override {
    return inner_->pollable();
  }

  bool pollable_beside_plugins() const noexcept override {
    return inner_->pollable_beside_plugins();
  }

  void polling_stopped() override {
    inner_->polling_stopped();
  }

private:
  std::unique_ptr<link> wrap(std::unique_ptr<link> conn) {
    return std::make_unique<fault_link>(std::move(conn), plan_, delays_,
                                        max_frame_);
  }

  std::unique_ptr<transport> inner_;
  std::shared_ptr<fault_plan> plan_;
  std::string name_;
  std::size_t max_frame_;
  std::shared_ptr<delayer> delays_ = std::make_shared<delayer>();
};

} // namespace

transport_factory fault_factory(transport_factory inner,
                                std::shared_ptr<fault_plan> plan,
                                std::string name) {
  return [inner = std::move(inner), plan = std::move(plan),
          name = std::move(name)](const transport_limits& limits)
           -> expected<std::unique_ptr<transport>> {
    auto made = inner(limits);
    if (!made)
      return made.error();
    return std::unique_ptr<transport>{
      new fault_transport(std::move(*made), plan, name, limits.max_frame)};
  };
}

} // namespace courier::testing

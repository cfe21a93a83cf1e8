#pragma once

// What the gateway's calls share (gateway.cpp's verbs, actor_services.cpp's
// services served by actors): errors as statuses, the trace a call
// continues, the actor that issues requests for calls without holding a
// thread, and the book of calls waiting for an outcome. Private to the
// gateway's target.

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include <google/protobuf/empty.pb.h>
#include <grpcpp/grpcpp.h>

#include "courier/courier.hpp"

namespace courier::gateway {

/// Courier's codes are gRPC's (errc.hpp): the status says the same.
grpc::Status status_of(const error& e);

/// The trace a call continues: its `traceparent` metadata (W3C Trace
/// Context), or a new trace when it has none or a malformed one. The
/// client learns which from the initial metadata's `traceparent`.
trace_context trace_of(grpc::CallbackServerContext& call);

/// The node holding `name` ("actor" or "actor@node"), as far as `host`
/// knows; empty if none.
std::string holder_of(node& host, const std::string& name);

/// The bytes of a gRPC message.
std::string bytes_of(const grpc::ByteBuffer& buffer);

/// An actor of the gateway's node that issues requests and broadcasts for
/// calls, so that a call waiting for its answer holds no thread: each job
/// runs in the actor and finishes its call from a continuation.
class requester {
public:
  using job = std::function<void(context&)>;

  requester(node& host, std::string name)
    : host_(host), name_(std::move(name)) {}

  expected<void> start() {
    // The actor holds the queue: it may run after the server is gone.
    auto spawned = host_.spawn(name_, [queue = queue_](context&) {
      return behavior{[queue](const google::protobuf::Empty&, context& ctx) {
        run(*queue, ctx);
      }};
    });
    if (!spawned)
      return std::move(spawned).error();
    return {};
  }

  void stop() {
    (void)host_.stop(name_);
  }

  /// Queues `work`; the actor runs it soon.
  expected<void> submit(job work) {
    bool kick = false;
    {
      std::lock_guard guard{queue_->mu};
      kick = queue_->jobs.empty();
      queue_->jobs.push_back(std::move(work));
    }
    if (!kick)
      return {}; // a kick is on its way
    return host_.post(name_, google::protobuf::Empty{});
  }

private:
  struct queue {
    std::mutex mu;
    std::deque<job> jobs; // guarded by mu
  };

  static void run(queue& q, context& ctx) {
    std::deque<job> now;
    {
      std::lock_guard guard{q.mu};
      now.swap(q.jobs);
    }
    for (auto& work : now)
      work(ctx);
  }

  node& host_;
  std::string name_;
  std::shared_ptr<queue> queue_ = std::make_shared<queue>();
};

/// Asks `name` for a call and hands the outcome to `on_outcome`, holding
/// no thread meanwhile. An actor of this node is asked straight from the
/// calling thread (node::request_here), and `on_outcome` runs on the
/// answering actor's thread (or the node's timer's); a name elsewhere is
/// asked by `asker`'s actor, whose continuation runs `on_outcome`. A
/// failure before anything is sent is returned, and `on_outcome` is not
/// called. Continues `trace`.
inline expected<void> ask(node& host, requester& asker, const std::string& name,
                          const message& msg, deadline until,
                          const trace_context& trace,
                          std::function<void(expected<message>)> on_outcome) {
  {
    trace_scope traced{trace};
    auto here = host.request_here(name, msg, until, on_outcome);
    if (!here)
      return std::move(here).error();
    if (*here)
      return {};
  }
  return asker.submit([name, msg, until, trace,
                       on_outcome = std::move(on_outcome)](context& ctx) {
    trace_scope traced{trace};
    ctx.request(name, msg, until)
      .then([on_outcome](const message& reply) { on_outcome(reply); },
            [on_outcome](const error& e) { on_outcome(e); });
  });
}

/// Where a call and the continuation that finishes it meet: the
/// continuation may come after the call is gone (its reactor deleted), so
/// both sides take the lock, and the call clears `call` when it is done.
template <class Call, class Out>
struct meeting {
  std::mutex mu;
  Call* call = nullptr;  // null once the call is done
  bool finished = false; // Finish was called
  Out out;               // what the call writes, kept until it is written
};

/// A unary call whose outcome comes later (Send, Broadcast). Finished
/// once: by its continuation, or by the server stopping first.
struct pending_call {
  grpc::CallbackServerContext* call;
  grpc::ServerUnaryReactor* reactor;
  std::mutex mu;     // held while the reply is filled and the call finished
  bool done = false; // guarded by mu: Finish was called
};

/// The calls waiting for an outcome, and the counts. Continuations hold it
/// (they may run after the server is gone).
///
/// Thread safety: all member functions are thread-safe.
class call_book {
public:
  std::shared_ptr<pending_call> track(grpc::CallbackServerContext* call,
                                      grpc::ServerUnaryReactor* reactor) {
    auto pending = std::make_shared<pending_call>();
    pending->call = call;
    pending->reactor = reactor;
    std::unique_lock guard{mu_};
    if (!closed_) {
      waiting_.insert(pending);
      return pending;
    }
    guard.unlock();
    finish(pending, stopped());
    return pending;
  }

  /// Finishes a tracked call with `status`, unless it is finished already;
  /// `fill` writes its reply first (not for a call the client cancelled:
  /// that outcome is dropped and counted).
  void finish(const std::shared_ptr<pending_call>& pending, grpc::Status status,
              const std::function<void()>& fill = {}) {
    {
      std::lock_guard guard{pending->mu};
      if (pending->done)
        return;
      pending->done = true;
      if (pending->call->IsCancelled()) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        status = grpc::Status::CANCELLED;
      } else if (fill) {
        fill();
      }
      count();
      pending->reactor->Finish(status);
    }
    std::lock_guard guard{mu_};
    waiting_.erase(pending);
  }

  /// Stopping: the calls still waiting end now, and later ones at once.
  void close() {
    std::set<std::shared_ptr<pending_call>> left;
    {
      std::lock_guard guard{mu_};
      closed_ = true;
      left.swap(waiting_);
    }
    for (const auto& pending : left)
      finish(pending, stopped());
  }

  /// Counts an outcome that came for a call its client had cancelled.
  void drop() {
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }

  /// Outcomes of calls whose client had gone.
  std::uint64_t dropped() const {
    return dropped_.load(std::memory_order_relaxed);
  }

  void count() {
    answered_.fetch_add(1, std::memory_order_relaxed);
  }

  std::uint64_t answered() const {
    return answered_.load(std::memory_order_relaxed);
  }

private:
  static grpc::Status stopped() {
    return {grpc::StatusCode::UNAVAILABLE, "the gateway stopped"};
  }

  std::mutex mu_;
  std::set<std::shared_ptr<pending_call>> waiting_; // guarded by mu_
  bool closed_ = false;                             // guarded by mu_
  std::atomic<std::uint64_t> answered_{0};
  std::atomic<std::uint64_t> dropped_{0};
};

} // namespace courier::gateway

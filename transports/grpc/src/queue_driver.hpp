#pragma once

// The gRPC tier's completion queue, and who drains it.
//
// Every call of the tier (dialed and accepted) completes its operations on
// one queue per transport. Two kinds of thread drain it:
//
// - the node's polling scheduler thread (scheduler_policy::latency), in
//   poll(): AsyncNext with a zero deadline. When no other thread of the
//   process waits in gRPC's poller, that call does gRPC's I/O itself
//   (epoll, HTTP/2, the completion), so a frame is read and handed to the
//   link's events on a thread that is already running, with no wake-up;
// - the driver's own thread, blocked in Next, whenever nobody polls: no
//   frame waits for a poller that sleeps, or for a node that never polls
//   (scheduler_policy::sharing).
//
// The two must not overlap: gRPC's epoll poller (ev_epoll1_linux.cc) lets
// one thread of the process poll at a time, so while the driver's thread
// blocks in Next, a poller's AsyncNext only finds completions that thread
// made, after its wake-up. So the driver's thread waits, off the queue,
// while poll() is being called: until the poller says it stops
// (polling_stopped(), before it sleeps), or for `grace` after the last
// poll() (a poller that left to run a long job). A poll() that finds the
// driver's thread in Next kicks it out with an alarm, again after each
// kick a poller took itself; and the thread leaves Next after max_stay
// whatever happens (so an idle tier wakes it 10 times a second).
//
// Thread safety: all member functions are thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <grpcpp/alarm.h>
#include <grpcpp/completion_queue.h>

namespace courier::grpc_tier {

/// An operation handed to gRPC, which comes back as this tag.
class completion {
public:
  /// The operation completed (`ok` as gRPC says), on a thread draining the
  /// queue.
  virtual void done(bool ok) = 0;

protected:
  ~completion() = default;
};

/// A completion that calls `Fn` on `Owner`.
template <class Owner, void (Owner::*Fn)(bool)>
class member_completion final : public completion {
public:
  explicit member_completion(Owner* owner) : owner_(owner) {
  }

  void done(bool ok) override {
    (owner_->*Fn)(ok);
  }

private:
  Owner* owner_;
};

class queue_driver {
public:
  using clock = std::chrono::steady_clock;

  /// Drives `queue`, which outlives the driver (every tag on it is a
  /// completion*); starts the driver's thread.
  explicit queue_driver(::grpc::CompletionQueue* queue);

  /// Shuts the queue down if shutdown() was not called.
  ~queue_driver();

  queue_driver(const queue_driver&) = delete;
  queue_driver& operator=(const queue_driver&) = delete;

  /// Handles what the queue holds (doing gRPC's I/O when no other thread
  /// does), without waiting; true if anything completed.
  bool poll();

  /// The poller stops calling poll() (it goes to sleep): the driver's
  /// thread takes the queue back at once.
  void polling_stopped();

  /// Shuts the queue down once no operation is pending on it (the caller
  /// made sure of that), and waits until it is drained. No operation may
  /// start afterwards.
  void shutdown();

private:
  void run();
  bool polled_recently(clock::rep now) const;
  void handle(void* tag, bool ok);
  void kicked(bool ok);

  /// How long after the last poll() the driver's thread leaves the queue
  /// to pollers.
  static constexpr auto grace = std::chrono::milliseconds{1};

  /// The longest the driver's thread stays in Next at a time.
  static constexpr auto max_stay = std::chrono::milliseconds{100};

  ::grpc::CompletionQueue* const queue_;
  // When poll() was last called; 0: nobody polls.
  std::atomic<clock::rep> polled_at_{0};
  // The driver's thread is in Next (or about to be).
  std::atomic<bool> in_next_{false};
  member_completion<queue_driver, &queue_driver::kicked> kick_tag_{this};
  std::mutex mu_;
  std::condition_variable cv_;
  ::grpc::Alarm kick_;     // guarded by mu_ (set only while !shut_)
  bool alarm_set_ = false; // guarded by mu_: its completion not yet taken
  bool shut_ = false;      // guarded by mu_
  std::thread thread_;
};

} // namespace courier::grpc_tier

#include "queue_driver.hpp"

#include <grpc/support/time.h>

namespace courier::grpc_tier {

namespace {

using clock = queue_driver::clock;

/// At most this many completions per poll(): between batches the poller
/// looks at its scheduler's queue (a frame handed over may have made an
/// actor runnable).
constexpr int poll_batch = 16;

clock::rep now_rep() {
  return clock::now().time_since_epoch().count();
}

gpr_timespec right_now() {
  return gpr_time_0(GPR_CLOCK_MONOTONIC);
}

} // namespace

queue_driver::queue_driver(::grpc::CompletionQueue* queue) : queue_(queue) {
  thread_ = std::thread{[this] { run(); }};
}

queue_driver::~queue_driver() {
  shutdown();
}

bool queue_driver::polled_recently(clock::rep now) const {
  auto at = polled_at_.load();
  return at != 0
         && now - at
              < std::chrono::duration_cast<clock::duration>(grace).count();
}

bool queue_driver::poll() {
  polled_at_.store(now_rep());
  // (seq_cst, as in run(): either the driver's thread sees this poll, or
  // this sees it in Next.)
  if (in_next_.load()) {
    // The driver's thread holds gRPC's poller: kick it out (again, if a
    // poller took the last kick's completion itself).
    std::lock_guard guard{mu_};
    if (!shut_ && !alarm_set_) {
      alarm_set_ = true;
      kick_.Set(queue_, right_now(), &kick_tag_);
    }
  }
  bool any = false;
  for (int i = 0; i < poll_batch; ++i) {
    void* tag = nullptr;
    bool ok = false;
    if (queue_->AsyncNext(&tag, &ok, right_now())
        != ::grpc::CompletionQueue::GOT_EVENT)
      break;
    handle(tag, ok);
    any = any || tag != &kick_tag_;
  }
  return any;
}

void queue_driver::polling_stopped() {
  {
    // Under the lock: the driver's thread is waiting for this, or has not
    // yet looked at polled_at_.
    std::lock_guard guard{mu_};
    polled_at_.store(0);
  }
  cv_.notify_one();
}

void queue_driver::kicked(bool) {
  std::lock_guard guard{mu_};
  alarm_set_ = false;
}

void queue_driver::handle(void* tag, bool ok) {
  static_cast<completion*>(tag)->done(ok);
}

void queue_driver::run() {
  for (;;) {
    {
      std::unique_lock lock{mu_};
      while (!shut_ && polled_recently(now_rep()))
        cv_.wait_until(lock, clock::time_point{clock::duration{
                               polled_at_.load()}}
                               + grace);
      if (shut_) {
        // Drain what is left; Next says when nothing is.
        lock.unlock();
        void* tag = nullptr;
        bool ok = false;
        while (queue_->Next(&tag, &ok))
          handle(tag, ok);
        return;
      }
    }
    in_next_.store(true);
    // A poll() that came since did not see in_next_: leave the queue to it.
    if (polled_recently(now_rep())) {
      in_next_.store(false);
      continue;
    }
    void* tag = nullptr;
    bool ok = false;
    // A bounded wait: should every kick miss it, the thread still leaves
    // gRPC's poller to the pollers within max_stay.
    auto got = queue_->AsyncNext(
      &tag, &ok,
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                   gpr_time_from_millis(max_stay.count(), GPR_TIMESPAN)));
    in_next_.store(false);
    if (got == ::grpc::CompletionQueue::SHUTDOWN)
      return;
    if (got == ::grpc::CompletionQueue::GOT_EVENT)
      handle(tag, ok);
  }
}

void queue_driver::shutdown() {
  {
    std::lock_guard guard{mu_};
    if (shut_)
      return;
    shut_ = true;
  }
  cv_.notify_one();
  queue_->Shutdown();
  thread_.join();
}

} // namespace courier::grpc_tier

#include "spinning_scheduler.hpp"

#include <atomic>
#include <condition_variable>
#include <list>
#include <mutex>


#include <caf/actor_system.hpp>
#include <caf/policy/unprofiled.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/coordinator.hpp>

namespace courier::detail {

namespace {

using clock_type = std::chrono::steady_clock;

/// CAF's work_sharing with a polling phase before the condition variable.
/// `queued` mirrors the queue's length so that pollers look without locking.
///
/// At most one worker polls at a time: the others sleep. On a machine with
/// few cores, two pollers of one node (and the pollers of its peers) would
/// take turns on the CPUs, and a frame would wait for its poller to be
/// scheduled again; one poller per node keeps a core each. A job queued
/// while nobody polls wakes a sleeper, as does a poller that takes a job and
/// leaves more behind, so busy nodes still use every worker.
class polling_sharing : public caf::policy::unprofiled {
public:
  using queue_type = std::list<caf::resumable*>;

  struct coordinator_data {
    explicit coordinator_data(caf::scheduler::abstract_coordinator*) {
    }

    queue_type queue;
    std::mutex lock;
    std::condition_variable cv;
    std::atomic<std::size_t> queued{0};
    // Changed under `lock` only when a worker goes to sleep or wakes; read
    // without it.
    std::atomic<std::size_t> sleepers{0};
    // Whether a worker polls; taken with an exchange, dropped under `lock`
    // when the poller goes to sleep (so a job queued meanwhile wakes it).
    std::atomic<bool> polling{false};
    // Set once, before the workers start.
    std::chrono::nanoseconds idle_spin{0};
    std::vector<poller> pollers;
  };

  struct worker_data {
    explicit worker_data(caf::scheduler::abstract_coordinator*) {
    }
  };

  template <class Coordinator>
  void enqueue(Coordinator* self, caf::resumable* job) {
    auto& data = d(self);
    queue_type one;
    one.push_back(job);
    {
      std::lock_guard guard{data.lock};
      data.queue.splice(data.queue.end(), one);
      data.queued.fetch_add(1, std::memory_order_release);
    }
    // A polling worker finds the job itself. Otherwise wake one sleeper, if
    // one sleeps: workers count themselves as sleepers, and a poller stops
    // polling, under the lock taken above, so none is missed.
    if (!data.polling.load(std::memory_order_acquire)
        && data.sleepers.load(std::memory_order_acquire) > 0)
      data.cv.notify_one();
  }

  template <class Coordinator>
  void central_enqueue(Coordinator* self, caf::resumable* job) {
    // A job made runnable by this thread's poll (a frame for an actor) runs
    // on this thread next, without passing through the queue.
    if (polling_here == &d(self) && next_here == nullptr) {
      next_here = job;
      return;
    }
    enqueue(self, job);
  }

  template <class Worker>
  void external_enqueue(Worker* self, caf::resumable* job) {
    enqueue(self->parent(), job);
  }

  template <class Worker>
  void internal_enqueue(Worker* self, caf::resumable* job) {
    enqueue(self->parent(), job);
  }

  template <class Worker>
  void resume_job_later(Worker* self, caf::resumable* job) {
    enqueue(self->parent(), job);
  }

  template <class Worker>
  caf::resumable* dequeue(Worker* self) {
    auto& data = d(self->parent());
    auto try_take = [&]() -> caf::resumable* {
      if (data.queued.load(std::memory_order_acquire) == 0)
        return nullptr;
      std::lock_guard guard{data.lock};
      return data.queue.empty() ? nullptr : take_front(data);
    };
    if (auto job = try_take())
      return job;
    bool poller = data.idle_spin.count() > 0
                  && !data.polling.exchange(true, std::memory_order_acq_rel);
    if (poller) {
      // Leaving to run a job: if more wait, wake a sleeper to take them,
      // since no worker polls while this one runs.
      auto leave_with = [&](caf::resumable* job) {
        data.polling.store(false, std::memory_order_release);
        if (data.queued.load(std::memory_order_acquire) > 0
            && data.sleepers.load(std::memory_order_acquire) > 0)
          data.cv.notify_one();
        return job;
      };
      auto until = clock_type::now() + data.idle_spin;
      for (unsigned polls = 1;; ++polls) {
        if (auto job = try_take())
          return leave_with(job);
        bool found = false;
        polling_here = &data;
        for (auto& each : data.pollers)
          found |= each.poll();
        polling_here = nullptr;
        if (auto job = std::exchange(next_here, nullptr))
          return leave_with(job);
        if (found) {
          if (auto job = try_take())
            return leave_with(job);
          until = clock_type::now() + data.idle_spin; // busy: keep polling
          continue;
        }
        __builtin_ia32_pause();
        if (polls % 64 != 0)
          continue;
        // No sched_yield: on a busy machine it hands the CPU to whatever
        // else is runnable (a compiler, another process) for the rest of
        // its time slice, and a frame waits milliseconds for its poller
        // (docs/benchmarks.md, "Spinning without yielding"). The poll ends
        // after idle_spin; the scheduler's preemption serves the threads
        // that do the work.
        if (clock_type::now() >= until)
          break;
      }
      // Tiers that do their I/O on threads of their own when nobody polls
      // take it back now, not when they miss the next poll.
      for (auto& each : data.pollers)
        if (each.stopped)
          each.stopped();
    }
    std::unique_lock guard{data.lock};
    if (poller)
      data.polling.store(false, std::memory_order_release);
    data.sleepers.fetch_add(1, std::memory_order_acq_rel);
    data.cv.wait(guard, [&] { return !data.queue.empty(); });
    data.sleepers.fetch_sub(1, std::memory_order_acq_rel);
    return take_front(data);
  }

  template <class Worker, class UnaryFunction>
  void foreach_resumable(Worker*, UnaryFunction) {
  }

  template <class Coordinator, class UnaryFunction>
  void foreach_central_resumable(Coordinator* self, UnaryFunction f) {
    auto& data = d(self);
    std::unique_lock guard{data.lock};
    while (!data.queue.empty())
      f(take_front(data));
  }

private:
  // While this thread polls for a scheduler: its data, and the first job the
  // poll made runnable.
  static inline thread_local coordinator_data* polling_here = nullptr;
  static inline thread_local caf::resumable* next_here = nullptr;

  static caf::resumable* take_front(coordinator_data& data) {
    auto job = data.queue.front();
    data.queue.pop_front();
    data.queued.fetch_sub(1, std::memory_order_relaxed);
    return job;
  }
};

} // namespace

void use_polling_scheduler(caf::actor_system_config& config,
                           std::chrono::nanoseconds idle_spin,
                           std::vector<poller> pollers) {
  config.module_factories.push_back(
    [idle_spin, pollers = std::move(pollers)](
      caf::actor_system& sys) -> caf::actor_system::module* {
      auto* scheduler = new caf::scheduler::coordinator<polling_sharing>(sys);
      scheduler->data().idle_spin = idle_spin;
      scheduler->data().pollers = pollers;
      return scheduler;
    });
}

} // namespace courier::detail

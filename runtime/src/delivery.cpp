#include "delivery.hpp"

#include <caf/actor_cast.hpp>
#include <caf/actor_system.hpp>
#include <caf/execution_unit.hpp>
#include <caf/local_actor.hpp>
#include <caf/resumable.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

#include "node_impl.hpp"

namespace courier::detail {

delivery_class class_of(const letter&) noexcept {
  // The durable issue decides here (a durable option on the letter), and
  // deliver_post sends durable letters to the store instead of the route.
  return delivery_class::express;
}

namespace {

caf::message_priority lane_of(const letter& msg) noexcept {
  return msg.priority >= urgent_priority ? caf::message_priority::high
                                         : caf::message_priority::normal;
}

} // namespace

void deliver_post(const route& to, letter msg, caf::local_actor* from) {
  switch (class_of(msg)) {
    case delivery_class::express: {
      auto id = caf::make_message_id(lane_of(msg));
      if (from != nullptr)
        to.handle->eq_impl(id, from->ctrl(), from->context(), std::move(msg));
      else
        to.handle->eq_impl(id, nullptr, nullptr, std::move(msg));
      return;
    }
  }
}

namespace {

/// The calling thread, lent to the actor its letter made runnable (the
/// CAF execution unit that actor runs on meanwhile): the first job it is
/// given it keeps for run(); any other goes to the scheduler.
class lent_thread final : public caf::execution_unit {
public:
  explicit lent_thread(caf::actor_system& system)
    : caf::execution_unit(&system) {}

  void exec_later(caf::resumable* job) override {
    if (job_ == nullptr && !running_) {
      job_ = job;
      return;
    }
    system().scheduler().enqueue(job);
  }

  /// Runs the job it kept, for one message, as a scheduler's worker
  /// would, and hands it back to the scheduler if it has more.
  void run() {
    if (job_ == nullptr)
      return;
    running_ = true;
    switch (job_->resume(this, 1)) {
      case caf::resumable::resume_later:
        system().scheduler().enqueue(job_);
        break;
      case caf::resumable::awaiting_message:
      case caf::resumable::done:
      case caf::resumable::shutdown_execution_unit:
        caf::intrusive_ptr_release(job_);
        break;
    }
    job_ = nullptr;
  }

private:
  caf::resumable* job_ = nullptr;
  bool running_ = false;
};

} // namespace

void deliver_here(caf::actor_system& system, const route& to, letter msg) {
  lent_thread here{system};
  to.handle->eq_impl(caf::make_message_id(lane_of(msg)), nullptr, &here,
                     std::move(msg));
  here.run();
}

void deliver_request(node_impl& node, const route& to, letter msg,
                     caf::local_actor& from, caf::message_id id, bool direct) {
  switch (class_of(msg)) {
    case delivery_class::express: {
      const bool elsewhere = !to.slot->node.empty();
      if (elsewhere && direct && to.link
          && request_direct(*to.link, msg,
                            caf::actor_cast<caf::strong_actor_ptr>(&from), id))
        return;
      msg.charge = node.charge_request(to, msg.payload);
      to.handle->eq_impl(id, from.ctrl(), from.context(), std::move(msg));
      return;
    }
  }
}

} // namespace courier::detail

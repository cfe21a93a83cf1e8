#include "delivery.hpp"

#include <caf/actor_cast.hpp>
#include <caf/local_actor.hpp>

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

// The gRPC services actors declare at spawn (spawn_options::services): the
// node checks that the program knows each service, publishes it with the
// actor's name (and its .proto among the type files) in the node's record,
// and withdraws it when the name is released for good. Gateways anywhere
// read them from the records (node::served_services) and serve the
// services' methods by sending to the actors (docs/gateway.md).

#include <algorithm>

#include <google/protobuf/descriptor.h>

#include "node_impl.hpp"

namespace courier::detail {

expected<std::vector<const google::protobuf::ServiceDescriptor*>>
node_impl::find_services(const spawn_options& options) {
  std::vector<const google::protobuf::ServiceDescriptor*> found;
  for (const auto& name : options.services) {
    if (!valid_type_name(name))
      return error{errc::invalid_argument,
                   quoted(name)
                     + " is not a gRPC service's full name (package.Service)"};
    const auto* service
      = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
        name);
    if (service == nullptr)
      return error{errc::not_found,
                   "the service " + quoted(name)
                     + " is unknown to this program (is the generated code "
                       "of its .proto linked in?)"};
    if (std::find(found.begin(), found.end(), service) == found.end())
      found.push_back(service);
  }
  return found;
}

void node_impl::declare_services(
  const std::shared_ptr<name_slot>& slot,
  std::vector<const google::protobuf::ServiceDescriptor*> services) {
  if (services.empty())
    return;
  {
    std::unique_lock guard{types_mu_};
    // The actor may have stopped before its spawn got here: its name is
    // gone, and so must its services be.
    if (slot->services_withdrawn)
      return;
    for (const auto* service : services)
      served_.push_back({slot.get(), slot->name, service});
    ++types_version_;
  }
  if (dir_)
    publish_record();
}

void node_impl::withdraw_services(name_slot& slot) {
  if (slot.options.services.empty())
    return; // most actors: no lock taken when they stop
  bool removed = false;
  {
    std::unique_lock guard{types_mu_};
    slot.services_withdrawn = true;
    removed = std::erase_if(served_,
                            [&](const served_service& served) {
                              return served.slot == &slot;
                            })
              > 0;
    if (removed)
      ++types_version_;
  }
  if (!removed || !dir_)
    return;
  {
    // A node shutting down takes its whole record away.
    std::shared_lock guard{mu_};
    if (stopping_)
      return;
  }
  publish_record();
}

std::vector<service_info> node_impl::served_services() const {
  std::vector<service_info> out;
  {
    std::shared_lock guard{types_mu_};
    for (const auto& served : served_)
      out.push_back(
        {served.descriptor->full_name(), served.actor, config_.name});
  }
  if (dir_)
    for (const auto& record : dir_->nodes())
      if (record.name() != config_.name)
        for (const auto& served : record.services())
          out.push_back({served.service(), served.actor(), record.name()});
  auto key = [](const service_info& s) {
    return std::tie(s.service, s.node, s.actor);
  };
  std::sort(out.begin(), out.end(),
            [&](const auto& a, const auto& b) { return key(a) < key(b); });
  out.erase(
    std::unique(out.begin(), out.end(),
                [&](const auto& a, const auto& b) { return key(a) == key(b); }),
    out.end());
  return out;
}

} // namespace courier::detail

#include "actor_services.hpp"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

namespace courier::gateway {

namespace {

/// A unary call to a service an actor serves: read the one request, ask
/// the actor, write its reply. The request's continuation may come after
/// the call is gone: both meet under a lock in a state that outlives it.
class service_call final : public grpc::ServerGenericBidiReactor {
public:
  service_call(node& host, requester& asker, std::shared_ptr<call_book> book,
               expected<actor_services::route> to, deadline until,
               trace_context trace)
    : host_(host), asker_(asker), book_(std::move(book)), until_(until),
      trace_(trace) {
    state_ = std::make_shared<shared>();
    state_->call = this;
    if (!to) {
      finish(status_of(to.error()));
      return;
    }
    to_ = std::move(*to);
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok)
      return finish({grpc::StatusCode::INVALID_ARGUMENT,
                     "the call ended before its request"});
    auto msg = parse();
    if (!msg)
      return finish(status_of(msg.error()));
    auto asked = ask(
      host_, asker_, to_.destination, *msg, until_, trace_,
      [state = state_, book = book_](expected<message> reply) {
        std::lock_guard guard{state->mu};
        if (state->call == nullptr || state->finished)
          return book->drop(); // the client cancelled: nobody to tell
        state->finished = true;
        book->count();
        if (!reply)
          return state->call->Finish(status_of(reply.error()));
        std::string bytes;
        (*reply)->SerializeToString(&bytes);
        grpc::Slice slice{bytes};
        state->out = grpc::ByteBuffer{&slice, 1};
        state->call->StartWriteAndFinish(&state->out, grpc::WriteOptions{},
                                         grpc::Status::OK);
      });
    if (!asked)
      finish(status_of(asked.error()));
  }

  void OnCancel() override {
    finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      std::lock_guard guard{state_->mu};
      state_->call = nullptr;
    }
    delete this;
  }

private:
  using shared = meeting<service_call, grpc::ByteBuffer>;

  /// The request as the method's input type: a generated message when the
  /// program has the service, else a dynamic one of the serving node's
  /// descriptors.
  expected<message> parse() {
    const auto* input = to_.method->input_type();
    std::shared_ptr<google::protobuf::Message> msg;
    if (to_.descriptors)
      msg = to_.descriptors->make(input);
    else
      msg.reset(google::protobuf::MessageFactory::generated_factory()
                  ->GetPrototype(input)
                  ->New());
    if (!msg->ParseFromString(bytes_of(request_)))
      return error{errc::invalid_argument,
                   "the request is not a valid " + input->full_name()};
    if (to_.descriptors) {
      // The reply comes back through this node, which parses it with a
      // type it knows: the serving node's, when the program lacks it.
      const auto& output = to_.method->output_type()->full_name();
      if (!host_.register_type(output))
        if (auto imported = host_.import_types(to_.node); !imported)
          return imported.error();
    }
    return message{std::move(msg)};
  }

  void finish(const grpc::Status& status) {
    std::lock_guard guard{state_->mu};
    if (state_->finished)
      return;
    state_->finished = true;
    book_->count();
    Finish(status);
  }

  node& host_;
  requester& asker_;
  std::shared_ptr<call_book> book_;
  deadline until_;
  trace_context trace_;
  actor_services::route to_;
  grpc::ByteBuffer request_;
  std::shared_ptr<shared> state_;
};

} // namespace

actor_services::actor_services(node& host,
                               std::map<std::string, std::string> configured,
                               std::vector<std::string> own, requester& asker,
                               std::shared_ptr<call_book> book,
                               gateway_seam& gateway, reflection_limits limits)
  : host_(host), configured_(std::move(configured)), own_(std::move(own)),
    asker_(asker), book_(std::move(book)), gateway_(gateway), limits_(limits),
    index_(host) {}

grpc::ServerGenericBidiReactor*
actor_services::CreateReactor(grpc::GenericCallbackServerContext* call) {
  if (is_reflection(call->method()))
    return new_reflection_call(call, *this, limits_);
  auto to = route_of(call->method());
  // A call to a service is a send to its actor, judged before a byte of
  // the request is read.
  if (to)
    if (auto no = gateway_.refused(*call, to->actor, verbs::send))
      to = *no;
  return new service_call(host_, asker_, book_, std::move(to),
                          gateway_.deadline_of(*call), trace_of(*call));
}

expected<actor_services::route>
actor_services::route_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (path.size() < 4 || path[0] != '/' || slash == 0
      || slash + 1 >= path.size())
    return error{errc::unimplemented, "no such method: " + path};
  auto service = path.substr(1, slash - 1);
  auto method_name = path.substr(slash + 1);
  route out;
  if (auto mapped = configured_.find(service); mapped != configured_.end()) {
    out.destination = mapped->second;
    out.actor = mapped->second.substr(0, mapped->second.find('@'));
  } else {
    auto servers = index_.servers_of(service);
    if (servers.empty())
      return error{errc::unimplemented,
                   "no actor serves " + service
                     + ": none is configured for it, and no actor declared "
                       "it at spawn"};
    const auto& chosen = servers.front();
    out.actor = chosen.actor;
    out.node = chosen.node;
    out.destination = chosen.node == host_.name()
                        ? chosen.actor
                        : chosen.actor + "@" + chosen.node;
  }
  const auto* descriptor
    = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      service);
  if (descriptor == nullptr) {
    // Not compiled in: the serving node's own word for its methods.
    if (out.node.empty())
      out.node = holder_of(host_, out.destination);
    if (out.node.empty())
      return error{errc::not_found, "no actor named '" + out.destination
                                      + "' (it serves " + service + ")"};
    auto set = index_.descriptors_of(out.node);
    if (!set)
      return std::move(set).error();
    descriptor = (*set)->pool().FindServiceByName(service);
    if (descriptor == nullptr)
      return error{errc::unimplemented, "node '" + out.node
                                          + "' publishes no descriptor of "
                                          + service};
    out.descriptors = std::move(*set);
  }
  out.method = descriptor->FindMethodByName(method_name);
  if (out.method == nullptr)
    return error{errc::unimplemented,
                 service + " has no method " + method_name};
  if (out.method->client_streaming() || out.method->server_streaming())
    return error{errc::unimplemented, "actors serve unary methods; " + service
                                        + "." + method_name + " streams"};
  return out;
}

std::vector<std::pair<std::string, bool>> actor_services::health() {
  std::map<std::string, bool> now;
  for (const auto& [service, actor] : configured_) {
    auto at = actor.find('@');
    auto holder = holder_of(host_, actor.substr(0, at));
    now[service]
      = !holder.empty()
        && (at == std::string::npos || holder == actor.substr(at + 1));
  }
  // A declared service is listed while its actor holds its name (the node
  // withdraws it when the actor stops, and its record goes with the node).
  for (const auto& served : *index_.declared())
    now[served.service] = true;
  std::vector<std::pair<std::string, bool>> out;
  std::lock_guard guard{health_mu_};
  for (const auto& service : reported_)
    if (!now.contains(service))
      out.emplace_back(service, false);
  for (const auto& [service, up] : now) {
    if (reported_.size() < service_index::max_services)
      reported_.insert(service);
    out.emplace_back(service, up);
  }
  return out;
}

std::vector<std::string>
actor_services::services_for(const grpc::ServerContextBase& caller) {
  std::set<std::string> names{own_.begin(), own_.end()};
  for (const auto& [service, actor] : configured_)
    if (gateway_.may_find(caller, actor.substr(0, actor.find('@'))))
      names.insert(service);
  for (const auto& served : *index_.declared())
    if (gateway_.may_find(caller, served.actor))
      names.insert(served.service);
  return {names.begin(), names.end()};
}

std::vector<std::shared_ptr<const descriptor_set>>
actor_services::published_sets() {
  // Configured services the program lacks are described by their actors'
  // nodes.
  std::vector<std::string> nodes;
  const auto* program = google::protobuf::DescriptorPool::generated_pool();
  for (const auto& [service, actor] : configured_)
    if (program->FindServiceByName(service) == nullptr)
      if (auto holder = holder_of(host_, actor); !holder.empty())
        nodes.push_back(std::move(holder));
  return index_.published_sets(std::move(nodes));
}

} // namespace courier::gateway

#pragma once

// Services served by actors (docs/gateway.md): every call the gateway's
// registered services do not take comes here, "/pkg.Service/Method". The
// service's actor is the one options::services maps it to, else one that
// declared it at spawn, here or on any node the directory knows
// (service_index.hpp); the method's descriptors come from the program when
// it was compiled with the service, else from what the serving node
// publishes. No code is generated per service. Reflection's stream comes
// here too (reflection.hpp), as gRPC lets a server have one generic
// service. Private to the gateway's target.

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include "calls.hpp"
#include "courier/access.hpp"
#include "courier/courier.hpp"
#include "reflection.hpp"
#include "service_index.hpp"

namespace courier::gateway {

/// What the services need of the gateway that holds them: its rules and
/// its deadlines.
///
/// Thread safety: called from gRPC's threads, concurrently.
class gateway_seam {
public:
  virtual ~gateway_seam() = default;

  /// Why the caller may not use `verb` on `name` (counted and logged);
  /// nothing if it may.
  virtual std::optional<error> refused(const grpc::ServerContextBase& call,
                                       std::string_view name, verbs verb)
    = 0;

  /// Whether the caller may find `name` (for listings: not counted).
  virtual bool may_find(const grpc::ServerContextBase& call,
                        std::string_view name) const = 0;

  /// The call's deadline, or the gateway's default when it has none.
  virtual deadline
  deadline_of(const grpc::CallbackServerContext& call) const = 0;
};

/// Thread safety: all member functions are thread-safe.
class actor_services final : public grpc::CallbackGenericService,
                             public reflection_source {
public:
  /// `configured`: options::services. `own`: the services the gateway's
  /// server registers itself (listed by reflection).
  actor_services(node& host, std::map<std::string, std::string> configured,
                 std::vector<std::string> own, requester& asker,
                 std::shared_ptr<call_book> book, gateway_seam& gateway,
                 reflection_limits limits);

  grpc::ServerGenericBidiReactor*
  CreateReactor(grpc::GenericCallbackServerContext* call) override;

  /// Each service actors serve, configured or declared, and whether one
  /// of its actors is up; a service that was listed before and has no
  /// actor now is listed NOT_SERVING (at most max_services names are
  /// remembered).
  std::vector<std::pair<std::string, bool>> health();

  // reflection_source
  std::vector<std::string>
  services_for(const grpc::ServerContextBase& caller) override;
  std::vector<std::shared_ptr<const descriptor_set>> published_sets() override;

  /// A unary method of a service and the actor that answers it.
  struct route {
    /// Where the request goes: "actor" here, "actor@node" elsewhere, or
    /// as options::services says.
    std::string destination;
    /// The name the rules judge (the actor's, without its node).
    std::string actor;
    const google::protobuf::MethodDescriptor* method = nullptr;
    /// The pool the method comes from, published by node `node`; null for
    /// the program's own.
    std::shared_ptr<const descriptor_set> descriptors;
    std::string node;
  };

  /// The route of a call's path, or why not (UNIMPLEMENTED for a service
  /// nobody serves, a method it lacks, a streaming method).
  expected<route> route_of(const std::string& path);

private:
  node& host_;
  const std::map<std::string, std::string> configured_;
  const std::vector<std::string> own_;
  requester& asker_;
  std::shared_ptr<call_book> book_;
  gateway_seam& gateway_;
  reflection_limits limits_;
  service_index index_;
  std::mutex health_mu_;
  std::set<std::string> reported_; // guarded by health_mu_
};

} // namespace courier::gateway

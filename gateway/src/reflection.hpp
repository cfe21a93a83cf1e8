#pragma once

// gRPC server reflection (grpc.reflection.v1alpha.ServerReflection and
// grpc.reflection.v1.ServerReflection, wire-identical), answered by the
// gateway itself rather than gRPC's plug-in, which knows only the services
// registered in the program: the list includes every service actors serve
// anywhere in the cluster, and files come from the program's descriptors
// and from those the serving nodes publish. Private to the gateway's
// target.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

namespace courier::gateway {

class descriptor_set;

/// Where reflection's answers come from.
///
/// Thread safety: called from gRPC's threads, concurrently.
class reflection_source {
public:
  virtual ~reflection_source() = default;

  /// The services to list to this caller, sorted.
  virtual std::vector<std::string>
  services_for(const grpc::ServerContextBase& caller) = 0;

  /// Descriptor pools searched after the program's own, in order.
  virtual std::vector<std::shared_ptr<const descriptor_set>> published_sets()
    = 0;
};

/// The full names of the reflection services the gateway answers.
std::vector<std::string> reflection_services();

/// True for the method path of a reflection service this file answers.
bool is_reflection(std::string_view path);

/// How much one reflection stream may ask and get.
struct reflection_limits {
  /// The bytes of one response (file descriptors beyond them are left
  /// out: the client asks for them by name).
  std::size_t max_response = std::size_t{1} << 20;
  /// Requests per stream; one more ends it with RESOURCE_EXHAUSTED.
  std::size_t max_requests = 1024;
};

/// A reactor for one reflection stream: answers each request in turn,
/// then finishes when the client is done. It deletes itself.
grpc::ServerGenericBidiReactor*
new_reflection_call(grpc::GenericCallbackServerContext* call,
                    reflection_source& source, reflection_limits limits);

} // namespace courier::gateway

#include "calls.hpp"

#include <optional>
#include <vector>

namespace courier::gateway {

grpc::Status status_of(const error& e) {
  return grpc::Status{static_cast<grpc::StatusCode>(static_cast<int>(e.code())),
                      e.message()};
}

trace_context trace_of(grpc::CallbackServerContext& call) {
  const auto& metadata = call.client_metadata();
  std::optional<trace_context> given;
  if (auto found = metadata.find("traceparent"); found != metadata.end())
    given = trace_context::parse(
      std::string_view{found->second.data(), found->second.size()});
  auto trace = given ? *given : trace_context::start();
  call.AddInitialMetadata("traceparent", trace.traceparent());
  return trace;
}

std::string holder_of(node& host, const std::string& name) {
  auto at = name.find('@');
  if (at != std::string::npos)
    return name.substr(at + 1);
  for (const auto& local : host.names(name))
    if (local == name)
      return host.name();
  for (const auto& entry : host.machine_names(name))
    if (entry.actor == name)
      return entry.node;
  return {};
}

std::string bytes_of(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok())
    return out;
  for (const auto& slice : slices)
    out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return out;
}

} // namespace courier::gateway

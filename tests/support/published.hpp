#pragma once

// What a node publishes in the directory, as tests look at it.

#include <string>

#include <google/protobuf/descriptor.pb.h>

#include "courier/courier.hpp"

namespace courier::testing {

/// Whether the types node `node_name` publishes, as `n` reads them,
/// describe the gRPC service `service` (its full name).
inline bool publishes_service(node& n, const std::string& node_name,
                              const std::string& service) {
  auto files = n.published_types(node_name);
  if (!files)
    return false;
  for (const auto& bytes : *files) {
    google::protobuf::FileDescriptorProto file;
    if (!file.ParseFromString(bytes))
      return false;
    for (const auto& declared : file.service())
      if (file.package() + "." + declared.name() == service)
        return true;
  }
  return false;
}

} // namespace courier::testing

#include "reflection.hpp"

#include <deque>
#include <set>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>

#include "calls.hpp"
#include "grpc/reflection/v1/reflection.pb.h"
#include "service_index.hpp"

namespace courier::gateway {

namespace {

// v1alpha and v1 have the same messages under two packages: v1's classes
// read and write both.
namespace rf = grpc::reflection::v1;

constexpr std::string_view v1alpha_path
  = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo";
constexpr std::string_view v1_path
  = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

/// The pools a request looks in: the program's, then the published ones.
class pools {
public:
  explicit pools(reflection_source& source) : source_(source) {}

  /// The first file `found` returns one for, pool by pool.
  template <class Find>
  const google::protobuf::FileDescriptor* first(Find found) {
    if (const auto* file
        = found(*google::protobuf::DescriptorPool::generated_pool()))
      return file;
    if (!published_)
      published_ = source_.published_sets(); // read only when needed
    for (const auto& set : *published_)
      if (const auto* file = found(set->pool()))
        return file;
    return nullptr;
  }

  /// The pool holding message type `name`, or null.
  const google::protobuf::Descriptor* message_type(const std::string& name) {
    const google::protobuf::Descriptor* type = nullptr;
    first([&](const google::protobuf::DescriptorPool& pool)
            -> const google::protobuf::FileDescriptor* {
      type = pool.FindMessageTypeByName(name);
      return type != nullptr ? type->file() : nullptr;
    });
    return type;
  }

private:
  reflection_source& source_;
  std::optional<std::vector<std::shared_ptr<const descriptor_set>>> published_;
};

/// One reflection stream. Reads and writes alternate, so no two reactions
/// of it run at once.
class reflection_call final : public grpc::ServerGenericBidiReactor {
public:
  reflection_call(grpc::GenericCallbackServerContext* call,
                  reflection_source& source, reflection_limits limits)
    : call_(call), source_(source), limits_(limits) {
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) // the client is done (or gone)
      return Finish(grpc::Status::OK);
    if (++requests_ > limits_.max_requests)
      return Finish({grpc::StatusCode::RESOURCE_EXHAUSTED,
                     "a reflection stream takes at most "
                       + std::to_string(limits_.max_requests)
                       + " requests: open another"});
    rf::ServerReflectionRequest request;
    if (!request.ParseFromString(bytes_of(in_)))
      return Finish(
        {grpc::StatusCode::INVALID_ARGUMENT, "not a ServerReflectionRequest"});
    auto bytes = answer(request).SerializeAsString();
    grpc::Slice slice{bytes};
    out_ = grpc::ByteBuffer{&slice, 1};
    StartWrite(&out_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok)
      return Finish(grpc::Status::CANCELLED);
    StartRead(&in_);
  }

  void OnDone() override {
    delete this;
  }

private:
  rf::ServerReflectionResponse answer(const rf::ServerReflectionRequest& in) {
    rf::ServerReflectionResponse out;
    out.set_valid_host(in.host());
    *out.mutable_original_request() = in;
    pools where{source_};
    using request = rf::ServerReflectionRequest;
    switch (in.message_request_case()) {
      case request::kListServices:
        list(*out.mutable_list_services_response());
        break;
      case request::kFileByFilename:
        files(out, where.first([&](const auto& pool) {
          return pool.FindFileByName(in.file_by_filename());
        }),
              "no file named " + in.file_by_filename());
        break;
      case request::kFileContainingSymbol:
        files(out, where.first([&](const auto& pool) {
          return pool.FindFileContainingSymbol(in.file_containing_symbol());
        }),
              "no symbol named " + in.file_containing_symbol());
        break;
      case request::kFileContainingExtension: {
        const auto& ext = in.file_containing_extension();
        files(out,
              where.first([&](const google::protobuf::DescriptorPool& pool)
                            -> const google::protobuf::FileDescriptor* {
                const auto* type
                  = pool.FindMessageTypeByName(ext.containing_type());
                const auto* field
                  = type != nullptr
                      ? pool.FindExtensionByNumber(type, ext.extension_number())
                      : nullptr;
                return field != nullptr ? field->file() : nullptr;
              }),
              "no extension " + std::to_string(ext.extension_number()) + " of "
                + ext.containing_type());
        break;
      }
      case request::kAllExtensionNumbersOfType: {
        const auto& name = in.all_extension_numbers_of_type();
        const auto* type = where.message_type(name);
        if (type == nullptr) {
          refuse(out, grpc::StatusCode::NOT_FOUND, "no type named " + name);
          break;
        }
        std::vector<const google::protobuf::FieldDescriptor*> extensions;
        type->file()->pool()->FindAllExtensions(type, &extensions);
        auto* numbers = out.mutable_all_extension_numbers_response();
        numbers->set_base_type_name(type->full_name());
        for (const auto* field : extensions)
          numbers->add_extension_number(field->number());
        break;
      }
      default:
        refuse(out, grpc::StatusCode::UNIMPLEMENTED,
               "an empty or unknown reflection request");
    }
    return out;
  }

  void list(rf::ListServiceResponse& out) {
    std::size_t bytes = 0;
    for (auto& name : source_.services_for(*call_)) {
      bytes += name.size() + 4; // its tags and lengths
      if (bytes > limits_.max_response)
        break; // a client reaches the others by name
      out.add_service()->set_name(std::move(name));
    }
  }

  /// `file` and its imports, imports after it, as many as fit.
  void files(rf::ServerReflectionResponse& out,
             const google::protobuf::FileDescriptor* file,
             const std::string& missing) {
    if (file == nullptr)
      return refuse(out, grpc::StatusCode::NOT_FOUND, missing);
    auto* found = out.mutable_file_descriptor_response();
    std::set<const google::protobuf::FileDescriptor*> seen{file};
    std::deque<const google::protobuf::FileDescriptor*> next{file};
    std::size_t bytes = 0;
    while (!next.empty()) {
      const auto* at = next.front();
      next.pop_front();
      google::protobuf::FileDescriptorProto proto;
      at->CopyTo(&proto);
      auto serialized = proto.SerializeAsString();
      bytes += serialized.size() + 5;
      if (bytes > limits_.max_response && at != file)
        break; // the client asks for the rest by name
      found->add_file_descriptor_proto(std::move(serialized));
      for (int i = 0; i < at->dependency_count(); ++i)
        if (seen.insert(at->dependency(i)).second)
          next.push_back(at->dependency(i));
    }
  }

  static void refuse(rf::ServerReflectionResponse& out, grpc::StatusCode code,
                     const std::string& why) {
    auto* error = out.mutable_error_response();
    error->set_error_code(static_cast<int>(code));
    error->set_error_message(why);
  }

  grpc::GenericCallbackServerContext* call_;
  reflection_source& source_;
  reflection_limits limits_;
  std::size_t requests_ = 0;
  grpc::ByteBuffer in_;
  grpc::ByteBuffer out_;
};

} // namespace

std::vector<std::string> reflection_services() {
  return {"grpc.reflection.v1.ServerReflection",
          "grpc.reflection.v1alpha.ServerReflection"};
}

bool is_reflection(std::string_view path) {
  return path == v1alpha_path || path == v1_path;
}

grpc::ServerGenericBidiReactor*
new_reflection_call(grpc::GenericCallbackServerContext* call,
                    reflection_source& source, reflection_limits limits) {
  return new reflection_call(call, source, limits);
}

} // namespace courier::gateway

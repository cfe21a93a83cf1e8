#include "service_index.hpp"

#include <algorithm>
#include <functional>
#include <string_view>

#include <google/protobuf/descriptor.pb.h>

namespace courier::gateway {

namespace {

/// Protobuf logs what it cannot build; a peer's odd file is not worth a
/// line per call: the file is left out, and a call that needs it says so.
class quiet_errors final
  : public google::protobuf::DescriptorPool::ErrorCollector {
public:
  void AddError(const std::string&, const std::string&,
                const google::protobuf::Message*, ErrorLocation,
                const std::string&) override {}
};

std::size_t digest_of(const std::vector<std::string>& files) {
  std::size_t digest = files.size();
  for (const auto& file : files)
    digest = digest * 31 + std::hash<std::string_view>{}(file);
  return digest;
}

} // namespace

// -- descriptor_set -----------------------------------------------------------

std::shared_ptr<descriptor_set>
descriptor_set::build(const std::vector<std::string>& files) {
  std::shared_ptr<descriptor_set> set{new descriptor_set};
  quiet_errors errors;
  for (const auto& bytes : files) {
    google::protobuf::FileDescriptorProto proto;
    if (!proto.ParseFromString(bytes)
        || set->pool_.FindFileByName(proto.name()) != nullptr)
      continue;
    if (const auto* file = set->pool_.BuildFileCollectingErrors(proto, &errors))
      set->files_.push_back(file);
  }
  return set;
}

std::shared_ptr<google::protobuf::Message>
descriptor_set::make(const google::protobuf::Descriptor* type) const {
  // The deleter holds the set: a dynamic message needs its factory (and
  // the pool behind it) until it is gone.
  return {factory_.GetPrototype(type)->New(),
          [keep = shared_from_this()](google::protobuf::Message* msg) {
            delete msg;
          }};
}

// -- service_index
// -------------------------------------------------------------

service_index::service_index(node& host) : host_(host) {}

std::shared_ptr<const std::vector<service_info>>
service_index::declared(std::chrono::milliseconds max_age) {
  auto fresh = [&] {
    return declared_
           && std::chrono::steady_clock::now() - declared_read_ < max_age;
  };
  {
    std::lock_guard guard{mu_};
    if (fresh())
      return declared_;
  }
  // One caller reads the records; the others wait for its answer rather
  // than read them again.
  std::lock_guard refresh{refresh_mu_};
  {
    std::lock_guard guard{mu_};
    if (fresh())
      return declared_;
  }
  auto read = host_.served_services();
  bool too_many = read.size() > max_services;
  if (too_many)
    read.resize(max_services);
  auto shared
    = std::make_shared<const std::vector<service_info>>(std::move(read));
  std::lock_guard guard{mu_};
  declared_ = shared;
  declared_read_ = std::chrono::steady_clock::now();
  if (too_many && !said_too_many_)
    host_.log(log_level::warning,
              "the gateway serves the first " + std::to_string(max_services)
                + " services actors declared and leaves out the rest");
  said_too_many_ = too_many;
  return shared;
}

std::vector<service_info>
service_index::servers_of(const std::string& service) {
  auto servers = [&](const std::vector<service_info>& all) {
    auto first
      = std::lower_bound(all.begin(), all.end(), service,
                         [](const service_info& s, const std::string& name) {
                           return s.service < name;
                         });
    auto last = first;
    while (last != all.end() && last->service == service)
      ++last;
    return std::vector<service_info>(first, last);
  };
  auto found = servers(*declared());
  if (found.empty())
    found = servers(*declared(missing_ttl));
  std::vector<service_info> here, elsewhere;
  for (auto& server : found)
    (server.node == host_.name() ? here : elsewhere)
      .push_back(std::move(server));
  if (!elsewhere.empty()) {
    std::size_t turn = 0;
    {
      std::lock_guard guard{mu_};
      turn = turn_++;
    }
    std::rotate(elsewhere.begin(),
                elsewhere.begin()
                  + static_cast<std::ptrdiff_t>(turn % elsewhere.size()),
                elsewhere.end());
  }
  here.insert(here.end(), elsewhere.begin(), elsewhere.end());
  return here;
}

expected<std::shared_ptr<const descriptor_set>>
service_index::descriptors_of(const std::string& node_name) {
  const auto now = std::chrono::steady_clock::now();
  std::size_t known_digest = 0;
  bool known = false;
  {
    std::lock_guard guard{mu_};
    for (auto i = pools_.begin(); i != pools_.end(); ++i) {
      if (i->node != node_name)
        continue;
      pools_.splice(pools_.begin(), pools_, i);
      if (now - i->read < descriptors_ttl)
        return i->set;
      known_digest = i->digest;
      known = true;
      break;
    }
  }
  // Read and build outside the lock: other calls go on meanwhile.
  auto files = host_.published_types(node_name);
  if (!files)
    return std::move(files).error();
  auto digest = digest_of(*files);
  std::shared_ptr<const descriptor_set> set;
  if (!known || digest != known_digest)
    set = descriptor_set::build(*files);
  std::lock_guard guard{mu_};
  auto entry
    = std::find_if(pools_.begin(), pools_.end(),
                   [&](const pool_entry& e) { return e.node == node_name; });
  if (entry == pools_.end()) {
    if (!set) // evicted meanwhile: build it after all
      set = descriptor_set::build(*files);
    pools_.push_front({node_name, digest, set, now});
    if (pools_.size() > max_pools)
      pools_.pop_back();
    return set;
  }
  if (set) {
    entry->set = set;
    entry->digest = digest;
  }
  entry->read = now;
  return entry->set;
}

std::vector<std::shared_ptr<const descriptor_set>>
service_index::published_sets(std::vector<std::string> also) {
  std::vector<std::string> nodes;
  for (auto& name : also)
    if (name != host_.name()
        && std::find(nodes.begin(), nodes.end(), name) == nodes.end())
      nodes.push_back(std::move(name));
  for (const auto& served : *declared())
    if (served.node != host_.name()
        && std::find(nodes.begin(), nodes.end(), served.node) == nodes.end())
      nodes.push_back(served.node);
  std::vector<std::shared_ptr<const descriptor_set>> out;
  for (const auto& name : nodes) {
    if (out.size() >= max_pools)
      break;
    if (auto set = descriptors_of(name))
      out.push_back(std::move(*set));
  }
  return out;
}

} // namespace courier::gateway

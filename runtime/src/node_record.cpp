// What the node publishes about itself (its record: where it runs, each
// tier's endpoint, the types its actors handle), what it reads of other
// nodes' records, and the thin glue between the links and the seams for
// other nodes (peers.hpp, router.hpp).

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include <unistd.h>

#include <google/protobuf/descriptor.pb.h>

#include "node_impl.hpp"
#include "seed_directory.hpp"

namespace courier::detail {

namespace {

/// Adds `file` and its dependencies, dependencies first, to `out`.
void collect_files(const google::protobuf::FileDescriptor* file,
                   std::set<std::string>& seen,
                   std::vector<const google::protobuf::FileDescriptor*>& out) {
  if (!seen.insert(file->name()).second)
    return;
  for (int i = 0; i < file->dependency_count(); ++i)
    collect_files(file->dependency(i), seen, out);
  out.push_back(file);
}

} // namespace

expected<void> node_impl::open() {
  if (!config_.metrics_listen.empty()) {
    auto endpoint = metrics_endpoint::start(
      config_.metrics_listen, [this] { return to_prometheus(snapshot_metrics()); });
    if (!endpoint)
      return std::move(endpoint).error();
    endpoint_ = std::move(*endpoint);
  }
  if (!dir_)
    return {};
  auto identity = process_identity::current();
  {
    std::lock_guard guard{record_mu_};
    record_.set_name(config_.name);
    record_.set_pid(identity.pid);
    record_.set_uid(identity.uid);
    record_.set_gid(identity.gid);
    record_.set_session(identity.session);
    if (config_.host.empty()) {
      record_.set_boot_id(identity.boot_id);
      record_.set_host_id(identity.host_id);
      record_.set_netns(identity.netns);
    } else {
      // A configured host stands for all three.
      record_.set_host_id(config_.host);
      record_.set_boot_id("configured");
      record_.set_netns("configured");
    }
    record_.set_started_unix_ns(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::system_clock::now().time_since_epoch())
        .count());
  }
  if (auto warning = dir_->access_warning(); !warning.empty())
    log(config_.allowed_uids.empty() && config_.allowed_gids.empty()
          ? log_level::info
          : log_level::warning,
        warning);
  for (auto& [tier, impl] : transports_) {
    auto address = impl->listen(
      listen_context{config_.name, tier, dir_->local_dir()},
      [this, tier = tier](std::unique_ptr<link> conn) {
        peers_->accept(std::move(conn), tier);
      });
    if (!address)
      return error{address.code(), "the " + tier + " tier: "
                                     + address.error().message()};
    std::lock_guard guard{record_mu_};
    auto* endpoint = record_.add_endpoints();
    endpoint->set_tier(tier);
    endpoint->set_address(std::move(*address));
  }
  publish_record();
  if (auto* seeds = dynamic_cast<seed_directory*>(dir_.get())) {
    // What the seeds hold is asked over links, which exist from now on.
    seeds->start_asking([this](const std::string& node)
                          -> expected<seed_directory::answer> {
      auto link = peers_->link_to(node);
      if (!link)
        return std::move(link).error();
      seed_directory::answer out;
      auto names = names_over(*system_, link->proxy, "*",
                              deadline{2 * config_.handshake_timeout},
                              &out.published);
      if (!names)
        return std::move(names).error();
      out.names = std::move(*names);
      return out;
    });
  }
  // The node's own system actor answers tools (courier routes).
  auto system_actor = spawn(
    "courier.node." + config_.name,
    [this](context&) {
      return behavior{[this](const v1::MetricsQuery&) {
                        auto report = to_report(snapshot_metrics());
                        report.set_metrics_address(metrics_address());
                        return report;
                      },
                      [this](const v1::RoutesQuery&) {
        v1::RoutesReport report;
        report.set_node(config_.name);
        for (auto& r : routes()) {
          auto* out = report.add_routes();
          out->set_peer(r.peer);
          out->set_tier(r.tier);
          out->set_note(r.note);
          out->set_messages_out(r.messages_out);
          out->set_messages_in(r.messages_in);
        }
        return report;
      }};
    },
    {});
  if (!system_actor)
    return system_actor.error();
  return {};
}

expected<void>
node_impl::check_post_options(const post_options& options) const {
  if (options.priority > max_priority)
    return error{errc::invalid_argument,
                 "priority " + std::to_string(options.priority)
                   + " is over the maximum of 7"};
  if (options.tier.empty())
    return {};
  if (peers_->policy().has(options.tier))
    return {};
  return error{errc::invalid_argument,
               "tier " + quoted(options.tier) + " is not one of this node's"};
}

expected<backlog_charge>
node_impl::charge_backlog(const route& dest, const message& payload,
                          std::chrono::nanoseconds wait_for_room) const {
  if (!dest.backlog)
    return backlog_charge{};
  // An actor here counts posts (its limit is at least 1: none is 0, and
  // gets no backlog); a route elsewhere weighs them.
  const bool here = dest.slot->node.empty();
  std::size_t amount =
    here ? 1 : std::max<std::size_t>(payload->ByteSizeLong(), 1);
  auto limit = here
                 ? dest.slot->options.max_mailbox.value_or(config_.max_mailbox)
                 : config_.limits.max_queued;
  auto& queued = *dest.backlog;
  std::size_t before = 0;
  // seq_cst: see backlog::waiters.
  auto charged = [&] {
    before = queued.bytes.fetch_add(amount, std::memory_order_seq_cst);
    if (before == 0 || before + amount <= limit)
      return true;
    queued.bytes.fetch_sub(amount, std::memory_order_seq_cst);
    return false;
  };
  bool room = charged();
  if (!room && wait_for_room.count() > 0) {
    auto until = std::chrono::steady_clock::now() + wait_for_room;
    std::unique_lock lock{queued.room_mu};
    queued.room_at.store(limit / 2, std::memory_order_relaxed);
    queued.waiters.fetch_add(1, std::memory_order_seq_cst);
    while (!(room = charged())
           && queued.room_cv.wait_until(lock, until) != std::cv_status::timeout)
      ;
    queued.waiters.fetch_sub(1, std::memory_order_relaxed);
  }
  if (!room) {
    auto waiting = here ? quoted(dest.slot->name) + " has "
                            + std::to_string(before) + " posts waiting"
                        : "the route to node " + quoted(dest.slot->node)
                            + " has " + std::to_string(before)
                            + " bytes waiting";
    return error{errc::resource_exhausted,
                 waiting + " (limit " + std::to_string(limit)
                   + "): post again later"};
  }
  return backlog_charge{dest.backlog, amount};
}

backlog_charge node_impl::charge_request(const route& dest,
                                         const message& payload) const {
  if (!dest.backlog || dest.slot->node.empty())
    return backlog_charge{};
  auto amount = std::max<std::size_t>(payload->ByteSizeLong(), 1);
  dest.backlog->bytes.fetch_add(amount, std::memory_order_relaxed);
  return backlog_charge{dest.backlog, amount};
}

expected<route> node_impl::resolve_local(std::string_view name) {
  std::shared_lock guard{mu_};
  return resolve_locked(name);
}

void node_impl::adopt_link(const std::string& node, caf::actor proxy,
                           std::shared_ptr<link_info> info) {
  peers_->adopt(node, std::move(proxy), std::move(info));
}

expected<caf::actor> node_impl::open_side_link(const std::string& node,
                                               const std::string& tier) {
  return peers_->open_side_link(node, tier);
}

void node_impl::drop_link(const std::string& node, const caf::actor& proxy) {
  peers_->drop(node, proxy);
  router_->forget_link(node, proxy);
}

void node_impl::forget_remote_name(const std::string& actor,
                                   const std::string& node) {
  router_->forget_name(actor, node);
}

v1::NodeRecord node_impl::record() const {
  std::lock_guard guard{record_mu_};
  return record_;
}

std::vector<const google::protobuf::FileDescriptor*>
node_impl::type_files() const {
  std::shared_lock guard{types_mu_};
  return type_files_locked();
}

std::vector<const google::protobuf::FileDescriptor*>
node_impl::type_files_locked() const {
  std::vector<const google::protobuf::FileDescriptor*> files;
  std::set<std::string> seen;
  for (auto& [name, proto] : types_)
    collect_files(proto->GetDescriptor()->file(), seen, files);
  // A gateway builds a served service's methods from its file.
  for (const auto& served : served_)
    collect_files(served.descriptor->file(), seen, files);
  return files;
}

void node_impl::publish_record() {
  std::vector<const google::protobuf::FileDescriptor*> files;
  std::set<std::pair<std::string, std::string>> services; // sorted
  std::uint64_t version = 0;
  {
    std::shared_lock guard{types_mu_};
    files = type_files_locked();
    for (const auto& served : served_)
      services.emplace(served.descriptor->full_name(), served.actor);
    version = types_version_;
  }
  std::lock_guard guard{record_mu_};
  // Two threads may publish at once: the older snapshot must not be the
  // one that stays (a withdrawn service would be listed again).
  if (version < published_version_)
    return;
  published_version_ = version;
  record_.clear_type_files();
  published_files_.clear();
  for (const auto* file : files) {
    google::protobuf::FileDescriptorProto proto;
    file->CopyTo(&proto);
    proto.SerializeToString(record_.add_type_files());
    published_files_.push_back(file->name());
  }
  record_.clear_services();
  for (const auto& [service, actor] : services) {
    auto* out = record_.add_services();
    out->set_service(service);
    out->set_actor(actor);
  }
  if (auto written = dir_->publish(record_); !written)
    log(log_level::error, "cannot publish the node record: "
                            + written.error().message());
}

expected<std::vector<std::string>>
node_impl::published_types(std::string_view node_name) const {
  if (node_name == config_.name) {
    // This node's own, whether or not it publishes a record.
    std::vector<std::string> out;
    for (const auto* file : type_files()) {
      google::protobuf::FileDescriptorProto proto;
      file->CopyTo(&proto);
      proto.SerializeToString(&out.emplace_back());
    }
    return out;
  }
  if (!dir_)
    return error{errc::failed_precondition, "this node joined no directory"};
  auto peer = dir_->read_node(node_name);
  if (!peer)
    return std::move(peer).error();
  return std::vector<std::string>(peer->type_files().begin(),
                                  peer->type_files().end());
}

expected<void> node_impl::import_types(std::string_view node_name) {
  if (!dir_)
    return error{errc::failed_precondition, "this node joined no directory"};
  auto peer = dir_->read_node(node_name);
  if (!peer)
    return std::move(peer).error();
  std::unique_lock guard{types_mu_};
  if (!imported_pool_) {
    imported_pool_ = std::make_unique<google::protobuf::DescriptorPool>();
    auto factory = std::make_unique<google::protobuf::DynamicMessageFactory>(
      imported_pool_.get());
    imported_factory_ = std::move(factory);
  }
  for (const auto& bytes : peer->type_files()) {
    google::protobuf::FileDescriptorProto proto;
    if (!proto.ParseFromString(bytes))
      return error{errc::invalid_argument, "node " + quoted(node_name)
                                             + " published a malformed type"};
    if (imported_pool_->FindFileByName(proto.name()) != nullptr)
      continue;
    const auto* file = imported_pool_->BuildFile(proto);
    if (file == nullptr)
      return error{errc::invalid_argument,
                   "cannot use the types of node " + quoted(node_name)
                     + " (file " + proto.name() + ")"};
    for (int i = 0; i < file->message_type_count(); ++i) {
      const auto* type = file->message_type(i);
      types_.try_emplace(type->full_name(),
                         imported_factory_->GetPrototype(type));
    }
  }
  return {};
}

std::vector<node_info> node_impl::nodes() const {
  std::vector<node_info> out;
  if (!dir_)
    return out;
  for (auto& record : dir_->nodes()) {
    node_info info{record.name(), record.pid(), record.uid(), record.session(),
                   {}, {},
                   record.host_id() + "/" + record.boot_id() + "/"
                     + record.netns()};
    for (auto& endpoint : record.endpoints()) {
      info.tiers.push_back(endpoint.tier());
      info.addresses.push_back(endpoint.address());
    }
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<name_info> node_impl::machine_names(std::string_view pattern) const {
  std::vector<name_info> out;
  if (!dir_) {
    for (auto& name : names(pattern))
      out.push_back({name, config_.name});
    return out;
  }
  // The directory is readable by every user; what another user's node
  // lets us see is for that node to say (its rules, verb find).
  const auto own_uid = ::getuid();
  std::map<std::string, bool> asked; // node -> the names it lets us see
  std::set<std::pair<std::string, std::string>> visible;
  auto self = const_cast<node_impl*>(this); // links are made on the way
  for (auto& [actor, owner] : dir_->names()) {
    if (!glob_match(pattern, actor))
      continue;
    if (owner != config_.name && !asked.contains(owner)) {
      auto record = dir_->read_node(owner);
      bool same_user = record && record->uid() == own_uid;
      asked[owner] = same_user;
      if (!same_user) {
        auto link = record ? self->peers_->link_to(owner)
                           : expected<peer_link>{record.error()};
        auto seen = link ? names_over(*system_, link->proxy,
                                      std::string{pattern},
                                      deadline{2 * config_.handshake_timeout})
                         : expected<std::vector<std::string>>{link.error()};
        if (!seen) {
          log(log_level::info, "the names of node " + quoted(owner)
                                 + " are left out: "
                                 + seen.error().message());
          continue;
        }
        for (auto& name : *seen)
          visible.emplace(std::move(name), owner);
      }
    }
    if (owner == config_.name || asked[owner]
        || visible.contains({actor, owner}))
      out.push_back({actor, owner});
  }
  return out;
}

void node_impl::report_refusal(const link_access& who,
                               std::string_view peer_node, verbs verb,
                               std::string_view target,
                               const trace_context& trace) {
  if (auto line = refusals_.count(who.principal(), peer_node, verb, target))
    log_event(log_level::warning, *line,
              {target, peer_node, "permission_denied", trace});
}

std::vector<std::string> node_impl::visible_names(std::string_view pattern,
                                                  const link_access& who) {
  auto out = names(pattern);
  if (!who.unrestricted())
    std::erase_if(out, [&](const std::string& name) {
      return !who.allows(name, verbs::find);
    });
  return out;
}

std::vector<route_info> node_impl::routes() const {
  return peers_->routes();
}

} // namespace courier::detail

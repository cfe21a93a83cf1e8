// The node's side of other nodes: listening, connecting, authorizing,
// resolving names held elsewhere, and what the node publishes about itself.

#include <algorithm>
#include <chrono>
#include <set>

#include <unistd.h>

#include <google/protobuf/descriptor.pb.h>

#include "node_impl.hpp"

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
    record_.set_boot_id(identity.boot_id);
    record_.set_host_id(identity.host_id);
    record_.set_endpoint(dir_->socket_path(config_.name));
    record_.set_started_unix_ns(
      std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::system_clock::now().time_since_epoch())
        .count());
  }
  for (auto& [tier, impl] : transports_) {
    {
      std::lock_guard guard{record_mu_};
      record_.add_tiers(tier);
    }
    auto listening = impl->listen(
      dir_->endpoint(config_.name, tier),
      [this, tier = tier](std::unique_ptr<link> conn) {
        accept(std::move(conn), tier);
      });
    if (!listening)
      return listening;
  }
  publish_record();
  // The node's own system actor answers tools (courier routes).
  auto system_actor = spawn(
    "courier.node." + config_.name,
    [this](context&) {
      return behavior{[this](const v1::RoutesQuery&) {
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

void node_impl::accept(std::unique_ptr<link> conn, std::string tier) {
  const auto& peer = conn->peer();
  bool allowed = peer.uid == ::getuid()
                 || std::find(config_.allowed_uids.begin(),
                              config_.allowed_uids.end(), peer.uid)
                      != config_.allowed_uids.end()
                 || std::find(config_.allowed_gids.begin(),
                              config_.allowed_gids.end(), peer.gid)
                      != config_.allowed_gids.end();
  if (!allowed) {
    // Refused before a single byte is read from the peer; it is told why.
    auto why = "uid " + std::to_string(peer.uid) + " (pid "
               + std::to_string(peer.pid) + ") may not link to node '"
               + config_.name + "'";
    log(log_level::warning, "refused a " + tier + " link: " + why);
    v1::HelloAck ack;
    *ack.mutable_node()->mutable_name() = config_.name;
    ack.mutable_refused()->set_code(
      static_cast<std::uint32_t>(errc::permission_denied));
    ack.mutable_refused()->set_message(why);
    v1::Envelope env;
    env.set_kind(v1::KIND_SYSTEM);
    env.mutable_sender()->set_node(config_.name);
    env.set_type_name(v1::HelloAck::descriptor()->full_name());
    ack.SerializeToString(env.mutable_payload());
    (void)conn->write(env.SerializeAsString());
    conn->close(); // after that one frame
    return;
  }
  // Each link that has not said hello holds a read buffer and a hello-sized
  // frame at most (docs/operations.md): their number is bounded too.
  if (half_open_.fetch_add(1, std::memory_order_relaxed)
      >= max_half_open_links) {
    end_half_open();
    log(log_level::warning,
        "closed a new " + tier + " link from uid " + std::to_string(peer.uid)
          + " pid " + std::to_string(peer.pid) + " at once: "
          + std::to_string(max_half_open_links)
          + " accepted links have not said hello yet (the limit)");
    conn->close();
    return;
  }
  auto info = std::make_shared<link_info>();
  info->tier = tier;
  info->note = peer.uid == ::getuid() ? "accepted from this user"
                                      : "accepted from uid "
                                          + std::to_string(peer.uid);
  std::unique_lock guard{mu_};
  if (stopping_) {
    end_half_open();
    conn->close();
    return;
  }
  // The proxy ends the half-open count (end_half_open) at the hello.
  auto proxy = spawn_link_proxy(*this, std::move(conn), info, std::nullopt);
  proxies_.push_back(proxy.address());
}

expected<std::unique_ptr<link>>
node_impl::connect_peer(const v1::NodeRecord& peer, std::string_view preferred,
                        link_info& info) {
  const auto& node = peer.name();
  auto self = record();
  auto tier_of = [this](std::string_view name) -> transport* {
    for (auto& [tier, impl] : transports_)
      if (tier == name)
        return impl.get();
    return nullptr;
  };
  auto offers = [&](std::string_view name) {
    return std::find(peer.tiers().begin(), peer.tiers().end(), name)
           != peer.tiers().end();
  };
  auto endpoint = [&](std::string_view tier) {
    return tier == "pipe" ? peer.endpoint()
                          : dir_->endpoint(node, std::string{tier});
  };
  auto attempt = [&](std::string_view tier) {
    return tier_of(tier)->connect(endpoint(tier),
                                  deadline{config_.handshake_timeout});
  };
  expected<std::unique_ptr<link>> conn{errc::unavailable, "no tier tried"};
  // An override (configuration or message) goes first; the automatic
  // choice stays the fallback, and the note says what happened.
  std::string override_note;
  bool tried_preferred = false;
  if (!preferred.empty()) {
    if (!tier_of(preferred) || !offers(preferred))
      override_note = std::string{preferred} + " is not configured on both sides";
    else if (tried_preferred = true, conn = attempt(preferred); conn) {
      info.tier = std::string{preferred};
      info.note = "chosen by configuration";
      return conn;
    } else {
      override_note = std::string{preferred} + " failed ("
                      + conn.error().message() + ")";
    }
    log(log_level::warning, "route to " + quoted(node) + ": " + override_note
                              + "; choosing automatically");
    override_note += "; ";
  }
  // The automatic choice: shared memory for the same user on the same boot,
  // when both sides have it; the named pipe otherwise, or when shared memory
  // fails.
  std::string shm_note;
  if (peer.uid() != self.uid())
    shm_note = "another user (uid " + std::to_string(peer.uid()) + ")";
  else if (peer.boot_id() != self.boot_id())
    shm_note = "another boot of the machine";
  else if (!tier_of("shm") || !offers("shm"))
    shm_note = "same user; shared memory is not configured on both sides";
  else if (!(tried_preferred && preferred == "shm")) {
    if (conn = attempt("shm"); conn) {
      info.tier = "shm";
      info.note = override_note + "same user, same machine";
      return conn;
    }
    shm_note = "shared memory failed (" + conn.error().message()
               + "); using the named pipe";
    log(log_level::warning, "route to " + quoted(node) + ": " + shm_note);
  }
  if (tried_preferred && preferred == "pipe")
    return conn; // tried already, and failed
  if (tier_of("pipe") == nullptr)
    return error{errc::unavailable, "no tier can reach node " + quoted(node)
                                      + ": " + override_note + shm_note};
  conn = attempt("pipe");
  info.tier = "pipe";
  info.note = override_note
              + (peer.session() != self.session() && shm_note.empty()
                   ? "another login session"
                   : shm_note);
  return conn;
}

expected<caf::actor> node_impl::link_to(const std::string& node) {
  auto existing = [&]() -> caf::actor {
    std::shared_lock guard{mu_};
    if (auto i = links_.find(node); i != links_.end())
      return i->second.proxy;
    return caf::actor{};
  };
  if (auto proxy = existing())
    return proxy;
  std::lock_guard connecting{connect_mu_};
  if (auto proxy = existing())
    return proxy;
  auto peer = dir_->read_node(node);
  if (!peer)
    return std::move(peer).error();
  std::string_view preferred;
  for (auto& [pattern, tier] : config_.preferred_tiers)
    if (glob_match(pattern, node)) {
      preferred = tier;
      break;
    }
  auto info = std::make_shared<link_info>();
  info->peer = node;
  auto conn = connect_peer(*peer, preferred, *info);
  if (!conn) {
    if (!dir_->alive(node))
      dir_->reap(node);
    return error{errc::unavailable, "node " + quoted(node)
                                      + " is unreachable: "
                                      + conn.error().message()};
  }
  return start_link(*peer, std::move(*conn), std::move(info), true);
}

expected<caf::actor> node_impl::open_side_link(const std::string& node,
                                               const std::string& tier) {
  auto peer = dir_->read_node(node);
  if (!peer)
    return std::move(peer).error();
  auto info = std::make_shared<link_info>();
  info->peer = node;
  auto conn = connect_peer(*peer, tier, *info);
  if (!conn)
    return std::move(conn).error();
  if (info->tier != tier)
    return error{errc::unavailable, "tier " + tier + " cannot reach node "
                                      + quoted(node) + ": " + info->note};
  info->note = "asked for by messages";
  return start_link(*peer, std::move(*conn), std::move(info), false);
}

expected<caf::actor> node_impl::start_link(const v1::NodeRecord& peer,
                                           std::unique_ptr<link> conn,
                                           std::shared_ptr<link_info> info,
                                           bool route) {
  const auto& node = peer.name();
  // Is the endpoint really served by that node? (Nobody else could have put
  // it there in a sticky directory, but the kernel's word is cheap.)
  const auto& creds = conn->peer();
  if (creds.uid != peer.uid() || creds.pid != peer.pid()) {
    log(log_level::warning, "the endpoint of node " + quoted(node)
                              + " is served by uid " + std::to_string(creds.uid)
                              + " pid " + std::to_string(creds.pid)
                              + ", not by the node; not using it");
    return error{errc::permission_denied,
                 "the endpoint of node " + quoted(node)
                   + " is not served by that node"};
  }
  std::unique_lock guard{mu_};
  if (stopping_)
    return error{errc::unavailable, "node " + quoted(config_.name)
                                      + " is shutting down"};
  auto proxy = spawn_link_proxy(*this, std::move(conn), info, peer);
  proxies_.push_back(proxy.address());
  if (route) {
    links_[node] = link_entry{proxy, std::move(info), {}};
    generation_.fetch_add(1, std::memory_order_release);
  } else if (auto i = links_.find(node); i != links_.end()) {
    i->second.side.push_back(std::move(info));
  }
  return proxy;
}

expected<void>
node_impl::check_post_options(const post_options& options) const {
  if (options.priority > max_priority)
    return error{errc::invalid_argument,
                 "priority " + std::to_string(options.priority)
                   + " is over the maximum of 7"};
  if (options.tier.empty())
    return {};
  for (auto& [tier, impl] : transports_)
    if (tier == options.tier)
      return {};
  return error{errc::invalid_argument,
               "tier " + quoted(options.tier) + " is not one of this node's"};
}

expected<backlog_charge>
node_impl::charge_backlog(const route& dest, const message& payload) const {
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
  auto before = dest.backlog->bytes.fetch_add(amount, std::memory_order_relaxed);
  if (before > 0 && before + amount > limit) {
    dest.backlog->bytes.fetch_sub(amount, std::memory_order_relaxed);
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

expected<route> node_impl::resolve_remote(std::string_view name) {
  auto at = name.find('@');
  auto actor = std::string{name.substr(0, at)};
  auto node = at == std::string_view::npos ? std::string{}
                                           : std::string{name.substr(at + 1)};
  if (!valid_name(actor) || (at != std::string_view::npos && !valid_name(node)))
    return error{errc::invalid_argument, quoted(name) + " is not a valid name"};
  {
    std::shared_lock guard{mu_};
    if (auto i = remote_names_.find(actor);
        i != remote_names_.end() && (node.empty() || i->second->node == node)
        && i->second->state == slot_state::running)
      return route{i->second, i->second->current, i->second->backlog,
                   i->second->link};
  }
  auto owner = dir_->owner_of(actor);
  if (!owner)
    return std::move(owner).error();
  if (!node.empty() && *owner != node)
    return error{errc::not_found,
                 "no actor named " + quoted(actor) + " on node " + quoted(node)};
  if (*owner == config_.name)
    return error{errc::not_found, "no actor named " + quoted(actor)};
  auto proxy = link_to(*owner);
  if (!proxy)
    return std::move(proxy).error();
  std::unique_lock guard{mu_};
  auto& slot = remote_names_[actor];
  if (!slot || slot->node != *owner || slot->state != slot_state::running) {
    slot = std::make_shared<name_slot>(*this, actor, actor_factory{},
                                       spawn_options{});
    slot->node = *owner;
  }
  slot->current = *proxy;
  if (auto link = links_.find(*owner);
      link != links_.end() && link->second.proxy == *proxy) {
    slot->backlog = link->second.info->backlog;
    slot->link = link->second.info;
  }
  generation_.fetch_add(1, std::memory_order_release);
  return route{slot, slot->current, slot->backlog, slot->link};
}

expected<route> node_impl::resolve_local(std::string_view name) {
  std::shared_lock guard{mu_};
  return resolve_locked(name);
}

std::shared_ptr<name_slot> node_impl::remote_sender(std::string_view actor,
                                                    const std::string& node) {
  if (actor.empty())
    return nullptr; // a plain thread on the other node
  std::string key;
  key.reserve(actor.size() + 1 + node.size());
  key.append(actor).append("@").append(node);
  std::lock_guard guard{senders_mu_};
  if (auto i = remote_senders_.find(key); i != remote_senders_.end())
    return i->second;
  if (remote_senders_.size() >= 4096) // bounded: a cache, not a registry
    remote_senders_.clear();
  auto slot = std::make_shared<name_slot>(*this, key, actor_factory{},
                                          spawn_options{});
  slot->node = node;
  slot->state = slot_state::released; // resolved by name, never by ref
  remote_senders_.emplace(key, slot);
  return slot;
}

void node_impl::adopt_link(const std::string& node, caf::actor proxy,
                           std::shared_ptr<link_info> info) {
  std::unique_lock guard{mu_};
  if (links_.try_emplace(node, link_entry{std::move(proxy), std::move(info), {}})
        .second)
    generation_.fetch_add(1, std::memory_order_release);
}

void node_impl::drop_link(const std::string& node, const caf::actor& proxy) {
  std::unique_lock guard{mu_};
  if (auto i = links_.find(node); i != links_.end() && i->second.proxy == proxy)
    links_.erase(i);
  std::erase_if(remote_names_, [&](const auto& entry) {
    if (entry.second->node != node || entry.second->current != proxy)
      return false;
    entry.second->state = slot_state::released;
    return true;
  });
  generation_.fetch_add(1, std::memory_order_release);
}

void node_impl::forget_remote_name(const std::string& actor,
                                   const std::string& node) {
  std::unique_lock guard{mu_};
  if (auto i = remote_names_.find(actor);
      i != remote_names_.end() && i->second->node == node) {
    i->second->state = slot_state::released;
    remote_names_.erase(i);
    generation_.fetch_add(1, std::memory_order_release);
  }
}

v1::NodeRecord node_impl::record() const {
  std::lock_guard guard{record_mu_};
  return record_;
}

void node_impl::publish_record() {
  std::vector<const google::protobuf::FileDescriptor*> files;
  {
    std::shared_lock guard{types_mu_};
    std::set<std::string> seen;
    for (auto& [name, proto] : types_)
      collect_files(proto->GetDescriptor()->file(), seen, files);
  }
  std::lock_guard guard{record_mu_};
  record_.clear_type_files();
  published_files_.clear();
  for (const auto* file : files) {
    google::protobuf::FileDescriptorProto proto;
    file->CopyTo(&proto);
    proto.SerializeToString(record_.add_type_files());
    published_files_.push_back(file->name());
  }
  if (auto written = dir_->publish(record_); !written)
    log(log_level::error, "cannot publish the node record: "
                            + written.error().message());
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
                   {}};
    for (auto& tier : record.tiers())
      info.tiers.push_back(tier);
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
  for (auto& [actor, owner] : dir_->names())
    if (glob_match(pattern, actor))
      out.push_back({actor, owner});
  return out;
}

std::vector<route_info> node_impl::routes() const {
  std::vector<route_info> out;
  {
    std::shared_lock guard{mu_};
    for (auto& [peer, entry] : links_) {
      out.push_back({peer, entry.info->tier, entry.info->note,
                     entry.info->messages_out.load(),
                     entry.info->messages_in.load()});
      for (auto& side : entry.side)
        if (side->open.load())
          out.push_back({peer, side->tier, side->note, side->messages_out.load(),
                       side->messages_in.load()});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& x, const auto& y) { return x.peer < y.peer; });
  return out;
}

} // namespace courier::detail

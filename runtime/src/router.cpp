#include "router.hpp"

#include "directory.hpp"
#include "node_impl.hpp"
#include "peers.hpp"

namespace courier::detail {

router::router(node_impl& owner, directory* dir, peers& links)
  : owner_(owner), dir_(dir), peers_(links) {
}

expected<route> router::resolve(std::string_view name) {
  auto at = name.find('@');
  auto actor = std::string{name.substr(0, at)};
  auto node = at == std::string_view::npos ? std::string{}
                                           : std::string{name.substr(at + 1)};
  if (!valid_name(actor) || (at != std::string_view::npos && !valid_name(node)))
    return error{errc::invalid_argument, quoted(name) + " is not a valid name"};
  {
    std::shared_lock guard{mu_};
    if (auto i = names_.find(actor);
        i != names_.end() && (node.empty() || i->second->node == node)
        && i->second->state == slot_state::running)
      return route{i->second, i->second->current, i->second->backlog,
                   i->second->link};
  }
  if (dir_ == nullptr)
    return error{errc::not_found, "no actor named " + quoted(actor)};
  auto owner = dir_->owner_of(actor);
  if (!owner)
    return std::move(owner).error();
  if (!node.empty() && *owner != node)
    return error{errc::not_found,
                 "no actor named " + quoted(actor) + " on node " + quoted(node)};
  if (*owner == owner_.name())
    return error{errc::not_found, "no actor named " + quoted(actor)};
  auto link = peers_.link_to(*owner);
  if (!link)
    return std::move(link).error();
  std::unique_lock guard{mu_};
  auto& slot = names_[actor];
  if (!slot || slot->node != *owner || slot->state != slot_state::running) {
    slot = std::make_shared<name_slot>(owner_, actor, actor_factory{},
                                       spawn_options{});
    slot->node = *owner;
  }
  slot->current = link->proxy;
  slot->backlog = link->info->backlog;
  slot->link = link->info;
  owner_.routes_changed();
  return route{slot, slot->current, slot->backlog, slot->link};
}

void router::forget_name(const std::string& actor, const std::string& node) {
  std::unique_lock guard{mu_};
  if (auto i = names_.find(actor); i != names_.end() && i->second->node == node) {
    i->second->state = slot_state::released;
    names_.erase(i);
    owner_.routes_changed();
  }
}

void router::forget_link(const std::string& node, const caf::actor& proxy) {
  std::unique_lock guard{mu_};
  std::erase_if(names_, [&](const auto& entry) {
    if (entry.second->node != node || entry.second->current != proxy)
      return false;
    entry.second->state = slot_state::released;
    return true;
  });
  owner_.routes_changed();
}

std::shared_ptr<name_slot> router::remote_sender(std::string_view actor,
                                                 const std::string& node) {
  if (actor.empty())
    return nullptr; // a plain thread on the other node
  std::string key;
  key.reserve(actor.size() + 1 + node.size());
  key.append(actor).append("@").append(node);
  std::lock_guard guard{senders_mu_};
  if (auto i = senders_.find(key); i != senders_.end())
    return i->second;
  if (senders_.size() >= 4096) // bounded: a cache, not a registry
    senders_.clear();
  auto slot = std::make_shared<name_slot>(owner_, key, actor_factory{},
                                          spawn_options{});
  slot->node = node;
  slot->state = slot_state::released; // resolved by name, never by ref
  senders_.emplace(key, slot);
  return slot;
}

void router::clear() {
  std::unique_lock guard{mu_};
  for (auto& [name, slot] : names_)
    slot->state = slot_state::released;
  names_.clear();
}

} // namespace courier::detail

// The node's name registry and supervision: spawning an actor under a
// name, resolving and matching names held here (the router takes the
// others), stopping, monitors, and restarts by policy when an actor fails.
// Lock order: node_impl.hpp.

#include <algorithm>

#include <caf/send.hpp>

#include "node_impl.hpp"
#include "shell.hpp"

namespace courier::detail {

namespace {

/// The error for a destination this node does not hold: invalid_argument
/// when `name` ("actor" or "actor@node") is malformed, as no node can hold
/// it; else not_found, saying `why`.
error unheld(std::string_view name, std::string why) {
  auto at = name.find('@');
  if (valid_name(name.substr(0, at))
      && (at == std::string_view::npos || valid_name(name.substr(at + 1))))
    return error{errc::not_found, std::move(why)};
  return error{errc::invalid_argument,
               quoted(name)
                 + " is not a valid name: a name is 1 to 255 letters, "
                   "digits, '_', '-' and '.', not starting with '.' "
                   "('actor@node' names the node too)"};
}


} // namespace

// -- node_impl: names ------------------------------------------------------------

expected<actor_ref> node_impl::spawn(std::string_view name,
                                     actor_factory factory,
                                     spawn_options options) {
  if (!valid_name(name))
    return error{errc::invalid_argument,
                 quoted(name) + " is not a valid actor name (use letters, "
                                "digits, '_', '-' and '.', at most 255)"};
  if (!factory)
    return error{errc::invalid_argument, "spawn needs a behavior factory"};
  auto services = find_services(options);
  if (!services)
    return std::move(services).error();
  auto slot = std::make_shared<name_slot>(*this, std::string{name},
                                          std::move(factory),
                                          std::move(options));
  if (slot->options.max_mailbox.value_or(config_.max_mailbox) > 0)
    slot->backlog = std::make_shared<detail::backlog>();
  // From a plain thread, spawn returns once the actor runs, its handled
  // types published: a tool that finds the name can also encode its types.
  // (An actor spawning does not wait: it would hold a scheduler thread.)
  std::future<void> started;
  if (shell::current() == nullptr) {
    slot->started = std::make_shared<std::promise<void>>();
    started = slot->started->get_future();
  }
  {
    std::shared_lock guard{mu_};
    if (names_.contains(name))
      return error{errc::already_exists,
                   "the name " + quoted(name) + " is already taken"};
  }
  slot->stats = metrics_.stats_for(name);
  // Names are unique machine-wide: claim it in the directory first.
  if (dir_)
    if (auto claimed = dir_->claim_name(name); !claimed)
      return claimed.error();
  caf::actor handle;
  {
    std::unique_lock guard{mu_};
    if (stopping_ || !names_.try_emplace(slot->name, slot).second) {
      auto why = stopping_ ? error{errc::unavailable, "node "
                                                        + quoted(config_.name)
                                                        + " is shutting down"}
                           : error{errc::already_exists,
                                   "the name " + quoted(name)
                                     + " is already taken"};
      if (dir_ && stopping_)
        dir_->release_name(name);
      return why;
    }
    handle = spawn_locked(slot);
  }
  declare_services(slot, std::move(*services));
  watch_exit(handle, slot);
  if (started.valid()) // bounded: a node shutting down may never run it
    (void)started.wait_for(std::chrono::seconds{5});
  return actor_ref{std::move(slot)};
}

caf::actor node_impl::spawn_locked(const std::shared_ptr<name_slot>& slot) {
  auto handle = system_->spawn<shell>(slot);
  slot->current = handle;
  slot->state = slot_state::running;
  ++live_incarnations_;
  generation_.fetch_add(1, std::memory_order_release);
  return handle;
}

void node_impl::watch_exit(const caf::actor& handle,
                           const std::shared_ptr<name_slot>& slot) {
  handle->attach_functor(
    [this, slot](const caf::error& why) { on_exit(slot, why); });
}

void node_impl::release_locked(const std::shared_ptr<name_slot>& slot) {
  slot->state = slot_state::released;
  if (auto i = names_.find(slot->name); i != names_.end() && i->second == slot)
    names_.erase(i);
  generation_.fetch_add(1, std::memory_order_release);
  if (dir_ && slot->node.empty()) {
    dir_->release_name(slot->name);
    // Peers that cached the name learn at once that it is gone.
    peers_->announce_release(slot->name);
  }
}

void node_impl::notify(std::vector<monitor_entry>& monitors,
                       const down_notice& notice) {
  for (auto& entry : monitors) {
    if (entry.token && entry.token->cancelled.load())
      continue;
    try {
      entry.fn(notice);
    } catch (const std::exception& ex) {
      log(log_level::error,
          "a monitor of " + quoted(notice.name) + " threw: " + ex.what());
    } catch (...) {
      log(log_level::error, "a monitor of " + quoted(notice.name) + " threw");
    }
  }
}

expected<std::shared_ptr<name_slot>>
node_impl::slot_locked(destination to) const {
  if (const auto* ref = to.ref()) {
    const auto& slot = ref->slot_;
    if (!slot)
      return error{errc::invalid_argument, "an empty actor_ref"};
    if (&slot->owner != this)
      return error{errc::not_found, quoted(slot->name)
                                      + " is bound on another node object"};
    if (slot->state == slot_state::released)
      return error{errc::not_found, quoted(slot->name) + " has stopped"};
    return slot;
  }
  auto name = to.name();
  if (auto at = name.find('@'); at != std::string_view::npos) {
    auto node_name = name.substr(at + 1);
    name = name.substr(0, at);
    if (node_name != config_.name)
      return unheld(to.name(),
                    "no node named " + quoted(node_name) + " is known");
  }
  auto i = names_.find(name);
  if (i == names_.end())
    return unheld(to.name(), "no actor named " + quoted(name));
  return i->second;
}

expected<route> node_impl::resolve_locked(destination to) const {
  auto slot = slot_locked(to);
  if (!slot)
    return std::move(slot).error();
  if ((*slot)->state != slot_state::running)
    return error{errc::unavailable, quoted((*slot)->name) + " is restarting"};
  return route{*slot, (*slot)->current, (*slot)->backlog};
}

expected<route> node_impl::resolve(destination to, const message& msg,
                                   const name_slot* sender) {
  expected<route> result = [&] {
    std::shared_lock guard{mu_};
    return resolve_locked(to);
  }();
  if (!result && result.code() == errc::not_found && dir_ && !to.ref())
    result = router_->resolve(to.name());
  if (!result)
    report_dead_letter(result.code() == errc::unavailable
                           && to.name().find('@') == std::string_view::npos
                         ? dead_letter_reason::restarting
                       : result.code() == errc::not_found
                             || result.code() == errc::invalid_argument
                         ? dead_letter_reason::no_such_name
                         : dead_letter_reason::unreachable,
                       to.name(), msg, sender);
  return result;
}

expected<actor_ref> node_impl::find(std::string_view name) const {
  std::shared_lock guard{mu_};
  auto slot = slot_locked(name);
  if (!slot)
    return std::move(slot).error();
  return actor_ref{std::move(*slot)};
}

std::vector<std::string> node_impl::names(std::string_view pattern) const {
  std::vector<std::string> result;
  {
    std::shared_lock guard{mu_};
    for (auto& [name, slot] : names_)
      if (glob_match(pattern, name))
        result.push_back(name);
  }
  std::sort(result.begin(), result.end());
  return result;
}

std::vector<route> node_impl::match(std::string_view pattern) const {
  // Runtime actors ("courier.*") answer only patterns that name them.
  const bool system_too = pattern.starts_with("courier.");
  auto wanted = [&](std::string_view name) {
    return glob_match(pattern, name)
           && (system_too || !name.starts_with("courier."));
  };
  std::vector<route> result;
  {
    std::shared_lock guard{mu_};
    for (auto& [name, slot] : names_)
      if (wanted(name))
        result.push_back(route{slot, slot->current});
  }
  // Names held by the other nodes of this machine.
  if (dir_) {
    for (auto& held : dir_->names()) {
      if (held.second == config_.name || !wanted(held.first))
        continue;
      auto self = const_cast<node_impl*>(this); // resolving caches routes
      if (auto remote = self->router_->resolve(held.first + "@" + held.second))
        result.push_back(std::move(*remote));
    }
  }
  std::sort(result.begin(), result.end(), [](const route& x, const route& y) {
    return x.slot->name < y.slot->name;
  });
  return result;
}

expected<void> node_impl::stop(destination to) {
  caf::actor handle;
  std::vector<monitor_entry> orphaned;
  std::shared_ptr<name_slot> slot;
  {
    std::unique_lock guard{mu_};
    auto found = slot_locked(to);
    if (!found)
      return std::move(found).error();
    slot = std::move(*found);
    slot->stop_requested = true;
    handle = slot->current;
    if (!handle) { // restarting: nothing runs, release the name right away
      orphaned.swap(slot->monitors);
      release_locked(slot);
    }
  }
  if (handle)
    caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
  else
    withdraw_services(*slot);
  notify(orphaned, down_notice{slot->name, down_reason::stopped,
                               "stopped while restarting", false});
  return {};
}

expected<monitor_handle> node_impl::monitor(destination to,
                                            monitor_fn on_down,
                                            caf::actor_addr watcher) {
  if (!on_down)
    return error{errc::invalid_argument, "monitor needs a callback"};
  auto token = std::make_shared<monitor_token>();
  auto watch_over_there = [&](const caf::actor& proxy, std::string name) {
    token->proxy = proxy.address();
    watch_remote(proxy, std::move(name), std::move(on_down), token);
    return handle_of(std::move(token));
  };
  std::unique_lock guard{mu_};
  auto slot = slot_locked(to);
  if (!slot && slot.code() == errc::not_found && dir_ && !to.ref()) {
    guard.unlock();
    auto remote = router_->resolve(to.name());
    if (!remote)
      return std::move(remote).error();
    return watch_over_there(remote->handle, remote->slot->name);
  }
  if (slot && !(*slot)->node.empty()) { // a ref to a remote binding
    auto proxy = (*slot)->current;
    auto name = (*slot)->name;
    guard.unlock();
    return watch_over_there(proxy, std::move(name));
  }
  if (!slot)
    return std::move(slot).error();
  auto& monitors = (*slot)->monitors;
  // Watchers that are gone will never read their notice.
  if (monitors.size() >= 8)
    std::erase_if(monitors, [](const monitor_entry& entry) {
      return entry.watcher && !caf::actor_cast<caf::actor>(entry.watcher);
    });
  token->slot = *slot;
  monitors.push_back({std::move(on_down), std::move(watcher), token});
  return handle_of(std::move(token));
}

void node_impl::demonitor(const monitor_handle& handle) {
  const auto& token = token_of(handle);
  if (!token || token->cancelled.exchange(true))
    return;
  if (auto slot = token->slot.lock()) {
    std::unique_lock guard{mu_};
    std::erase_if(slot->monitors, [&](const monitor_entry& entry) {
      return entry.token == token;
    });
  } else if (auto proxy = caf::actor_cast<caf::actor>(token->proxy)) {
    unwatch_remote(proxy, token);
  }
}

void node_impl::mark_failed(name_slot& slot, std::string reason) {
  std::unique_lock guard{mu_};
  if (!slot.failed) { // the first failure is the cause
    slot.failed = true;
    slot.failure = std::move(reason);
  }
}

// -- node_impl: supervision ------------------------------------------------------

void node_impl::on_exit(const std::shared_ptr<name_slot>& slot,
                        const caf::error& why) {
  // Whatever happens below, the destructor must learn that this
  // incarnation's bookkeeping is over.
  struct count_exit {
    node_impl& self;
    ~count_exit() {
      std::unique_lock guard{self.mu_};
      --self.live_incarnations_;
      self.all_exited_.notify_all();
    }
  } counted{*this};
  down_notice notice{slot->name, down_reason::stopped, {}, false};
  std::vector<monitor_entry> monitors;
  std::chrono::milliseconds backoff{0};
  bool gave_up = false;
  {
    std::unique_lock guard{mu_};
    if (slot->failed) {
      notice.reason = down_reason::failed;
      notice.detail = std::exchange(slot->failure, {});
      slot->failed = false;
    } else if (stopping_ && !slot->stop_requested) {
      notice.reason = down_reason::node_down;
      notice.detail = "node " + quoted(config_.name) + " shut down";
    } else if (why && why != caf::exit_reason::normal
               && why != caf::exit_reason::user_shutdown) {
      notice.reason = down_reason::failed;
      notice.detail = caf::to_string(why);
    }
    monitors.swap(slot->monitors);
    slot->current = caf::actor{};
    const auto& policy = slot->options.restart;
    if (notice.reason == down_reason::failed && policy && !stopping_
        && !slot->stop_requested) {
      auto now = deadline::clock::now();
      while (!slot->restarts.empty()
             && now - slot->restarts.front() > policy->window)
        slot->restarts.pop_front();
      if (slot->restarts.size() < policy->max_restarts) {
        auto doublings = std::min<std::size_t>(slot->restarts.size(), 20);
        backoff = std::min<std::chrono::milliseconds>(
          policy->initial_backoff * (std::int64_t{1} << doublings),
          policy->max_backoff);
        slot->restarts.push_back(now);
        slot->state = slot_state::restarting;
        notice.restarting = true;
        generation_.fetch_add(1, std::memory_order_release);
      } else {
        gave_up = true;
      }
    }
    if (!notice.restarting)
      release_locked(slot);
  }
  if (!notice.restarting)
    withdraw_services(*slot);
  if (gave_up)
    log_event(log_level::warning,
              quoted(slot->name) + " failed more than "
                + std::to_string(slot->options.restart->max_restarts)
                + " times within "
                + std::to_string(slot->options.restart->window.count())
                + " ms; its supervisor gives up and releases the name (last "
                  "failure: "
                + notice.detail + ")",
              {slot->name, {}, "gave_up", {}});
  notify(monitors, notice);
  if (notice.restarting)
    caf::delayed_anon_send(supervisor_, backoff,
                           restart_msg{slot, std::move(notice.detail)});
}

void node_impl::restart(const std::shared_ptr<name_slot>& slot,
                        std::string_view reason) {
  caf::actor handle;
  {
    std::unique_lock guard{mu_};
    if (slot->state != slot_state::restarting)
      return; // stopped while waiting
    if (!stopping_ && !slot->stop_requested)
      handle = spawn_locked(slot);
    else
      release_locked(slot);
  }
  if (!handle) {
    withdraw_services(*slot);
    return;
  }
  if (slot->stats != nullptr)
    slot->stats->restarts.fetch_add(1, std::memory_order_relaxed);
  log_event(log_level::info,
            "restarted " + quoted(slot->name) + " after it failed: "
              + std::string{reason},
            {slot->name, {}, "restarted", {}});
  watch_exit(handle, slot);
}
} // namespace courier::detail

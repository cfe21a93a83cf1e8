#include <algorithm>
#include <cstdio>
#include <thread>

#include <unistd.h>

#include <google/protobuf/descriptor.h>

#include <caf/event_based_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "file_directory.hpp"
#include "node_impl.hpp"
#include "spinning_scheduler.hpp"
#include "shell.hpp"

namespace courier::detail {

// -- helpers ---------------------------------------------------------------------

bool glob_match(std::string_view pattern, std::string_view text) noexcept {
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = std::string_view::npos;
  std::size_t resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*')
    ++p;
  return p == pattern.size();
}

bool valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 255 || name.front() == '.')
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  });
}

std::string quoted(std::string_view name) {
  std::string out;
  out.reserve(name.size() + 2);
  out += '\'';
  out += name;
  out += '\'';
  return out;
}

namespace {

bool valid_type_name(std::string_view name) noexcept {
  if (name.empty() || name.front() == '.' || name.back() == '.')
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '.';
  });
}

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

expected<message> to_outcome(reply_msg& reply) {
  if (reply.code == errc::ok)
    return std::move(reply.payload);
  return error{reply.code, std::move(reply.text)};
}

caf::duration to_caf(deadline until) {
  if (until.is_never())
    return caf::duration{caf::infinite};
  return caf::duration{
    std::chrono::duration_cast<std::chrono::nanoseconds>(until.remaining())};
}

error from_caf(const caf::error& err, std::string_view target, bool remote) {
  if (err.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(err.code())) {
      case caf::sec::request_timeout:
        return {errc::deadline_exceeded,
                "no reply from " + quoted(target) + " before the deadline"};
      case caf::sec::request_receiver_down:
        if (remote)
          return {errc::unavailable,
                  "the link to the node of " + quoted(target) + " closed"};
        return {errc::aborted, quoted(target) + " stopped before replying"};
      default:
        break;
    }
  }
  return {errc::internal, quoted(target) + ": " + caf::to_string(err)};
}

void classify(broadcast_result& result, std::string name,
              expected<message> outcome) {
  if (outcome) {
    result.replied.push_back({std::move(name), std::move(*outcome)});
    return;
  }
  switch (outcome.code()) {
    case errc::deadline_exceeded:
      result.timed_out.push_back(std::move(name));
      break;
    case errc::aborted:
    case errc::not_found:
    case errc::unavailable:
      result.dead.push_back(std::move(name));
      break;
    default:
      result.failed.push_back({std::move(name), outcome.error()});
  }
}

void sort_result(broadcast_result& result) {
  auto by_name = [](const auto& x, const auto& y) { return x.name < y.name; };
  std::sort(result.replied.begin(), result.replied.end(), by_name);
  std::sort(result.failed.begin(), result.failed.end(), by_name);
  std::sort(result.timed_out.begin(), result.timed_out.end());
  std::sort(result.dead.begin(), result.dead.end());
}

// -- letter -----------------------------------------------------------------------

letter& letter::operator=(letter&& other) noexcept {
  if (this != &other) {
    if (office_ != nullptr)
      office_->report_dead_letter(dead_letter_reason::actor_stopped,
                                  target ? target->name : "", payload,
                                  sender.get());
    payload = std::move(other.payload);
    target = std::move(other.target);
    sender = std::move(other.sender);
    expires = other.expires;
    tier = std::move(other.tier);
    reply_to = std::move(other.reply_to);
    kind = other.kind;
    priority = other.priority;
    charge = std::move(other.charge);
    office_ = std::exchange(other.office_, nullptr);
  }
  return *this;
}

letter::~letter() {
  if (office_ != nullptr)
    office_->report_dead_letter(dead_letter_reason::actor_stopped,
                                target ? target->name : "", payload,
                                sender.get());
}

// -- node_impl: lifetime -------------------------------------------------------

namespace {

/// Restarts failed actors once their backoff has passed. Class-based: CAF
/// 0.17's function-based spawn without arguments binds a reference to null
/// (reported by UBSan inside caf/detail/init_fun_factory.hpp).
class supervisor : public caf::event_based_actor {
public:
  supervisor(caf::actor_config& cfg, node_impl& owner)
    : caf::event_based_actor(cfg), owner_(owner) {
  }

  caf::behavior make_behavior() override {
    return {[this](restart_msg& msg) { owner_.restart(msg.slot); }};
  }

private:
  node_impl& owner_;
};

} // namespace

node_impl::node_impl(
  node_config config, std::unique_ptr<directory> dir,
  std::vector<std::pair<std::string, std::unique_ptr<transport>>> transports)
  : config_(std::move(config)),
    dir_(std::move(dir)),
    transports_(std::move(transports)) {
  std::vector<tier_policy::registered> tiers;
  for (auto& [tier, impl] : transports_)
    tiers.push_back({tier, impl.get()});
  peers_ = std::make_unique<detail::peers>(
    *this, dir_.get(), tier_policy{std::move(tiers), config_.preferred_tiers},
    authenticator{::getuid(), config_.allowed_uids, config_.allowed_gids});
  router_ = std::make_unique<detail::router>(*this, dir_.get(), *peers_);
  auto threads = config_.worker_threads;
  if (threads == 0)
    threads = std::max(2u, std::thread::hardware_concurrency());
  caf_config_.set("scheduler.max-threads",
                  static_cast<caf::config_value::integer>(threads));
  auto policy = config_.scheduler;
  if (policy == scheduler_policy::automatic)
    policy = transports_.empty() ? scheduler_policy::work_stealing
                                 : scheduler_policy::latency;
  if (policy == scheduler_policy::sharing) {
    caf_config_.set("scheduler.policy", caf::atom("sharing"));
  } else if (policy == scheduler_policy::latency) {
    // The transports outlive the system (members destroyed in reverse).
    std::vector<std::function<bool()>> pollers;
    for (auto& [tier, impl] : transports_)
      pollers.emplace_back([t = impl.get()] { return t->poll(); });
    use_polling_scheduler(caf_config_, config_.idle_spin, std::move(pollers));
  }
  system_ = std::make_unique<caf::actor_system>(caf_config_);
  supervisor_ = system_->spawn<supervisor>(*this);
}

node_impl::~node_impl() {
  std::vector<caf::actor> running;
  std::vector<std::pair<std::string, std::vector<monitor_entry>>> orphaned;
  {
    std::unique_lock guard{mu_};
    stopping_ = true;
    for (auto& [name, slot] : names_) {
      if (slot->current)
        running.push_back(slot->current);
      else if (slot->state == slot_state::restarting) {
        slot->state = slot_state::released;
        orphaned.emplace_back(name, std::move(slot->monitors));
      }
    }
  }
  for (auto& handle : running)
    caf::anon_send_exit(handle, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(supervisor_, caf::exit_reason::user_shutdown);
  for (auto& [name, monitors] : orphaned)
    notify(monitors, down_notice{name, down_reason::node_down,
                                 "node " + quoted(config_.name)
                                   + " shut down while it restarted",
                                 false});
  string_map<std::shared_ptr<name_slot>> bindings;
  {
    std::unique_lock guard{mu_};
    all_exited_.wait(guard, [this] { return live_incarnations_ == 0; });
    bindings.swap(names_);
  }
  // User factories die here, outside the lock: their destructors may call
  // back into the node.
  for (auto& [name, slot] : bindings)
    slot->state = slot_state::released;
  bindings.clear();
  // Links go last: the actors above may have talked through them.
  auto proxies = peers_->stop();
  router_->clear();
  for (auto& proxy : proxies)
    if (auto handle = caf::actor_cast<caf::actor>(proxy))
      drain_link(handle); // posts accepted before shutdown still leave
  system_->await_all_actors_done();
  for (auto& [name, tier] : transports_)
    tier->stop();
  dir_.reset(); // releases the node's names, socket and record
  supervisor_ = caf::actor{};
  timer_.stop(); // its callbacks send to actors of the system
  system_.reset();
}

void node_impl::log(log_level level, std::string_view line) const {
  if (config_.log) {
    try {
      config_.log(level, line);
    } catch (...) {
      // A log sink must not take the runtime down; nowhere left to say so.
    }
    return;
  }
  if (level < log_level::warning)
    return;
  std::fprintf(stderr, "courier[%s] %s: %.*s\n", config_.name.c_str(),
               level == log_level::warning ? "warning" : "error",
               static_cast<int>(line.size()), line.data());
}

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
  if (gave_up)
    log(log_level::warning,
        quoted(slot->name) + " failed more than "
          + std::to_string(slot->options.restart->max_restarts)
          + " times within "
          + std::to_string(slot->options.restart->window.count())
          + " ms; its supervisor gives up and releases the name");
  notify(monitors, notice);
  if (notice.restarting)
    caf::delayed_anon_send(supervisor_, backoff, restart_msg{slot});
}

void node_impl::restart(const std::shared_ptr<name_slot>& slot) {
  caf::actor handle;
  {
    std::unique_lock guard{mu_};
    if (slot->state != slot_state::restarting)
      return; // stopped while waiting
    if (stopping_ || slot->stop_requested) {
      release_locked(slot);
      return;
    }
    handle = spawn_locked(slot);
  }
  log(log_level::info, "restarted " + quoted(slot->name));
  watch_exit(handle, slot);
}

// -- node_impl: types ------------------------------------------------------------

expected<const google::protobuf::Descriptor*>
node_impl::register_type(std::string_view full_name) {
  if (!valid_type_name(full_name))
    return error{errc::invalid_argument,
                 quoted(full_name) + " is not a Protobuf full name"};
  auto found = prototype(full_name);
  if (!found)
    return std::move(found).error();
  return (*found)->GetDescriptor();
}

expected<const google::protobuf::Message*>
node_impl::prototype(std::string_view type) {
  {
    std::shared_lock guard{types_mu_};
    if (auto i = types_.find(type); i != types_.end())
      return i->second;
  }
  const auto* descriptor
    = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
      std::string{type});
  if (descriptor == nullptr)
    return error{errc::not_found,
                 "unknown message type " + quoted(type)
                   + " (is its generated code linked into this program?)"};
  const auto* proto
    = google::protobuf::MessageFactory::generated_factory()->GetPrototype(
      descriptor);
  std::unique_lock guard{types_mu_};
  types_.try_emplace(std::string{type}, proto);
  return proto;
}

expected<const google::protobuf::Descriptor*>
node_impl::find_type(std::string_view full_name) const {
  std::shared_lock guard{types_mu_};
  if (auto i = types_.find(full_name); i != types_.end())
    return i->second->GetDescriptor();
  return error{errc::not_found,
               "message type " + quoted(full_name) + " is not registered"};
}

void node_impl::register_handled_types(const behavior& handlers) {
  bool added = false;
  {
    std::unique_lock guard{types_mu_};
    for (const auto& entry : handlers.handlers()) {
      const auto* proto
        = google::protobuf::MessageFactory::generated_factory()->GetPrototype(
          entry.type);
      added |= types_.try_emplace(entry.type->full_name(), proto).second;
    }
  }
  if (added && dir_)
    publish_record();
}

// -- node_impl: dead letters -----------------------------------------------------

void node_impl::report_dead_letter(dead_letter_reason reason,
                                   std::string_view target, const message& msg,
                                   const name_slot* sender) {
  dead_counts_[static_cast<std::size_t>(reason)].fetch_add(
    1, std::memory_order_relaxed);
  std::shared_ptr<const std::function<void(const dead_letter&)>> hook;
  {
    std::lock_guard guard{hook_mu_};
    hook = hook_;
  }
  if (!hook)
    return;
  dead_letter letter{reason, std::string{target},
                     msg ? msg->GetDescriptor()->full_name() : std::string{},
                     sender != nullptr ? sender->name : std::string{}};
  try {
    (*hook)(letter);
  } catch (...) {
    log(log_level::error, "the dead-letter hook threw");
  }
}

void node_impl::on_dead_letter(std::function<void(const dead_letter&)> hook) {
  auto shared = hook ? std::make_shared<const std::function<void(
                         const dead_letter&)>>(std::move(hook))
                     : nullptr;
  std::lock_guard guard{hook_mu_};
  hook_ = std::move(shared);
}

} // namespace courier::detail

// -- public facade -------------------------------------------------------------------

namespace courier {

using detail::letter_kind;

const std::string& actor_ref::name() const noexcept {
  static const std::string none;
  return slot_ ? slot_->name : none;
}

bool actor_ref::bound() const noexcept {
  return slot_ && slot_->state != detail::slot_state::released;
}

void behavior::add(detail::handler_entry entry) {
  COURIER_RUNTIME_ASSERT(find(entry.type) == nullptr,
                         "two handlers for one message type");
  handlers_.push_back(std::move(entry));
}

expected<node> node::start(node_config config) {
  if (config.name.empty())
    config.name = "node-" + std::to_string(::getpid());
  if (!detail::valid_name(config.name))
    return error{errc::invalid_argument,
                 "'" + config.name + "' is not a valid node name"};
  try {
    std::unique_ptr<detail::directory> dir;
    if (config.join_directory) {
      auto path = config.directory.empty() ? detail::default_directory()
                                           : config.directory;
      auto joined = detail::file_directory::join(path, config.name);
      if (!joined)
        return std::move(joined).error();
      dir = std::move(*joined);
    }
    std::vector<std::pair<std::string, std::unique_ptr<transport>>> tiers;
    for (auto& [tier, factory] : config.transports) {
      auto made = factory ? factory(config.limits)
                          : expected<std::unique_ptr<transport>>{
                            errc::invalid_argument, "an empty factory"};
      if (!made)
        return error{made.code(), "the " + tier + " tier: "
                                    + made.error().message()};
      tiers.emplace_back(tier, std::move(*made));
    }
    auto impl = std::make_unique<detail::node_impl>(
      std::move(config), std::move(dir), std::move(tiers));
    if (auto opened = impl->open(); !opened)
      return opened.error();
    return node{std::move(impl)};
  } catch (const std::exception& ex) {
    return error{errc::internal, std::string{"cannot start node: "} + ex.what()};
  }
}

node::node(std::unique_ptr<detail::node_impl> impl) noexcept
  : impl_(std::move(impl)) {
}

node::node(node&&) noexcept = default;
node& node::operator=(node&&) noexcept = default;
node::~node() = default;

const std::string& node::name() const noexcept {
  return impl_->name();
}

expected<actor_ref> node::spawn(std::string_view name, actor_factory factory,
                                spawn_options options) {
  return impl_->spawn(name, std::move(factory), std::move(options));
}

expected<void> node::stop(destination name) {
  return impl_->stop(name);
}

expected<void> node::post(destination to, message msg, post_options options) {
  if (!msg)
    return error{errc::invalid_argument, "cannot post a null message"};
  auto target = impl_->resolve(to, msg, nullptr);
  if (!target)
    return std::move(target).error();
  if (auto checked = impl_->check_post_options(options); !checked)
    return checked;
  auto charge = impl_->charge_backlog(*target, msg);
  if (!charge)
    return std::move(charge).error();
  auto envelope = impl_->make_letter(letter_kind::post, std::move(msg),
                                     *target, nullptr, options.expires);
  envelope.charge = std::move(*charge);
  envelope.priority = options.priority;
  envelope.tier = std::move(options.tier);
  if (options.priority >= 6)
    caf::anon_send<caf::message_priority::high>(target->handle,
                                                std::move(envelope));
  else
    caf::anon_send(target->handle, std::move(envelope));
  return {};
}

expected<message> node::send(destination to, message msg, deadline until) {
  if (detail::shell::current() != nullptr)
    return error{errc::failed_precondition,
                 "node::send blocks; inside an actor use context::request"};
  if (!msg)
    return error{errc::invalid_argument, "cannot send a null message"};
  auto target = impl_->resolve(to, msg, nullptr);
  if (!target)
    return std::move(target).error();
  if (until.expired())
    return error{errc::deadline_exceeded,
                 "the deadline had passed before asking '"
                   + target->slot->name + "'"};
  expected<message> outcome{errc::internal, "no outcome"};
  auto charge = impl_->charge_request(*target, msg);
  auto envelope = impl_->make_letter(letter_kind::request, std::move(msg),
                                     *target, nullptr, until);
  envelope.charge = std::move(charge);
  caf::scoped_actor self{impl_->system()};
  self->request(target->handle, detail::to_caf(until), std::move(envelope))
    .receive(
      [&](detail::reply_msg& reply) { outcome = detail::to_outcome(reply); },
      [&](caf::error& err) {
        outcome = detail::from_caf(err, target->slot->name,
                                   !target->slot->node.empty());
      });
  return outcome;
}

expected<actor_ref> node::find(std::string_view name) const {
  return impl_->find(name);
}

std::vector<std::string> node::names(std::string_view pattern) const {
  return impl_->names(pattern);
}

expected<const google::protobuf::Descriptor*>
node::register_type(std::string_view full_name) {
  return impl_->register_type(full_name);
}

expected<const google::protobuf::Descriptor*>
node::find_type(std::string_view full_name) const {
  return impl_->find_type(full_name);
}

expected<std::unique_ptr<google::protobuf::Message>>
node::new_message(std::string_view full_name) const {
  if (!impl_->find_type(full_name))
    return error{errc::not_found, "message type '" + std::string{full_name}
                                    + "' is not registered"};
  auto prototype = impl_->prototype(full_name);
  if (!prototype)
    return std::move(prototype).error();
  return std::unique_ptr<google::protobuf::Message>{(*prototype)->New()};
}

broadcast_result node::broadcast(std::string_view pattern, message msg,
                                 deadline until) {
  broadcast_result result;
  auto targets = impl_->match(pattern);
  if (!msg || detail::shell::current() != nullptr) {
    auto why = msg ? error{errc::failed_precondition,
                           "node::broadcast blocks; inside an actor use "
                           "context::broadcast"}
                   : error{errc::invalid_argument,
                           "cannot broadcast a null message"};
    for (auto& target : targets)
      result.failed.push_back({target.slot->name, why});
    return result;
  }
  caf::scoped_actor self{impl_->system()};
  // Send every request first, then collect: the waits overlap, so the whole
  // broadcast takes at most until the deadline.
  using handle = decltype(self->request(caf::actor{}, caf::duration{},
                                        std::declval<detail::letter>()));
  std::vector<std::pair<std::string, handle>> pending;
  for (auto& target : targets) {
    if (!target.handle) {
      result.dead.push_back(target.slot->name);
      continue;
    }
    auto envelope = impl_->make_letter(letter_kind::request, msg, target,
                                       nullptr, until);
    envelope.charge = impl_->charge_request(target, msg);
    pending.emplace_back(target.slot->name,
                         self->request(target.handle, detail::to_caf(until),
                                       std::move(envelope)));
  }
  for (auto& [name, response] : pending)
    response.receive(
      [&, &name = name](detail::reply_msg& reply) {
        detail::classify(result, name, detail::to_outcome(reply));
      },
      [&, &name = name](caf::error& err) {
        detail::classify(result, name, detail::from_caf(err, name));
      });
  detail::sort_result(result);
  return result;
}

expected<monitor_handle>
node::monitor(destination name,
              std::function<void(const down_notice&)> on_down) {
  return impl_->monitor(name, std::move(on_down));
}

void node::demonitor(const monitor_handle& handle) {
  impl_->demonitor(handle);
}

std::vector<node_info> node::nodes() const {
  return impl_->nodes();
}

std::vector<name_info> node::machine_names(std::string_view pattern) const {
  return impl_->machine_names(pattern);
}

std::vector<route_info> node::routes() const {
  return impl_->routes();
}

expected<void> node::import_types(std::string_view node_name) {
  return impl_->import_types(node_name);
}

void node::on_dead_letter(std::function<void(const dead_letter&)> hook) {
  impl_->on_dead_letter(std::move(hook));
}

std::uint64_t node::dead_letters(dead_letter_reason reason) const noexcept {
  return impl_->dead_letters(reason);
}

std::uint64_t node::dead_letters() const noexcept {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < dead_letter_reason_count; ++i)
    total += impl_->dead_letters(static_cast<dead_letter_reason>(i));
  return total;
}

} // namespace courier

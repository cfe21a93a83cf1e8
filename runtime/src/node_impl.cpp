// The node's private state, apart from its names (registry.cpp) and its
// record (node_record.cpp): its lifetime (the actor system, the seams for
// other nodes, the scheduler policy), the type registry and the dead-letter
// office.

#include <algorithm>
#include <cstdio>
#include <thread>

#include <unistd.h>

#include <google/protobuf/descriptor.h>

#include <caf/event_based_actor.hpp>
#include <caf/send.hpp>

#include "frame.hpp"
#include "node_impl.hpp"
#include "seed_directory.hpp"
#include "spinning_scheduler.hpp"

namespace courier::detail {

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
    return {
      [this](restart_msg& msg) { owner_.restart(msg.slot, msg.reason); }};
  }

private:
  node_impl& owner_;
};

} // namespace

node_impl::node_impl(
  node_config config, std::unique_ptr<directory> dir,
  std::vector<std::pair<std::string, std::unique_ptr<transport>>> transports)
  : config_(std::move(config)),
    bulks_(std::make_shared<bulk_pool>(config_.limits.spare_buffers)),
    dir_(std::move(dir)),
    transports_(std::move(transports)) {
  std::vector<tier_policy::registered> tiers;
  for (auto& [tier, impl] : transports_)
    tiers.push_back({tier, impl.get()});
  peers_ = std::make_unique<detail::peers>(
    *this, dir_.get(), tier_policy{std::move(tiers), config_.preferred_tiers},
    authenticator{::getuid(), config_.allowed_uids, config_.allowed_gids,
                  config_.rules});
  router_ = std::make_unique<detail::router>(*this, dir_.get(), *peers_);
  auto threads = config_.worker_threads;
  if (threads == 0)
    threads = std::max(2u, std::thread::hardware_concurrency());
  caf_config_.set("scheduler.max-threads",
                  static_cast<caf::config_value::integer>(threads));
  // A tier is polled where polling pays for it (transport.hpp).
  auto polls = [plugins = !config_.plugins.empty()](const transport& t) {
    return plugins ? t.pollable_beside_plugins() : t.pollable();
  };
  auto policy = config_.scheduler;
  if (policy == scheduler_policy::automatic) {
    // Polling pays where the pollers read frames themselves; with only
    // tiers that bring frames on threads of their own, it would take
    // their CPU.
    bool polled = false;
    for (auto& [tier, impl] : transports_)
      polled = polled || polls(*impl);
    policy = transports_.empty() ? scheduler_policy::work_stealing
             : polled            ? scheduler_policy::latency
                                 : scheduler_policy::sharing;
  }
  if (policy == scheduler_policy::sharing) {
    caf_config_.set("scheduler.policy", caf::atom("sharing"));
  } else if (policy == scheduler_policy::latency) {
    // The transports outlive the system (members destroyed in reverse).
    std::vector<detail::poller> pollers;
    for (auto& [tier, impl] : transports_)
      if (polls(*impl))
        pollers.push_back({[t = impl.get()] { return t->poll(); },
                           [t = impl.get()] { t->polling_stopped(); }});
    use_polling_scheduler(caf_config_, config_.idle_spin, std::move(pollers));
  }
  system_ = std::make_unique<caf::actor_system>(caf_config_);
  supervisor_ = system_->spawn<supervisor>(*this);
}

node_impl::~node_impl() {
  for (auto it = plugins_.rbegin(); it != plugins_.rend(); ++it)
    it->second->stop(); // no plug-in's verb from here on
  if (durable_) {
    durable_ready_.store(nullptr, std::memory_order_release);
    durable_->stop(); // no durable verb from here on
  }
  endpoint_.reset(); // nobody reads the node while it goes
  if (auto* seeds = dynamic_cast<seed_directory*>(dir_.get()))
    seeds->stop_asking(); // no new links to ask over
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
  write_log(config_, level, line, {});
}

void node_impl::log_event(log_level level, std::string_view line,
                          const log_fields& fields) const {
  write_log(config_, level, line, fields);
}

void node_impl::log_peer_fault(std::string_view line,
                               const log_fields& fields) const {
  if (std::uint64_t held = 0; peer_faults_.pass(held))
    write_log(config_, log_level::warning,
              std::string{line} + held_back_note(held), fields);
}

// -- node_impl: types ------------------------------------------------------------

bool valid_type_name(std::string_view name) noexcept {
  if (name.empty() || name.front() == '.' || name.back() == '.')
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '.';
  });
}

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
    if (added)
      ++types_version_;
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
  if (std::uint64_t held = 0;
      dead_gates_[static_cast<std::size_t>(reason)].pass(held)) {
    auto why = to_string(reason);
    std::string line = "dropped a message";
    if (msg)
      line += " of type " + msg->GetDescriptor()->full_name();
    line += " to " + quoted(target);
    if (sender != nullptr && !sender->name.empty())
      line += " from " + quoted(sender->name);
    line += " as a dead letter: ";
    line += why;
    line += held_back_note(held);
    log_event(log_level::info, line, {target, {}, why, {}});
  }
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


void letter::report_unconsumed() noexcept {
  if (auto* office = duty_.take())
    office->report_dead_letter(dead_letter_reason::actor_stopped,
                               target ? target->name : "", payload,
                               sender.get());
}

// -- durable delivery ---------------------------------------------------------

expected<void> node_impl::start_durable() {
  if (!config_.durable)
    return {};
  lent_ = std::make_unique<node>(node::borrow(*this));
  auto made = config_.durable(*lent_);
  if (!made)
    return error{made.code(), "durable delivery: " + made.error().message()};
  if (*made == nullptr)
    return error{errc::invalid_argument,
                 "durable delivery: the factory made nothing"};
  durable_ = std::move(*made);
  durable_ready_.store(durable_.get(), std::memory_order_release);
  return {};
}

// -- plug-ins -----------------------------------------------------------------

expected<void> node_impl::start_plugins() {
  for (auto& [name, factory] : config_.plugins) {
    if (!lent_)
      lent_ = std::make_unique<node>(node::borrow(*this));
    auto made = factory ? factory(*lent_)
                        : expected<std::unique_ptr<node_plugin>>{
                          errc::invalid_argument, "an empty factory"};
    if (made && *made == nullptr)
      made = error{errc::invalid_argument, "the factory made nothing"};
    if (!made)
      return error{made.code(),
                   "the plug-in '" + name + "': " + made.error().message()};
    plugins_.emplace_back(name, std::move(*made));
  }
  return {};
}

expected<std::string> node_impl::plugin_address(std::string_view name) const {
  for (const auto& [registered, plugin] : plugins_)
    if (registered == name)
      return plugin->address();
  return error{errc::not_found,
               "node " + quoted(config_.name) + " has no plug-in "
                 + quoted(name)};
}

expected<std::uint64_t> node_impl::post_durable(std::string_view to,
                                                const message& msg,
                                                const post_options& options,
                                                const trace_context& trace) {
  auto* durable = durable_ready_.load(std::memory_order_acquire);
  if (durable == nullptr)
    return error{errc::failed_precondition,
                 "node " + quoted(config_.name)
                   + " has no durable store (node_config::durable)"};
  if (!msg)
    return error{errc::invalid_argument, "cannot post a null message"};
  return durable->post(to, msg, options, trace);
}

void node_impl::accept_durable(std::string_view target, message transfer,
                               std::function<void(expected<message>)> answer) {
  auto* durable = durable_ready_.load(std::memory_order_acquire);
  if (durable == nullptr)
    return link_host::accept_durable(target, std::move(transfer),
                                     std::move(answer));
  durable->accept(target, std::move(transfer), std::move(answer));
}

} // namespace courier::detail

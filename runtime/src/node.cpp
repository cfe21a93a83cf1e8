// The public facade, courier::node: each member forwards to the node's
// private state (node_impl.hpp) or, for the verbs, to verbs.hpp with a
// plain thread as the caller. Also the small public classes with nothing
// of their own to hide (actor_ref, behavior).

#include <atomic>
#include <cstdio>
#include <optional>

#include <unistd.h>

#include <caf/scoped_actor.hpp>

#include "etcd_directory.hpp"
#include "file_directory.hpp"
#include "seed_directory.hpp"
#include "node_impl.hpp"
#include "shell.hpp"
#include "verbs.hpp"

// -- public facade -------------------------------------------------------------------

namespace courier {

namespace {

/// Starts a request from a plain thread's scoped actor, CAF keeping its
/// deadline.
expected<detail::started_request>
start_blocking_request(detail::node_impl& node, caf::scoped_actor& self,
                       detail::route_cache& routes, const auto& to, message msg,
                       deadline until, bool broadcast = false) {
  auto started = [&] {
    detail::verb_caller caller{detail::no_binding(), routes, self.ptr()};
    if constexpr (std::is_same_v<std::decay_t<decltype(to)>, detail::route>)
      return detail::start_request(node, caller, to, std::move(msg), until,
                                   false, broadcast);
    else
      return detail::start_request(node, caller, to, std::move(msg), until,
                                   false);
  }();
  if (started)
    self->request_response_timeout(detail::to_caf(until), started->id);
  return started;
}

/// Blocks until the answer to `started` comes, or the error that ends it
/// (deadline_exceeded when CAF's timeout fires first).
expected<message> wait_for_answer(caf::scoped_actor& self,
                                  const detail::started_request& started) {
  expected<message> outcome{errc::internal, "no outcome"};
  caf::response_handle<caf::blocking_actor, caf::message, true>{
    started.id.response_id(), self.ptr()}
    .receive(
      [&](detail::reply_msg& reply) {
        detail::answered(*started.target, started.sent);
        outcome = detail::outcome_of(reply);
      },
      [&](caf::error& err) {
        outcome = detail::outcome_of(err, *started.target);
      });
  return outcome;
}

/// The node's log sink, as node_impl::log writes it, for a directory (the
/// directory comes first, so it cannot use the node's).
std::function<void(log_level, std::string_view)>
directory_log(const node_config& config) {
  node_config words; // what write_log reads of the node's
  words.name = config.name;
  words.log = config.log;
  words.log_format = config.log_format;
  return [words = std::move(words)](log_level level, std::string_view line) {
    detail::write_log(words, level, line, {});
  };
}

/// The cluster registry named by config.registry, with `local` (the
/// machine's directory) for the local tiers' folder.
expected<std::unique_ptr<detail::directory>>
join_registry(const node_config& config,
              std::unique_ptr<detail::file_directory> local) {
  detail::etcd_directory_options options;
  options.url = config.registry;
  options.node = config.name;
  options.lease = config.registry_lease;
  options.timeout = config.registry_timeout;
  options.log = directory_log(config);
  auto joined = detail::etcd_directory::join(std::move(options),
                                             std::move(local));
  if (!joined)
    return std::move(joined).error();
  return std::unique_ptr<detail::directory>{std::move(*joined)};
}

} // namespace

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
  for (const auto& rule : config.rules)
    if (auto checked = check_rule(rule); !checked)
      return checked.error();
  try {
    std::unique_ptr<detail::directory> dir;
    if (config.join_directory) {
      auto path = config.directory.empty() ? detail::default_directory()
                                           : config.directory;
      auto joined = detail::file_directory::join(path, config.name);
      if (!joined)
        return std::move(joined).error();
      if (!config.seeds.empty()) {
        if (!config.registry.empty())
          return error{errc::invalid_argument,
                       "a node finds other machines' nodes through seeds or "
                       "a registry, not both"};
        for (const auto& seed : config.seeds)
          if (auto checked = detail::check_seed(seed); !checked)
            return checked.error();
        dir = std::make_unique<detail::seed_directory>(
          config.seeds, std::move(*joined), config.seed_cache_ttl,
          directory_log(config));
      } else if (config.registry.empty()) {
        dir = std::move(*joined);
      } else {
        auto registry = join_registry(config, std::move(*joined));
        if (!registry)
          return std::move(registry).error();
        dir = std::move(*registry);
      }
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
    auto* raw = impl.get();
    node started{std::move(impl)};
    if (auto durable = raw->start_durable(); !durable)
      return durable.error();
    if (auto plugins = raw->start_plugins(); !plugins)
      return plugins.error();
    return started;
  } catch (const std::exception& ex) {
    return error{errc::internal, std::string{"cannot start node: "} + ex.what()};
  }
}

node::node(std::unique_ptr<detail::node_impl> impl) noexcept
  : impl_(std::move(impl)) {
}

node node::borrow(detail::node_impl& impl) noexcept {
  node lent{std::unique_ptr<detail::node_impl>{&impl}};
  lent.borrowed_ = true;
  return lent;
}

node::node(node&& other) noexcept
  : impl_(std::move(other.impl_)),
    borrowed_(std::exchange(other.borrowed_, false)) {
}

node& node::operator=(node&& other) noexcept {
  if (this != &other) {
    if (borrowed_)
      (void)impl_.release();
    impl_ = std::move(other.impl_);
    borrowed_ = std::exchange(other.borrowed_, false);
  }
  return *this;
}

node::~node() {
  if (borrowed_)
    (void)impl_.release();
}

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
  if (detail::shell::current() != nullptr) {
    options.wait_for_room = {}; // an actor's thread never blocks
    options.lend_thread = false; // nor runs another actor
  }
  detail::route_cache routes{0};
  return detail::post(*impl_,
                      detail::verb_caller{detail::no_binding(), routes, nullptr},
                      to, std::move(msg), std::move(options));
}

void node::log(log_level level, std::string_view line) const {
  impl_->log(level, line);
}

expected<std::uint64_t> node::post_durable(destination to, message msg,
                                           post_options options) {
  options.durable = true;
  trace_context trace;
  detail::next_trace(trace, nullptr, impl_->config().trace);
  return impl_->post_durable(to.name(), msg, options, trace);
}

expected<message> node::send(destination to, message msg, deadline until) {
  if (detail::shell::current() != nullptr)
    return error{errc::failed_precondition,
                 "node::send blocks; inside an actor use context::request"};
  caf::scoped_actor self{impl_->system()};
  detail::route_cache routes{0};
  auto started = start_blocking_request(*impl_, self, routes, to,
                                        std::move(msg), until);
  if (!started)
    return std::move(started).error();
  return wait_for_answer(self, *started);
}

namespace {

/// Where node::request_here's answer goes: the first of the answer, the
/// timer and the letter's death (the sink destroyed unanswered) calls back.
class callback_reply final : public detail::reply_sink {
public:
  callback_reply(std::function<void(expected<message>)> on_outcome,
                 std::string target)
    : on_outcome_(std::move(on_outcome)), target_(std::move(target)) {}

  ~callback_reply() override {
    if (!done_.load(std::memory_order_acquire)) // the usual case: no text
      finish(error{errc::aborted,
                   detail::quoted(target_) + " stopped before replying"});
  }

  void deliver(detail::reply_msg reply) override {
    finish(detail::outcome_of(reply));
  }

  /// Calls back, unless something did already.
  void finish(expected<message> outcome) {
    if (!done_.exchange(true, std::memory_order_acq_rel))
      on_outcome_(std::move(outcome));
  }

  /// Never calls back: the request was not sent.
  void disarm() noexcept {
    done_.store(true, std::memory_order_release);
  }

  const std::string& target() const noexcept {
    return target_;
  }

private:
  std::atomic<bool> done_{false};
  std::function<void(expected<message>)> on_outcome_;
  std::string target_;
};

} // namespace

expected<bool>
node::request_here(destination to, message msg, deadline until,
                   std::function<void(expected<message>)> on_outcome) {
  auto sink = std::make_shared<callback_reply>(std::move(on_outcome),
                                               std::string{to.name()});
  std::weak_ptr<callback_reply> weak = sink;
  detail::route_cache routes{0};
  auto sent = detail::request_to_sink(
    *impl_, detail::verb_caller{detail::no_binding(), routes, nullptr}, to,
    std::move(msg), until, sink,
    /*lend_thread=*/detail::shell::current() == nullptr);
  if (!sent || !*sent) {
    sink->disarm(); // dropped unsent, it must not call back
    return sent;
  }
  sink.reset();
  // The timer holds the request weakly: once answered, its letter and
  // sink are gone and the entry is dead weight the timer drops.
  if (!until.is_never() && !weak.expired())
    impl_->timer().at(until.at(), weak, [weak] {
      if (auto pending = weak.lock())
        pending->finish(error{errc::deadline_exceeded,
                              "no reply from " + detail::quoted(pending->target())
                                + " before the deadline"});
    });
  return true;
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
  detail::route_cache routes{0};
  if (detail::shell::current() != nullptr)
    return detail::refuse_broadcast(
      *impl_, detail::verb_caller{detail::no_binding(), routes, nullptr},
      pattern,
      error{errc::failed_precondition,
            "node::broadcast blocks; inside an actor use context::broadcast"});
  caf::scoped_actor self{impl_->system()};
  auto plan = detail::plan_broadcast(
    *impl_, detail::verb_caller{detail::no_binding(), routes, self.ptr()},
    pattern, msg);
  auto result = std::move(plan.known);
  // One trace for all the requests, if one starts here.
  std::optional<trace_scope> traced;
  if (detail::starts_trace(nullptr, impl_->config().trace))
    traced.emplace(trace_context::start());
  // Send every request first, then collect: the waits overlap, so the whole
  // broadcast takes at most until the deadline.
  std::vector<expected<detail::started_request>> pending;
  pending.reserve(plan.targets.size());
  for (auto& target : plan.targets)
    pending.push_back(
      start_blocking_request(*impl_, self, routes, target, msg, until, true));
  traced.reset();
  for (std::size_t i = 0; i < pending.size(); ++i) {
    auto name = plan.targets[i].slot->name;
    detail::classify(result, std::move(name),
                     pending[i] ? wait_for_answer(self, *pending[i])
                                : expected<message>{pending[i].error()});
  }
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

std::vector<service_info> node::served_services() const {
  return impl_->served_services();
}

std::vector<route_info> node::routes() const {
  return impl_->routes();
}

expected<std::vector<std::string>>
node::published_types(std::string_view node_name) const {
  return impl_->published_types(node_name);
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

std::uint64_t node::refusals() const noexcept {
  return impl_->refusals();
}

std::uint64_t node::dead_letters() const noexcept {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < dead_letter_reason_count; ++i)
    total += impl_->dead_letters(static_cast<dead_letter_reason>(i));
  return total;
}

metrics_snapshot node::metrics() const {
  return impl_->snapshot_metrics();
}

std::string node::metrics_address() const {
  return impl_->metrics_address();
}

expected<std::string> node::plugin_address(std::string_view name) const {
  return impl_->plugin_address(name);
}

} // namespace courier

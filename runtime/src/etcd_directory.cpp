#include "etcd_directory.hpp"

#include <algorithm>
#include <cstdio>

#include <unistd.h>

#include "etcd_client.hpp"
#include "file_directory.hpp"

namespace courier::detail {

namespace {

using namespace std::chrono_literals;

std::string quoted(std::string_view text) {
  return "'" + std::string{text} + "'";
}

/// A lease TTL in whole seconds, rounded up, at least one.
std::chrono::seconds whole_seconds(std::chrono::milliseconds ttl) {
  auto secs = std::chrono::ceil<std::chrono::seconds>(ttl);
  return std::max(secs, std::chrono::seconds{1});
}

} // namespace

// -- joining and leaving ------------------------------------------------------

etcd_directory::etcd_directory(etcd_directory_options options,
                               std::unique_ptr<file_directory> local,
                               std::unique_ptr<etcd_client> client,
                               std::string prefix)
  : options_(std::move(options)), local_(std::move(local)),
    client_(std::move(client)), prefix_(std::move(prefix)) {}

expected<std::unique_ptr<etcd_directory>>
etcd_directory::join(etcd_directory_options options,
                     std::unique_ptr<file_directory> local) {
  COURIER_RUNTIME_ASSERT(local != nullptr, "the registry needs a local folder");
  auto target = parse_etcd_url(options.url);
  if (!target)
    return std::move(target).error();
  if (options.timeout <= 0ms)
    return error{errc::invalid_argument,
                 "the registry's call timeout must be positive"};
  auto client = etcd_client::make(target->endpoints, options.timeout);
  if (!client)
    return std::move(client).error();
  auto url = options.url;
  auto dir = std::unique_ptr<etcd_directory>{new etcd_directory(
    std::move(options), std::move(local), std::move(*client), target->prefix)};
  v1::NodeRecord first; // until the node publishes its own
  first.set_name(dir->options_.node);
  first.set_pid(::getpid());
  if (auto registered = dir->register_node(first.SerializeAsString());
      !registered)
    return error{registered.code(),
                 "the registry " + url + ": " + registered.error().message()};
  dir->keep_alive_thread_
    = std::thread{[d = dir.get()] { d->keep_alive_loop(); }};
  dir->watch_thread_ = std::thread{[d = dir.get()] { d->watch_loop(); }};
  return dir;
}

etcd_directory::~etcd_directory() {
  {
    std::lock_guard guard{mu_};
    stopping_ = true;
  }
  wake_.notify_all();
  client_->interrupt_watch();
  if (keep_alive_thread_.joinable())
    keep_alive_thread_.join();
  if (watch_thread_.joinable())
    watch_thread_.join();
  // No lock needed from here: the threads are gone.
  if (lease_ != 0) {
    if (auto revoked = client_->revoke_lease(lease_); !revoked)
      log(log_level::warning,
          "cannot revoke the registry lease (" + revoked.error().message()
            + "): the node's record and names go when it lapses");
  }
  // The local tiers' endpoints, as file_directory removes its own.
  v1::NodeRecord record;
  if (record.ParseFromString(published_)) {
    auto inside = local_dir() + "/";
    for (const auto& endpoint : record.endpoints())
      if (endpoint.address().starts_with(inside)
          && endpoint.address().find("/..") == std::string::npos)
        ::unlink(endpoint.address().c_str());
  }
}

expected<void> etcd_directory::register_node(const std::string& record) {
  auto granted = client_->grant_lease(whole_seconds(options_.lease));
  if (!granted)
    return std::move(granted).error();
  auto [lease, ttl] = *granted;
  if (ttl.count() <= 0)
    ttl = whole_seconds(options_.lease);
  auto created = client_->create(node_key(options_.node), record, lease);
  if (!created || !created->created)
    (void)client_->revoke_lease(lease); // best effort: it lapses anyway
  if (!created)
    return std::move(created).error();
  if (!created->created) {
    v1::NodeRecord holder;
    std::string where;
    if (holder.ParseFromString(created->existing.value))
      where = " (pid " + std::to_string(holder.pid()) + " on host "
              + (holder.host_id().empty() ? "?" : holder.host_id()) + ")";
    return error{errc::already_exists, "a live node named "
                                         + quoted(options_.node)
                                         + " is registered" + where};
  }
  std::lock_guard guard{mu_};
  lease_ = lease;
  if (ttl_.count() == 0) // the first registration, before the threads run
    ttl_ = ttl;
  return {};
}

// -- keys and logging ---------------------------------------------------------

std::string etcd_directory::node_key(std::string_view node) const {
  return prefix_ + "nodes/" + std::string{node};
}

std::string etcd_directory::name_key(std::string_view actor) const {
  return prefix_ + "names/" + std::string{actor};
}

void etcd_directory::log(log_level level, const std::string& line) const {
  if (options_.log) {
    options_.log(level, line);
    return;
  }
  if (level >= log_level::warning)
    std::fprintf(stderr, "courier[%s] registry: %s\n", options_.node.c_str(),
                 line.c_str());
}

std::string etcd_directory::local_dir() const {
  return local_->local_dir();
}

std::string etcd_directory::access_warning() const {
  return local_->access_warning();
}

// -- writes
// ---------------------------------------------------------------------

expected<void> etcd_directory::publish(const v1::NodeRecord& record) {
  std::string data;
  if (!record.SerializeToString(&data))
    return error{errc::internal, "cannot serialize the node record"};
  std::int64_t lease = 0;
  {
    std::lock_guard guard{mu_};
    published_ = data; // what a new registration uses, too
    lease = lease_;
  }
  if (lease == 0)
    return error{errc::unavailable, "node " + quoted(options_.node)
                                      + " is not registered (its lease "
                                        "lapsed; registering again)"};
  auto replaced
    = client_->replace_if_lease(node_key(options_.node), data, lease);
  if (!replaced && replaced.code() != errc::not_found)
    return error{replaced.code(), "cannot publish the node record: "
                                    + replaced.error().message()};
  if (!replaced || !*replaced) { // not_found: etcd knows no such lease
    {
      std::lock_guard guard{mu_};
      poked_ = true;
    }
    wake_.notify_all();
    return error{errc::unavailable, "the record of node "
                                      + quoted(options_.node)
                                      + " is gone from the registry (its "
                                        "lease lapsed)"};
  }
  return {};
}

expected<void> etcd_directory::claim_name(std::string_view actor) {
  std::int64_t lease = 0;
  {
    std::lock_guard guard{mu_};
    lease = lease_;
  }
  if (lease == 0)
    return error{errc::unavailable,
                 "cannot claim " + quoted(actor) + ": node "
                   + quoted(options_.node)
                   + " is not registered (its lease lapsed; registering "
                     "again)"};
  auto created = client_->create(name_key(actor), options_.node, lease);
  if (!created) {
    if (created.code() == errc::not_found) { // etcd knows no such lease
      {
        std::lock_guard guard{mu_};
        poked_ = true;
      }
      wake_.notify_all();
      return error{errc::unavailable, "cannot claim " + quoted(actor)
                                        + ": the lease of node "
                                        + quoted(options_.node) + " lapsed"};
    }
    return error{created.code(), "cannot claim " + quoted(actor) + ": "
                                   + created.error().message()};
  }
  std::lock_guard guard{mu_};
  if (created->created) {
    held_.emplace(actor);
    releases_.erase(std::string{actor});
    return {};
  }
  auto& holder = created->existing.value;
  if (holder == options_.node && created->existing.lease == lease
      && releases_.erase(std::string{actor}) > 0) {
    held_.emplace(actor); // a release that failed, now undone
    return {};
  }
  return error{errc::already_exists, "the name " + quoted(actor)
                                       + " is held by node " + quoted(holder)};
}

void etcd_directory::release_name(std::string_view actor) {
  {
    std::lock_guard guard{mu_};
    auto it = held_.find(actor);
    if (it == held_.end())
      return;
    held_.erase(it);
  }
  auto deleted = client_->delete_if_value(name_key(actor), options_.node);
  if (!deleted) {
    log(log_level::warning, "cannot release the name " + quoted(actor) + " ("
                              + deleted.error().message()
                              + "); trying again with each renewal");
    std::lock_guard guard{mu_};
    releases_.emplace(actor);
  }
}

// -- reads
// ----------------------------------------------------------------------

expected<std::string> etcd_directory::owner_of(std::string_view actor) {
  {
    std::lock_guard guard{mu_};
    if (watch_up_ && renewals_ok_)
      if (auto it = owners_.find(actor); it != owners_.end())
        return it->second;
  }
  auto read = client_->range(name_key(actor));
  if (!read)
    return error{read.code(), "cannot look up " + quoted(actor) + ": "
                                + read.error().message()};
  if (read->kvs.empty())
    return error{errc::not_found,
                 "no actor named " + quoted(actor) + " in the registry"};
  auto owner = std::move(read->kvs.front().value);
  std::lock_guard guard{mu_};
  if (watch_up_ && renewals_ok_ && read->revision >= watch_revision_)
    owners_.emplace(std::string{actor}, owner);
  return owner;
}

expected<v1::NodeRecord> etcd_directory::read_node(std::string_view node) {
  {
    std::lock_guard guard{mu_};
    if (watch_up_ && renewals_ok_)
      if (auto it = records_.find(node); it != records_.end())
        return it->second;
  }
  auto read = client_->range(node_key(node));
  if (!read)
    return error{read.code(), "cannot look up node " + quoted(node) + ": "
                                + read.error().message()};
  if (read->kvs.empty())
    return error{errc::not_found,
                 "no live node named " + quoted(node) + " in the registry"};
  v1::NodeRecord record;
  if (!record.ParseFromString(read->kvs.front().value))
    return error{errc::not_found,
                 "node " + quoted(node) + " has no readable record"};
  std::lock_guard guard{mu_};
  if (watch_up_ && renewals_ok_ && read->revision >= watch_revision_)
    records_.emplace(std::string{node}, record);
  return record;
}

std::vector<v1::NodeRecord> etcd_directory::nodes() {
  std::vector<v1::NodeRecord> out;
  auto from = prefix_ + "nodes/";
  auto read = client_->range(from, etcd_prefix_end(from));
  if (!read) {
    log(log_level::warning, "cannot list the nodes: " + read.error().message());
    return out;
  }
  for (auto& kv : read->kvs) // sorted by key, so by node name
    if (v1::NodeRecord record; record.ParseFromString(kv.value))
      out.push_back(std::move(record));
  return out;
}

std::vector<std::pair<std::string, std::string>> etcd_directory::names() {
  std::vector<std::pair<std::string, std::string>> out;
  auto from = prefix_ + "names/";
  auto read = client_->range(from, etcd_prefix_end(from));
  if (!read) {
    log(log_level::warning, "cannot list the names: " + read.error().message());
    return out;
  }
  for (auto& kv : read->kvs) // sorted by key, so by actor name
    out.emplace_back(kv.key.substr(from.size()), std::move(kv.value));
  return out;
}

void etcd_directory::suspect(std::string_view node) {
  std::lock_guard guard{mu_};
  if (auto it = records_.find(node); it != records_.end())
    records_.erase(it);
  std::erase_if(owners_,
                [&](const auto& entry) { return entry.second == node; });
}

bool etcd_directory::cache_trusted() const {
  std::lock_guard guard{mu_};
  return watch_up_ && renewals_ok_;
}

// -- the keepalive thread -----------------------------------------------------

bool etcd_directory::wait_for(std::chrono::milliseconds period) {
  std::unique_lock guard{mu_};
  wake_.wait_for(guard, period, [this] { return stopping_ || poked_; });
  poked_ = false;
  return stopping_;
}

void etcd_directory::distrust_cache() {
  {
    std::lock_guard guard{mu_};
    renewals_ok_ = false;
    owners_.clear();
    records_.clear();
  }
  client_->interrupt_watch(); // a half-open watch would never say so
}

void etcd_directory::keep_alive_loop() {
  auto period = std::max<std::chrono::milliseconds>(
    std::chrono::duration_cast<std::chrono::milliseconds>(ttl_) / 3, 100ms);
  while (!wait_for(period)) {
    std::int64_t lease = 0;
    bool was_ok = true;
    {
      std::lock_guard guard{mu_};
      lease = lease_;
      was_ok = renewals_ok_;
    }
    if (lease == 0) {
      reregister();
      continue;
    }
    auto left = client_->keep_alive(lease);
    if (!left && left.code() != errc::not_found) {
      if (was_ok)
        log(log_level::warning,
            "cannot renew the registry lease (" + left.error().message()
              + "); lookups bypass the cache until a renewal succeeds");
      distrust_cache();
      continue;
    }
    if (left && *left > 0) {
      if (!was_ok) {
        log(log_level::info, "the registry lease is renewed again");
        std::lock_guard guard{mu_};
        renewals_ok_ = true;
      }
      retry_releases();
      continue;
    }
    // etcd no longer knows the lease: it lapsed (this process was frozen
    // or cut off past the TTL) or etcd lost it. Everyone saw us down.
    lease_losses_++;
    log(log_level::error,
        "the registry lease of node " + quoted(options_.node)
          + " lapsed (not renewed within " + std::to_string(ttl_.count())
          + " s, or etcd lost it): every node saw this node down and its "
            "names free; registering again");
    {
      std::lock_guard guard{mu_};
      lease_ = 0;
      renewals_ok_ = true;
      releases_.clear(); // they went with the lease
    }
    reregister();
  }
}

void etcd_directory::reregister() {
  std::string record;
  std::set<std::string, std::less<>> names;
  {
    std::lock_guard guard{mu_};
    record = published_;
    names = held_;
  }
  if (record.empty()) {
    v1::NodeRecord first;
    first.set_name(options_.node);
    first.set_pid(::getpid());
    record = first.SerializeAsString();
  }
  auto registered = register_node(record);
  if (!registered) {
    // Logged once per outage; tried again each period.
    if (!reregister_failing_)
      log(log_level::error,
          "cannot register node " + quoted(options_.node) + " again ("
            + registered.error().message() + "); trying again each "
            + std::to_string(ttl_.count() * 1000 / 3) + " ms");
    reregister_failing_ = true;
    return;
  }
  reregister_failing_ = false;
  std::int64_t lease = 0;
  {
    std::lock_guard guard{mu_};
    lease = lease_;
  }
  for (auto& actor : names) {
    auto claimed = client_->create(name_key(actor), options_.node, lease);
    if (!claimed) {
      log(log_level::warning, "cannot claim " + quoted(actor) + " again ("
                                + claimed.error().message()
                                + "); registering again");
      (void)client_->revoke_lease(lease);
      std::lock_guard guard{mu_};
      lease_ = 0;
      return;
    }
    if (claimed->created) {
      bool still_held = false;
      {
        std::lock_guard guard{mu_};
        still_held = held_.contains(actor);
      }
      if (!still_held) // released meanwhile: do not keep it in etcd
        (void)client_->delete_if_value(name_key(actor), options_.node);
      continue;
    }
    if (claimed->existing.value != options_.node) {
      log(log_level::error,
          "the name " + quoted(actor) + " went to node "
            + quoted(claimed->existing.value)
            + " while this node was down: other nodes reach that one by "
              "it; this node's actor keeps it only locally");
      std::lock_guard guard{mu_};
      held_.erase(actor);
    }
  }
  std::string now_published;
  {
    std::lock_guard guard{mu_};
    now_published = published_;
  }
  // A publish that failed while the node was out: write it now.
  if (!now_published.empty() && now_published != record)
    (void)client_->replace_if_lease(node_key(options_.node), now_published,
                                    lease);
  log(log_level::warning,
      "node " + quoted(options_.node) + " is registered again");
}

void etcd_directory::retry_releases() {
  std::set<std::string, std::less<>> pending;
  {
    std::lock_guard guard{mu_};
    pending = releases_;
  }
  for (auto& actor : pending) {
    if (!client_->delete_if_value(name_key(actor), options_.node))
      return; // etcd is unwell again: next time
    std::lock_guard guard{mu_};
    releases_.erase(actor);
  }
}

// -- the watch thread
// -----------------------------------------------------------

void etcd_directory::watch_loop() {
  auto backoff = 100ms;
  bool reported = false;
  auto prefix_end = etcd_prefix_end(prefix_);
  while (!stopping_) {
    auto began = std::chrono::steady_clock::now();
    auto watched = client_->watch(
      prefix_, prefix_end,
      [&](etcd_watch_update&& update) {
        if (update.created && reported) {
          log(log_level::info, "the registry watch is back");
          reported = false;
        }
        on_watch_update(std::move(update));
      },
      stopping_);
    {
      std::lock_guard guard{mu_};
      watch_up_ = false;
      owners_.clear();
      records_.clear();
    }
    if (stopping_)
      break;
    if (std::chrono::steady_clock::now() - began > 10s)
      backoff = 100ms; // it ran well for a while: not a tight loop
    if (!reported)
      log(log_level::warning, "the registry watch broke ("
                                + watched.error().message()
                                + "); lookups bypass the cache until it is "
                                  "back");
    reported = true;
    std::unique_lock guard{mu_};
    if (wake_.wait_for(guard, backoff, [this] { return stopping_.load(); }))
      break;
    backoff = std::min<std::chrono::milliseconds>(backoff * 2, 5s);
  }
}

void etcd_directory::on_watch_update(etcd_watch_update&& update) {
  bool own_record_gone = false;
  {
    std::lock_guard guard{mu_};
    if (update.created) {
      watch_up_ = true;
      watch_revision_ = update.revision;
      owners_.clear();
      records_.clear();
      return;
    }
    auto nodes = prefix_ + "nodes/";
    auto names = prefix_ + "names/";
    for (auto& event : update.events) {
      std::string_view key = event.kv.key;
      if (key.starts_with(nodes)) {
        key.remove_prefix(nodes.size());
        if (auto it = records_.find(key); it != records_.end())
          records_.erase(it);
        if (event.deleted && key == options_.node)
          own_record_gone = true;
      } else if (key.starts_with(names)) {
        key.remove_prefix(names.size());
        if (auto it = owners_.find(key); it != owners_.end())
          owners_.erase(it);
      }
      watch_revision_ = std::max(watch_revision_, event.kv.mod_revision);
    }
    watch_revision_ = std::max(watch_revision_, update.revision);
    if (own_record_gone)
      poked_ = true; // renew now: the keepalive finds out why
  }
  if (own_record_gone)
    wake_.notify_all();
}

} // namespace courier::detail

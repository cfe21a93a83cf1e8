#include "seed_directory.hpp"

#include <algorithm>
#include <set>

#include "binding.hpp"
#include "file_directory.hpp"

namespace courier::detail {

namespace {

/// The tier a seed's address is for: the TCP tier takes both schemes.
constexpr std::string_view seed_tier = "tcp";

bool has_scheme(std::string_view address) {
  return address.starts_with("tls://") || address.starts_with("tcp://");
}

/// A record for a seed that has not answered yet: its name and address.
v1::NodeRecord record_of(const seed& s) {
  v1::NodeRecord record;
  record.set_name(s.node);
  auto* endpoint = record.add_endpoints();
  endpoint->set_tier(std::string{seed_tier});
  endpoint->set_address(s.address);
  return record;
}

} // namespace

expected<void> check_seed(const seed& s) {
  if (!valid_name(s.node))
    return error{errc::invalid_argument,
                 "seed " + quoted(s.node) + ": not a valid node name"};
  auto after = s.address.find("://");
  if (!has_scheme(s.address) || after == std::string::npos
      || s.address.rfind(':') <= after + 2)
    return error{errc::invalid_argument,
                 "seed " + quoted(s.node) + ": the address " + quoted(s.address)
                   + " is not tls://host:port or tcp://host:port"};
  return {};
}

} // namespace courier::detail

namespace courier {

expected<seed> parse_seed(std::string_view text) {
  auto at = text.find('@');
  if (at == std::string_view::npos)
    return error{errc::invalid_argument,
                 detail::quoted(text)
                   + " is not a seed: write node@tls://host:port"};
  seed out{std::string{text.substr(0, at)}, std::string{text.substr(at + 1)}};
  if (auto checked = detail::check_seed(out); !checked)
    return checked.error();
  return out;
}

} // namespace courier

namespace courier::detail {

seed_directory::seed_directory(
  std::vector<seed> seeds, std::unique_ptr<file_directory> local,
  std::chrono::milliseconds max_age,
  std::function<void(log_level, std::string_view)> log)
  : local_(std::move(local)), max_age_(max_age), log_(std::move(log)) {
  for (auto& s : seeds) {
    known entry;
    entry.record = record_of(s);
    entry.where = std::move(s);
    seeds_.push_back(std::move(entry));
  }
}

seed_directory::~seed_directory() = default;

void seed_directory::start_asking(lister list) {
  std::lock_guard guard{mu_};
  list_ = std::move(list);
}

void seed_directory::stop_asking() {
  std::lock_guard ask{ask_mu_}; // an ask under way finishes first
  std::lock_guard guard{mu_};
  list_ = nullptr;
}

std::string seed_directory::local_dir() const {
  return local_->local_dir();
}

std::string seed_directory::access_warning() const {
  return local_->access_warning();
}

expected<void> seed_directory::publish(const v1::NodeRecord& record) {
  return local_->publish(record);
}

seed_directory::known* seed_directory::find(std::string_view node) {
  for (auto& entry : seeds_)
    if (entry.where.node == node)
      return &entry;
  return nullptr;
}

void seed_directory::refresh(bool all) {
  std::unique_lock ask{ask_mu_, std::try_to_lock};
  if (!ask.owns_lock()) {
    std::lock_guard wait{ask_mu_}; // someone asks: their answers will do
    return;
  }
  auto now = std::chrono::steady_clock::now();
  std::vector<std::string> due;
  lister list;
  {
    std::lock_guard guard{mu_};
    if (!list_)
      return;
    list = list_;
    for (auto& entry : seeds_)
      if (all || !entry.answered || now - entry.asked >= max_age_)
        due.push_back(entry.where.node);
  }
  for (const auto& node : due) {
    auto listed = list(node);
    if (listed)
      std::sort(listed->names.begin(), listed->names.end());
    std::lock_guard guard{mu_};
    auto* entry = find(node);
    if (entry == nullptr)
      continue;
    entry->asked = std::chrono::steady_clock::now();
    if (!listed) {
      if (!entry->silent && log_) // said once, until it answers again
        log_(log_level::warning,
             "seed " + quoted(node) + " (" + entry->where.address
               + ") does not answer: " + listed.error().message());
      entry->silent = true;
      entry->answered = false;
      entry->names.clear();
      continue;
    }
    if (entry->silent && log_)
      log_(log_level::info, "seed " + quoted(node) + " answers again");
    entry->silent = false;
    entry->answered = true;
    entry->names = std::move(listed->names);
    entry->record.clear_type_files();
    for (auto& file : listed->published.type_files)
      entry->record.add_type_files(std::move(file));
    entry->record.clear_services();
    for (auto& served : listed->published.services)
      *entry->record.add_services() = std::move(served);
  }
}

expected<void> seed_directory::claim_name(std::string_view actor) {
  refresh(false);
  {
    std::lock_guard guard{mu_};
    for (const auto& entry : seeds_)
      if (entry.answered
          && std::binary_search(entry.names.begin(), entry.names.end(), actor))
        return error{errc::already_exists,
                     "the name " + quoted(actor) + " is held by node "
                       + quoted(entry.where.node) + " (a seed)"};
  }
  return local_->claim_name(actor);
}

void seed_directory::release_name(std::string_view actor) {
  local_->release_name(actor);
}

expected<std::string> seed_directory::owner_of(std::string_view actor) {
  auto here = local_->owner_of(actor);
  if (here || here.code() != errc::not_found)
    return here;
  auto cached = [&]() -> std::optional<std::string> {
    std::lock_guard guard{mu_};
    auto now = std::chrono::steady_clock::now();
    for (const auto& entry : seeds_)
      if (entry.answered && now - entry.asked < max_age_
          && std::binary_search(entry.names.begin(), entry.names.end(), actor))
        return entry.where.node;
    return std::nullopt;
  };
  if (auto node = cached())
    return *node;
  refresh(false);
  if (auto node = cached())
    return *node;
  return here; // not_found, as the machine's directory says it
}

expected<v1::NodeRecord> seed_directory::read_node(std::string_view node) {
  auto here = local_->read_node(node);
  if (here || here.code() != errc::not_found)
    return here;
  std::lock_guard guard{mu_};
  if (auto* entry = find(node))
    return entry->record;
  return here;
}

std::vector<v1::NodeRecord> seed_directory::nodes() {
  refresh(false);
  auto out = local_->nodes();
  std::set<std::string> seen;
  for (const auto& record : out)
    seen.insert(record.name());
  {
    std::lock_guard guard{mu_};
    for (const auto& entry : seeds_)
      if (entry.answered && !seen.contains(entry.where.node))
        out.push_back(entry.record);
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.name() < b.name(); });
  return out;
}

std::vector<std::pair<std::string, std::string>> seed_directory::names() {
  refresh(false);
  auto out = local_->names();
  {
    std::lock_guard guard{mu_};
    for (const auto& entry : seeds_)
      if (entry.answered)
        for (const auto& name : entry.names)
          out.emplace_back(name, entry.where.node);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void seed_directory::suspect(std::string_view node) {
  {
    std::lock_guard guard{mu_};
    if (auto* entry = find(node)) {
      entry->asked = {}; // ask again at the next lookup
      return;
    }
  }
  local_->suspect(node);
}

void seed_directory::learn(const v1::NodeRecord& record) {
  std::lock_guard guard{mu_};
  auto* entry = find(record.name());
  if (entry == nullptr)
    return;
  // What the peer says of itself, with the configured address first: the
  // address this node can reach it at (the peer may advertise another).
  auto learned = record;
  // Types and services are asked apart (NamesQuery).
  *learned.mutable_type_files() = entry->record.type_files();
  *learned.mutable_services() = entry->record.services();
  learned.clear_endpoints();
  auto* first = learned.add_endpoints();
  first->set_tier(std::string{seed_tier});
  first->set_address(entry->where.address);
  for (const auto& endpoint : record.endpoints())
    if (endpoint.address() != entry->where.address)
      *learned.add_endpoints() = endpoint;
  entry->record = std::move(learned);
}

} // namespace courier::detail

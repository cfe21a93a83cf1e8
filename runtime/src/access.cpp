// Authorization rules and per-link decisions (access.hpp, courier/access.hpp).

#include "access.hpp"

#include <algorithm>
#include <array>
#include <bit>

namespace courier {

namespace {

constexpr std::array<std::pair<std::string_view, verbs>, 5> verb_words{{
  {"post", verbs::post},
  {"send", verbs::send},
  {"find", verbs::find},
  {"broadcast", verbs::broadcast},
  {"monitor", verbs::monitor},
}};

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t'))
    text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t'))
    text.remove_suffix(1);
  return text;
}

bool all_digits(std::string_view text) {
  if (text.empty() || text.size() > 10)
    return false;
  for (char c : text)
    if (c < '0' || c > '9')
      return false;
  return std::stoull(std::string{text}) <= 0xffffffffull;
}

} // namespace

expected<verbs> parse_verbs(std::string_view text) {
  auto whole = trimmed(text);
  if (whole == "all")
    return verbs::all;
  if (whole == "none")
    return verbs::none;
  verbs out = verbs::none;
  while (true) {
    auto comma = text.find(',');
    auto word = trimmed(text.substr(0, comma));
    auto known = std::find_if(verb_words.begin(), verb_words.end(),
                              [&](const auto& w) { return w.first == word; });
    if (known == verb_words.end())
      return error{errc::invalid_argument,
                   "'" + std::string{word}
                     + "' is not a verb (post, send, find, broadcast, "
                       "monitor, all, none)"};
    out |= known->second;
    if (comma == std::string_view::npos)
      return out;
    text.remove_prefix(comma + 1);
  }
}

std::string to_string(verbs set) {
  if (set == verbs::all)
    return "all";
  std::string out;
  for (const auto& [word, verb] : verb_words)
    if (allows(set, verb))
      out.append(out.empty() ? "" : ",").append(word);
  return out.empty() ? "none" : out;
}

expected<void> check_rule(const access_rule& rule) {
  auto refuse = [&](const std::string& why) {
    return error{errc::invalid_argument, "the rule for '" + rule.principal
                                           + "' on '" + rule.names
                                           + "' is malformed: " + why};
  };
  std::string_view who = rule.principal;
  auto colon = who.find(':');
  auto kind = who.substr(0, colon);
  if (who == "anonymous")
    kind = {};
  auto value = colon == std::string_view::npos ? std::string_view{}
                                               : who.substr(colon + 1);
  if (kind == "uid" || kind == "gid") {
    if (!all_digits(value))
      return refuse(std::string{kind} + " needs a number");
  } else if (kind == "cert" || kind == "san") {
    if (value.empty())
      return refuse(std::string{kind} + " needs a pattern");
  } else if (who != "anonymous") {
    return refuse("a principal is uid:<n>, gid:<n>, cert:<glob>, "
                  "san:<glob> or anonymous");
  }
  if (rule.names.empty())
    return refuse("the name pattern is empty");
  if ((rule.allowed & verbs::all) != rule.allowed)
    return refuse("unknown verb bits");
  return {};
}

} // namespace courier

namespace courier::detail {

link_access::link_access(std::string principal, std::vector<access_rule> rules,
                         bool unrestricted)
  : principal_(std::move(principal)), rules_(std::move(rules)),
    unrestricted_(
      unrestricted
      || std::any_of(rules_.begin(), rules_.end(), [](const access_rule& r) {
           return r.names == "*" && r.allowed == verbs::all;
         })) {}

std::shared_ptr<const link_access>
link_access::everything(std::string principal) {
  return std::make_shared<const link_access>(std::move(principal),
                                             std::vector<access_rule>{}, true);
}

verbs link_access::allowed(std::string_view target) const {
  if (unrestricted_)
    return verbs::all;
  auto name = target.substr(0, target.find('@'));
  // Names a peer may try are unbounded: keep a few thousand decisions,
  // then start over (each costs a glob per rule to make again).
  constexpr std::size_t max_decided = 4096;
  std::lock_guard guard{mu_};
  if (auto i = decided_.find(name); i != decided_.end())
    return i->second;
  verbs out = verbs::none;
  for (const auto& rule : rules_)
    if (glob_match(rule.names, name))
      out |= rule.allowed;
  if (decided_.size() >= max_decided)
    decided_.clear();
  decided_.emplace(std::string{name}, out);
  return out;
}

std::string_view verb_name(verbs verb) noexcept {
  for (const auto& [word, v] : verb_words)
    if (v == verb)
      return word;
  return "?";
}

std::uint64_t refusal_log::of(verbs verb) const noexcept {
  auto bits = static_cast<unsigned>(verb);
  if (bits == 0)
    return 0;
  auto bit = static_cast<std::size_t>(std::countr_zero(bits));
  return bit < by_verb_.size() ? by_verb_[bit].load(std::memory_order_relaxed)
                               : 0;
}

std::optional<std::string> refusal_log::count(std::string_view principal,
                                              std::string_view peer_node,
                                              verbs verb,
                                              std::string_view target) {
  auto total = total_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (auto bits = static_cast<unsigned>(verb); bits != 0)
    if (auto bit = static_cast<std::size_t>(std::countr_zero(bits));
        bit < by_verb_.size())
      by_verb_[bit].fetch_add(1, std::memory_order_relaxed);
  std::uint64_t unlogged = 0;
  {
    auto now = std::chrono::steady_clock::now();
    std::lock_guard guard{mu_};
    if (logged_any_ && now - last_line_ < interval_) {
      ++unlogged_;
      return std::nullopt;
    }
    logged_any_ = true;
    last_line_ = now;
    unlogged = std::exchange(unlogged_, 0);
  }
  std::string line = "permission_denied: ";
  line.append(principal);
  if (!peer_node.empty())
    line.append(" (node '").append(peer_node).append("')");
  line.append(" may not ")
    .append(verb_name(verb))
    .append(verb == verbs::find ? " " : " to ")
    .append("'")
    .append(target)
    .append("'; ")
    .append(std::to_string(total))
    .append(" refusals since the node started");
  if (unlogged > 0)
    line.append(", ")
      .append(std::to_string(unlogged))
      .append(" of them not logged since the last line");
  return line;
}

} // namespace courier::detail

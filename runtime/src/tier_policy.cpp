#include "tier_policy.hpp"

#include <algorithm>

namespace courier::detail {

bool glob_match(std::string_view pattern, std::string_view text) noexcept;
std::string quoted(std::string_view name);

namespace {

/// The peer's address for `tier`, or empty if it accepts none there.
std::string address_of(const v1::NodeRecord& peer, std::string_view tier) {
  for (const auto& endpoint : peer.endpoints())
    if (endpoint.tier() == tier)
      return endpoint.address();
  return {};
}

/// "first; second", leaving out an empty part.
std::string joined(const std::string& first, const std::string& second) {
  if (first.empty() || second.empty())
    return first + second;
  return first + "; " + second;
}

} // namespace

node_place place_of(const v1::NodeRecord& record) {
  node_place out;
  out.name = record.name();
  out.host_id = record.host_id();
  out.boot_id = record.boot_id();
  out.netns = record.netns();
  out.session = record.session();
  out.pid = record.pid();
  out.uid = record.uid();
  out.gid = record.gid();
  return out;
}

tier_policy::tier_policy(
  std::vector<registered> tiers,
  std::vector<std::pair<std::string, std::string>> preferred_tiers)
  : tiers_(std::move(tiers)), preferred_tiers_(std::move(preferred_tiers)) {
}

bool tier_policy::has(std::string_view tier) const noexcept {
  return std::any_of(tiers_.begin(), tiers_.end(),
                     [&](const registered& t) { return t.name == tier; });
}

std::string_view
tier_policy::preferred_for(std::string_view peer) const noexcept {
  for (const auto& [pattern, tier] : preferred_tiers_)
    if (glob_match(pattern, peer))
      return tier;
  return {};
}

std::vector<tier_choice> tier_policy::rank(const node_place& self,
                                           const v1::NodeRecord& peer,
                                           std::string_view preferred,
                                           std::string& why_not) const {
  struct judged {
    const registered* tier;
    reach_result reach;
    std::string address;
  };
  auto there = place_of(peer);
  std::vector<judged> all;
  for (const auto& tier : tiers_)
    all.push_back({&tier, tier.impl->reach(self, there),
                   address_of(peer, tier.name)});
  std::stable_sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
    return x.reach.rank > y.reach.rank;
  });
  std::vector<tier_choice> out;
  std::string passed_over; // better tiers the peer lacks
  std::string unreachable; // tiers that cannot reach it at all
  for (const auto& j : all) {
    if (j.reach.rank == 0) {
      unreachable = joined(unreachable, j.tier->name + ": " + j.reach.reason);
    } else if (j.address.empty()) {
      if (out.empty())
        passed_over = joined(passed_over, j.tier->name
                                            + " is not configured on both sides");
    } else {
      out.push_back({j.tier->name, j.tier->impl, j.address,
                     joined(j.reach.reason, passed_over)});
    }
  }
  // The note of a choice puts its own reason first: "same user; shm is not
  // configured on both sides".
  for (auto& choice : out)
    if (choice.note.empty())
      choice.note = "automatic choice";
  if (!preferred.empty()) {
    auto i = std::find_if(out.begin(), out.end(), [&](const tier_choice& c) {
      return c.tier == preferred;
    });
    if (i != out.end()) {
      auto chosen = std::move(*i);
      out.erase(i);
      chosen.note = "chosen by configuration";
      out.insert(out.begin(), std::move(chosen));
    } else {
      // Said in front of every other choice's note.
      auto why = std::string{preferred}
                 + (has(preferred) && !address_of(peer, preferred).empty()
                      ? " cannot reach it"
                      : " is not configured on both sides");
      for (auto& choice : out)
        if (choice.note.find(why) == std::string::npos)
          choice.note = why + "; " + choice.note;
    }
  }
  if (out.empty())
    why_not = unreachable.empty() ? passed_over
                                  : joined(unreachable, passed_over);
  if (out.empty() && why_not.empty())
    why_not = "this node has no tiers";
  return out;
}

expected<connected_link>
tier_policy::connect(const node_place& self, const v1::NodeRecord& peer,
                     std::string_view preferred, bool only, deadline until,
                     const log_fn& log) const {
  std::string why_not;
  auto choices = rank(self, peer, preferred, why_not);
  if (only)
    std::erase_if(choices, [&](const tier_choice& c) {
      return c.tier != preferred;
    });
  if (choices.empty()) {
    auto why = only ? "tier " + std::string{preferred} + " cannot reach node "
                        + quoted(peer.name())
                    : "no tier can reach node " + quoted(peer.name()) + " ("
                        + why_not + ")";
    return error{errc::unavailable, std::move(why)};
  }
  if (!preferred.empty() && choices.front().tier != preferred)
    log(log_level::warning, "route to " + quoted(peer.name()) + ": "
                              + std::string{preferred}
                              + " is not available; choosing automatically");
  std::string failed; // tiers tried before, and why they failed
  error last{errc::unavailable, "no tier tried"};
  for (auto& choice : choices) {
    auto conn = choice.impl->connect(choice.address, until);
    if (conn)
      return connected_link{std::move(*conn), choice.tier,
                            joined(failed, choice.note)};
    last = conn.error();
    auto why = choice.tier + " failed (" + last.message() + ")";
    log(log_level::warning, "route to " + quoted(peer.name()) + ": " + why);
    failed = joined(failed, why);
  }
  return error{last.code(), failed};
}

} // namespace courier::detail

#include "courier/access_policy.hpp"

#include <limits>

#include "authenticator.hpp"

namespace courier {

expected<access_policy> access_policy::make(std::vector<access_rule> rules) {
  for (const auto& rule : rules)
    if (auto checked = check_rule(rule); !checked)
      return checked.error();
  // No uid is this "node's own" (the largest uid_t is never a user's), and
  // no user is allowed everything: rules alone decide.
  return access_policy{std::make_shared<const detail::authenticator>(
    std::numeric_limits<unsigned>::max(), std::vector<unsigned>{},
    std::vector<unsigned>{}, std::move(rules))};
}

access_policy::access_policy(
  std::shared_ptr<const detail::authenticator> rules)
  : rules_(std::move(rules)) {}

std::string access_policy::principal(const peer_identity& caller) const {
  return rules_->identify(caller).name;
}

verbs access_policy::allowed(const peer_identity& caller,
                             std::string_view name) const {
  return rules_->identify(caller).access->allowed(name);
}

} // namespace courier

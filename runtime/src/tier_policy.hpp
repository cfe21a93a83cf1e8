#pragma once

// The tier policy: which tier a route to a peer node takes, and why.
//
// Each registered transport says whether and how well it reaches the peer
// (transport::reach); the peer's record says which tiers it accepts links
// on. The policy ranks what both sides have, best first, puts a configured
// or per-message preference in front, and connects down the list until one
// tier answers, recording why each was passed over: that is the note
// routes() shows. It names no tier: adding one touches nothing here.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "courier/deadline.hpp"
#include "courier/error.hpp"
#include "courier/options.hpp"
#include "courier/transport.hpp"
#include "courier/v1/control.pb.h"

namespace courier::detail {

/// Where the node of a record runs.
node_place place_of(const v1::NodeRecord& record);

/// One tier to try for a route.
struct tier_choice {
  std::string tier;
  transport* impl = nullptr;
  /// The peer's address for the tier, from its record.
  std::string address;
  /// Why this tier, if the route takes it.
  std::string note;
};

/// A link made by the policy, with the tier it took and why.
struct connected_link {
  std::unique_ptr<link> conn;
  std::string tier;
  std::string note;
};

/// Thread safety: immutable after construction; all member functions are
/// const and may be called from any thread (connect() blocks while it
/// connects).
class tier_policy {
public:
  struct registered {
    std::string name;
    transport* impl;
  };

  using log_fn = std::function<void(log_level, std::string_view)>;

  /// `tiers` in registration order (ties in rank keep it);
  /// `preferred_tiers` as node_config::preferred_tiers.
  tier_policy(std::vector<registered> tiers,
              std::vector<std::pair<std::string, std::string>> preferred_tiers);

  /// True if `tier` is one of the node's.
  bool has(std::string_view tier) const noexcept;

  /// The tier configured for routes to node `peer`, or empty.
  std::string_view preferred_for(std::string_view peer) const noexcept;

  /// The tiers to try for a route from `self` to `peer`, best first: the
  /// `preferred` one (if any, and if it can) in front. Empty when no tier
  /// can reach the peer; `why_not` then says why.
  std::vector<tier_choice> rank(const node_place& self,
                                const v1::NodeRecord& peer,
                                std::string_view preferred,
                                std::string& why_not) const;

  /// Connects to `peer` down the ranked list; a tier that fails is logged
  /// and the next one tried, and the note of the link that is made says
  /// what was passed over. `only` restricts it to one tier (a side link).
  expected<connected_link> connect(const node_place& self,
                                   const v1::NodeRecord& peer,
                                   std::string_view preferred, bool only,
                                   deadline until, const log_fn& log) const;

private:
  std::vector<registered> tiers_;
  std::vector<std::pair<std::string, std::string>> preferred_tiers_;
};

} // namespace courier::detail

// The tier policy ranks transports by what they say of a peer, whatever
// their names; the authenticator judges identities in one place.

#include <catch2/catch.hpp>

#include "authenticator.hpp"
#include "tier_policy.hpp"

using namespace courier;
using namespace courier::detail;

namespace {

/// A transport that reaches peers of one user only, with a fixed rank, and
/// whose connects fail on demand. Its name means nothing to the policy.
class judged_transport final : public transport {
public:
  judged_transport(std::string name, unsigned rank, bool connects)
    : name_(std::move(name)), rank_(rank), connects_(connects) {
  }

  std::string_view name() const noexcept override {
    return name_;
  }

  reach_result reach(const node_place& self,
                     const node_place& peer) const override {
    if (peer.uid != self.uid)
      return {0, "not for uid " + std::to_string(peer.uid)};
    return {rank_, name_ + " reaches it"};
  }

  expected<std::string>
  listen(const listen_context&,
         std::function<void(std::unique_ptr<courier::link>)>) override {
    return error{errc::unimplemented, "not in this test"};
  }

  expected<std::unique_ptr<courier::link>> connect(const std::string& address,
                                          deadline) override {
    dialed.push_back(address);
    if (!connects_)
      return error{errc::unavailable, "refused"};
    return error{errc::aborted, "connected (the test stops here)"};
  }

  void stop() override {
  }

  std::vector<std::string> dialed;

private:
  std::string name_;
  unsigned rank_;
  bool connects_;
};

v1::NodeRecord record(std::string name, unsigned uid,
                      std::vector<std::string> tiers) {
  v1::NodeRecord out;
  out.set_name(std::move(name));
  out.set_uid(uid);
  out.set_host_id("h");
  out.set_boot_id("b");
  for (auto& tier : tiers) {
    auto* endpoint = out.add_endpoints();
    endpoint->set_tier(tier);
    endpoint->set_address(tier + "-address");
  }
  return out;
}

std::vector<std::string> tiers_of(const std::vector<tier_choice>& choices) {
  std::vector<std::string> out;
  for (auto& choice : choices)
    out.push_back(choice.tier);
  return out;
}

} // namespace

TEST_CASE("the tier policy tries reachable tiers best first, whatever their "
          "names",
          "[runtime][tiers]") {
  judged_transport slow{"zeta", 5, true};
  judged_transport fast{"alpha", 50, true};
  judged_transport never{"omega", 0, true};
  tier_policy policy{{{"zeta", &slow}, {"alpha", &fast}, {"omega", &never}},
                     {}};
  auto self = place_of(record("self", 1000, {}));
  std::string why_not;
  auto choices = policy.rank(self, record("peer", 1000, {"zeta", "alpha",
                                                         "omega"}),
                             "", why_not);
  CHECK(tiers_of(choices) == std::vector<std::string>{"alpha", "zeta"});
  CHECK(choices[0].note == "alpha reaches it");
  CHECK(choices[0].address == "alpha-address");
  SECTION("a better tier the peer lacks is named in the note") {
    choices = policy.rank(self, record("peer", 1000, {"zeta"}), "", why_not);
    CHECK(tiers_of(choices) == std::vector<std::string>{"zeta"});
    CHECK(choices[0].note
          == "zeta reaches it; alpha is not configured on both sides");
  }
  SECTION("a preference goes first, and one that cannot be had says why") {
    choices = policy.rank(self, record("peer", 1000, {"zeta", "alpha"}),
                          "zeta", why_not);
    CHECK(tiers_of(choices) == std::vector<std::string>{"zeta", "alpha"});
    CHECK(choices[0].note == "chosen by configuration");
    choices = policy.rank(self, record("peer", 1000, {"alpha"}), "zeta",
                          why_not);
    CHECK(tiers_of(choices) == std::vector<std::string>{"alpha"});
    CHECK(choices[0].note
          == "zeta is not configured on both sides; alpha reaches it");
  }
  SECTION("nothing reaches a peer of another user: the reasons are given") {
    choices = policy.rank(self, record("peer", 7, {"zeta", "alpha"}), "",
                          why_not);
    CHECK(choices.empty());
    CHECK(why_not.find("alpha: not for uid 7") != std::string::npos);
  }
}

TEST_CASE("the tier policy falls back to the next tier when one fails, and "
          "the route says so",
          "[runtime][tiers]") {
  judged_transport broken{"fast", 50, false};
  judged_transport spare{"slow", 5, true};
  tier_policy policy{{{"fast", &broken}, {"slow", &spare}}, {{"p*", "fast"}}};
  CHECK(policy.preferred_for("peer") == "fast");
  CHECK(policy.preferred_for("other").empty());
  CHECK(policy.has("slow"));
  CHECK_FALSE(policy.has("pipe"));
  std::vector<std::string> lines;
  auto made = policy.connect(
    place_of(record("self", 1000, {})), record("peer", 1000, {"fast", "slow"}),
    "", false, deadline{std::chrono::seconds{1}},
    [&](log_level, std::string_view line) { lines.emplace_back(line); });
  // Both were dialed, best first; the spare's own failure ends the walk.
  CHECK(broken.dialed == std::vector<std::string>{"fast-address"});
  CHECK(spare.dialed == std::vector<std::string>{"slow-address"});
  REQUIRE_FALSE(made);
  CHECK(made.error().message().find("fast failed (refused)")
        != std::string::npos);
  CHECK(lines.size() == 2);
}

TEST_CASE("the authenticator admits this user and the allowed ones, and "
          "checks that a transport vouches for the node it reached",
          "[runtime][security]") {
  authenticator auth{1000, {2000}, {300}};
  auto kernel = [](int pid, unsigned uid, unsigned gid) {
    peer_identity out;
    out.kernel = kernel_credentials{pid, uid, gid};
    return out;
  };
  auto me = auth.admit(kernel(1, 1000, 1000), "n");
  REQUIRE(me);
  CHECK(me->same_user);
  CHECK(me->name == "uid:1000");
  CHECK(auth.admit(kernel(1, 2000, 1), "n"));
  CHECK(auth.admit(kernel(1, 5, 300), "n"));
  auto stranger = auth.admit(kernel(9, 5, 5), "n");
  REQUIRE_FALSE(stranger);
  CHECK(stranger.code() == errc::permission_denied);
  CHECK(stranger.error().message() == "uid 5 (pid 9) may not link to node 'n'");
  CHECK_FALSE(auth.admit(peer_identity{}, "n"));
  // A plaintext network peer (a tier configured for it) links, anonymous.
  peer_identity plain;
  plain.address = "10.0.0.2:4000";
  auto anonymous = auth.admit(plain, "n");
  REQUIRE(anonymous);
  CHECK(anonymous->name == "anonymous");
  CHECK_FALSE(anonymous->same_user);
  // It may do nothing there but what rules allow (access_test.cpp).
  CHECK(anonymous->access->allowed("anything") == verbs::none);

  auto claimed = record("peer", 1000, {});
  claimed.set_pid(42);
  CHECK(auth.vouches_for(kernel(42, 1000, 1), claimed));
  auto liar = auth.vouches_for(kernel(43, 1000, 1), claimed);
  REQUIRE_FALSE(liar);
  CHECK(liar.error().message().find("but the kernel says uid 1000 (pid 43)")
        != std::string::npos);
  peer_identity cert;
  cert.certificate = certificate_identity{"CN=peer", {"peer", "peer.local"}};
  CHECK(auth.vouches_for(cert, claimed));
  cert.certificate->alt_names = {"other"};
  CHECK_FALSE(auth.vouches_for(cert, claimed));
  CHECK_FALSE(auth.vouches_for(peer_identity{}, claimed));
  CHECK(auth.vouches_for(plain, claimed)); // on its word
}

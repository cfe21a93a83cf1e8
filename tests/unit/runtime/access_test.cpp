// Authorization rules: their syntax, which principals they name (kernel
// credentials and certificates, built by hand as a transport would), which
// names and verbs they allow, and how refusals are counted and logged.

#include <catch2/catch.hpp>

#include "access.hpp"
#include "authenticator.hpp"
#include "courier/node.hpp"

using namespace courier;
using namespace courier::detail;

namespace {

peer_identity kernel(unsigned uid, unsigned gid = 100) {
  peer_identity out;
  out.kernel = kernel_credentials{42, uid, gid};
  return out;
}

peer_identity certificate(std::string subject,
                          std::vector<std::string> alt_names = {}) {
  peer_identity out;
  out.certificate
    = certificate_identity{std::move(subject), std::move(alt_names)};
  return out;
}

} // namespace

TEST_CASE("verbs read and print as comma-separated words",
          "[runtime][security]") {
  CHECK(*parse_verbs("post") == verbs::post);
  auto two = parse_verbs(" post , send ");
  REQUIRE(two);
  CHECK(*two == (verbs::post | verbs::send));
  CHECK(*parse_verbs("all") == verbs::all);
  CHECK(*parse_verbs("none") == verbs::none);
  CHECK(*parse_verbs("find,broadcast,monitor")
        == (verbs::find | verbs::broadcast | verbs::monitor));
  auto bad = parse_verbs("post,shout");
  REQUIRE_FALSE(bad);
  CHECK(bad.code() == errc::invalid_argument);
  CHECK(bad.error().message().find("'shout'") != std::string::npos);
  CHECK_FALSE(parse_verbs(""));
  CHECK(to_string(verbs::post | verbs::monitor) == "post,monitor");
  CHECK(to_string(verbs::all) == "all");
  CHECK(to_string(verbs::none) == "none");
  CHECK(*parse_verbs(to_string(verbs::send | verbs::find))
        == (verbs::send | verbs::find));
  CHECK(allows(verbs::all, verbs::broadcast));
  CHECK_FALSE(allows(verbs::post, verbs::send));
  CHECK_FALSE(allows(verbs::post, verbs::none));
}

TEST_CASE("a malformed rule is refused, and a node will not start with one",
          "[runtime][security]") {
  CHECK(check_rule({"uid:1000", "billing.*", verbs::post}));
  CHECK(check_rule({"gid:50", "*", verbs::all}));
  CHECK(check_rule({"cert:CN=billing-*", "billing.*", verbs::send}));
  CHECK(check_rule({"san:*.billing.example", "*", verbs::find}));
  CHECK_FALSE(check_rule({"uid:", "*", verbs::post}));
  CHECK_FALSE(check_rule({"uid:abc", "*", verbs::post}));
  CHECK_FALSE(check_rule({"uid:99999999999", "*", verbs::post}));
  CHECK_FALSE(check_rule({"cert:", "*", verbs::post}));
  CHECK_FALSE(check_rule({"user:alice", "*", verbs::post}));
  CHECK_FALSE(check_rule({"1000", "*", verbs::post}));
  CHECK_FALSE(check_rule({"uid:1000", "", verbs::post}));
  CHECK_FALSE(check_rule({"uid:1000", "*", static_cast<verbs>(0x80)}));
  auto why = check_rule({"user:alice", "*", verbs::post});
  CHECK(why.error().message().find("uid:<n>, gid:<n>, cert:<glob>, "
                                   "san:<glob> or anonymous")
        != std::string::npos);
  CHECK(check_rule({"anonymous", "*", verbs::post}));
  CHECK_FALSE(check_rule({"anonymous:x", "*", verbs::post}));

  node_config config;
  config.join_directory = false;
  config.rules = {{"uid:1000", "*", verbs::post}, {"who", "*", verbs::post}};
  auto started = node::start(std::move(config));
  REQUIRE_FALSE(started);
  CHECK(started.code() == errc::invalid_argument);
}

TEST_CASE("rule principals name kernel users and groups, certificate "
          "subjects and alternative names",
          "[runtime][security]") {
  CHECK(authenticator::names({"uid:1000", "*", verbs::post}, kernel(1000)));
  CHECK_FALSE(
    authenticator::names({"uid:1000", "*", verbs::post}, kernel(1001)));
  CHECK_FALSE(
    authenticator::names({"uid:100", "*", verbs::post}, kernel(1000)));
  CHECK(authenticator::names({"gid:50", "*", verbs::post}, kernel(7, 50)));
  CHECK_FALSE(
    authenticator::names({"gid:50", "*", verbs::post}, kernel(50, 7)));
  // Kernel principals never name certificates, and the other way round.
  CHECK_FALSE(authenticator::names({"uid:1000", "*", verbs::post},
                                   certificate("CN=1000")));
  CHECK_FALSE(authenticator::names({"cert:*", "*", verbs::post}, kernel(1000)));
  CHECK(authenticator::names({"cert:CN=billing-*", "*", verbs::post},
                             certificate("CN=billing-7")));
  CHECK_FALSE(authenticator::names({"cert:CN=billing-*", "*", verbs::post},
                                   certificate("CN=admin,O=billing-7")));
  CHECK(authenticator::names(
    {"san:*.billing.example", "*", verbs::post},
    certificate("CN=x", {"node-1", "api.billing.example"})));
  CHECK_FALSE(authenticator::names(
    {"san:*.billing.example", "*", verbs::post},
    certificate("CN=x.billing.example", {"billing.example"})));
  CHECK_FALSE(
    authenticator::names({"cert:*", "*", verbs::post}, peer_identity{}));
  // anonymous: a plaintext peer, and nobody else.
  CHECK(authenticator::names({"anonymous", "*", verbs::post}, peer_identity{}));
  CHECK_FALSE(
    authenticator::names({"anonymous", "*", verbs::post}, kernel(1000)));
  CHECK_FALSE(
    authenticator::names({"anonymous", "*", verbs::post}, certificate("CN=x")));
}

TEST_CASE("a principal gets the verbs of the rules that name it, per name",
          "[runtime][security]") {
  authenticator auth{0,
                     {},
                     {},
                     {{"uid:1000", "billing.*", verbs::post},
                      {"uid:1000", "billing.reports", verbs::find},
                      {"gid:50", "billing.*", verbs::send},
                      {"uid:2000", "*", verbs::all},
                      {"cert:CN=ops-*", "admin.?", verbs::monitor}}};
  auto user = auth.identify(kernel(1000, 50));
  CHECK(user.name == "uid:1000");
  CHECK_FALSE(user.same_user);
  const auto& access = *user.access;
  CHECK(access.principal() == "uid:1000");
  CHECK_FALSE(access.unrestricted());
  CHECK(access.allowed("billing.x") == (verbs::post | verbs::send));
  CHECK(access.allowed("billing.reports")
        == (verbs::post | verbs::send | verbs::find));
  CHECK(access.allows("billing.x", verbs::post));
  CHECK_FALSE(access.allows("billing.x", verbs::broadcast));
  CHECK_FALSE(access.allows("billing", verbs::post)); // the dot counts
  CHECK(access.allowed("admin.x") == verbs::none);
  // "actor@node": the actor's name is what the rules match.
  CHECK(access.allows("billing.x@here", verbs::post));
  CHECK_FALSE(access.allows("admin.x@billing.x", verbs::post));
  // Asked again, from the cache: the same answers.
  CHECK(access.allowed("billing.x") == (verbs::post | verbs::send));
  CHECK(access.allowed("admin.x") == verbs::none);

  // A rule allowing everything on every name is as good as the own user.
  CHECK(auth.identify(kernel(2000)).access->unrestricted());

  auto ops = auth.identify(certificate("CN=ops-3"));
  CHECK(ops.name == "cert:CN=ops-3");
  CHECK(ops.access->allows("admin.a", verbs::monitor));
  CHECK_FALSE(ops.access->allows("admin.ab", verbs::monitor));
  CHECK_FALSE(ops.access->allows("admin.a", verbs::post));
}

TEST_CASE("deny by default: only local users some rule names may link, the "
          "own user and allowed users may do everything",
          "[runtime][security]") {
  authenticator auth{1000,
                     {2000},
                     {300},
                     {{"uid:3000", "billing.*", verbs::post},
                      {"san:node-*.example", "*", verbs::find}}};
  auto me = auth.admit(kernel(1000), "n");
  REQUIRE(me);
  CHECK(me->same_user);
  CHECK(me->access->unrestricted());
  // allowed_uids and allowed_gids stand for rules allowing everything.
  CHECK(auth.admit(kernel(2000), "n")->access->unrestricted());
  CHECK(auth.admit(kernel(5, 300), "n")->access->unrestricted());
  auto limited = auth.admit(kernel(3000), "n");
  REQUIRE(limited);
  CHECK_FALSE(limited->access->unrestricted());
  CHECK(limited->access->allows("billing.x", verbs::post));
  CHECK_FALSE(limited->access->allows("billing.x", verbs::send));
  auto stranger = auth.admit(kernel(4000), "n");
  REQUIRE_FALSE(stranger);
  CHECK(stranger.code() == errc::permission_denied);
  auto cert = auth.admit(certificate("CN=x", {"node-1.example"}), "n");
  REQUIRE(cert);
  CHECK(cert->access->allows("orders", verbs::find));
  CHECK_FALSE(cert->access->allows("orders", verbs::post));
  // Certificates (checked by their tier) and plaintext peers (their tier
  // was told to take them) may link, and may do nothing no rule allows.
  auto other = auth.admit(certificate("CN=x", {"node-1.other"}), "n");
  REQUIRE(other);
  CHECK(other->access->allowed("orders") == verbs::none);
  peer_identity network;
  network.address = "10.0.0.2:4000";
  CHECK_FALSE(auth.admit(peer_identity{}, "n")); // local, no credentials
  auto plaintext = auth.admit(network, "n");
  REQUIRE(plaintext);
  CHECK(plaintext->name == "anonymous");
  CHECK(plaintext->access->allowed("orders") == verbs::none);
  authenticator trusting{1000, {}, {}, {{"anonymous", "*", verbs::all}}};
  CHECK(trusting.admit(network, "n")->access->unrestricted());
}

TEST_CASE("refusals are all counted, and logged at most once an interval",
          "[runtime][security]") {
  refusal_log log{std::chrono::hours{1}};
  auto first = log.count("uid:1000", "guest", verbs::send, "admin.x");
  REQUIRE(first);
  CHECK(*first
        == "permission_denied: uid:1000 (node 'guest') may not send to "
           "'admin.x'; 1 refusals since the node started");
  std::size_t lines = 1;
  for (int i = 0; i < 9'999; ++i)
    if (log.count("uid:1000", "guest", verbs::post, "admin.x"))
      ++lines;
  CHECK(lines == 1);
  CHECK(log.total() == 10'000);

  refusal_log often{std::chrono::nanoseconds{0}};
  auto a = often.count("cert:CN=a", "", verbs::find, "x");
  REQUIRE(a);
  CHECK(*a
        == "permission_denied: cert:CN=a may not find 'x'; 1 refusals "
           "since the node started");
  CHECK(often.count("cert:CN=a", "", verbs::monitor, "x"));
  CHECK(often.total() == 2);
}

#include "peers.hpp"

#include <algorithm>
#include <random>

#include "directory.hpp"
#include "node_impl.hpp"

namespace courier::detail {

peers::peers(node_impl& owner, directory* dir, tier_policy policy,
             authenticator auth)
  : owner_(owner),
    dir_(dir),
    policy_(std::move(policy)),
    auth_(std::move(auth)) {
}

void peers::accept(std::unique_ptr<link> conn, const std::string& tier) {
  const auto& name = owner_.name();
  auto admitted = auth_.admit(conn->peer(), name);
  if (!admitted) {
    // Refused before a single byte is read from the peer; it is told why.
    const auto& why = admitted.error().message();
    owner_.log_peer_fault("refused a " + tier + " link: " + why,
                          {{}, {}, "permission_denied", {}});
    v1::HelloAck ack;
    *ack.mutable_node()->mutable_name() = name;
    ack.mutable_refused()->set_code(
      static_cast<std::uint32_t>(errc::permission_denied));
    ack.mutable_refused()->set_message(why);
    v1::Envelope env;
    env.set_kind(v1::KIND_SYSTEM);
    env.mutable_sender()->set_node(name);
    env.set_type_name(v1::HelloAck::descriptor()->full_name());
    ack.SerializeToString(env.mutable_payload());
    (void)conn->write(env.SerializeAsString());
    conn->close(); // after that one frame
    return;
  }
  // Each link that has not said hello holds a read buffer and a hello-sized
  // frame at most (docs/operations.md): their number is bounded too.
  if (half_open_.fetch_add(1, std::memory_order_relaxed)
      >= max_half_open_links) {
    end_half_open();
    owner_.log_peer_fault("closed a new " + tier + " link from "
                            + conn->peer().describe() + " at once: "
                            + std::to_string(max_half_open_links)
                            + " accepted links have not said hello yet (the "
                              "limit)",
                          {{}, {}, "resource_exhausted", {}});
    conn->close();
    return;
  }
  auto info = std::make_shared<link_info>();
  info->tier = tier;
  info->note = admitted->same_user ? "accepted from this user"
                                   : "accepted from " + admitted->name;
  std::unique_lock guard{mu_};
  if (stopping_) {
    end_half_open();
    conn->close();
    return;
  }
  // The proxy ends the half-open count (end_half_open) at the hello.
  auto proxy = spawn_link_proxy(owner_, std::move(conn), info, std::nullopt,
                                std::move(admitted->access));
  proxies_.push_back(proxy.address());
}

expected<peer_link> peers::link_to(const std::string& node) {
  auto existing = [&]() -> std::optional<peer_link> {
    std::shared_lock guard{mu_};
    if (auto i = links_.find(node); i != links_.end())
      return peer_link{i->second.proxy, i->second.info};
    return std::nullopt;
  };
  if (auto found = existing())
    return std::move(*found);
  std::lock_guard connecting{connect_mu_};
  if (auto found = existing())
    return std::move(*found);
  if (auto wait = backing_off(node))
    return std::move(*wait);
  v1::NodeRecord peer;
  auto made = connect(node, policy_.preferred_for(node), false, peer);
  if (!made) {
    if (dir_ != nullptr)
      dir_->suspect(node);
    dial_failed(node, peer, made.error().message());
    return error{errc::unavailable, "node " + quoted(node)
                                      + " is unreachable: "
                                      + made.error().message()};
  }
  redials_.erase(node);
  auto info = std::make_shared<link_info>();
  info->peer = node;
  info->tier = std::move(made->tier);
  info->note = std::move(made->note);
  auto proxy = start_link(peer, std::move(made->conn), info, true);
  if (!proxy)
    return std::move(proxy).error();
  return peer_link{std::move(*proxy), std::move(info)};
}

namespace {

/// What tells two incarnations of a node apart.
std::string incarnation_of(const v1::NodeRecord& record) {
  return std::to_string(record.pid()) + "/"
         + std::to_string(record.started_unix_ns());
}

/// Dials after a failure wait 100 ms, then twice as long each time, up to
/// 5 s; each wait is drawn from its upper half, so that nodes that lost a
/// peer together do not dial it together.
constexpr std::chrono::milliseconds first_redial{100};
constexpr std::chrono::milliseconds last_redial{5000};

} // namespace

std::optional<error> peers::backing_off(const std::string& node) {
  auto i = redials_.find(node);
  if (i == redials_.end())
    return std::nullopt;
  auto now = std::chrono::steady_clock::now();
  if (now < i->second.next && dir_ != nullptr) {
    auto record = dir_->read_node(node);
    if (record && incarnation_of(*record) == i->second.incarnation) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(
        i->second.next - now);
      return error{errc::unavailable,
                   "node " + quoted(node) + " is unreachable: "
                     + i->second.why + " (next try in "
                     + std::to_string(left.count()) + " ms)"};
    }
  }
  return std::nullopt; // time for another try (kept, to back off further)
}

void peers::dial_failed(const std::string& node, const v1::NodeRecord& peer,
                        const std::string& why) {
  auto& entry = redials_[node];
  auto incarnation = incarnation_of(peer);
  if (entry.incarnation != incarnation)
    entry.failures = 0;
  entry.incarnation = std::move(incarnation);
  entry.why = why;
  entry.failures = std::min(entry.failures + 1, 16);
  auto wait = std::min<std::chrono::milliseconds>(
    last_redial, first_redial * (1 << std::min(entry.failures - 1, 6)));
  thread_local std::minstd_rand random{std::random_device{}()};
  std::uniform_int_distribution<long> half{wait.count() / 2, wait.count()};
  entry.next = std::chrono::steady_clock::now()
               + std::chrono::milliseconds{half(random)};
  // Bounded: one entry per node dialled and failed; the oldest go first.
  if (redials_.size() > 4096)
    for (auto j = redials_.begin(); j != redials_.end();)
      j = j->second.next < std::chrono::steady_clock::now() ? redials_.erase(j)
                                                             : std::next(j);
}

expected<connected_link> peers::connect(const std::string& node,
                                        std::string_view preferred, bool only,
                                        v1::NodeRecord& peer) {
  if (dir_ == nullptr)
    return error{errc::unavailable, "this node joined no directory"};
  auto record = dir_->read_node(node);
  if (!record)
    return std::move(record).error();
  peer = std::move(*record);
  return policy_.connect(
    place_of(owner_.record()), peer, preferred, only,
    deadline{owner_.config().handshake_timeout},
    [this](log_level level, std::string_view line) { owner_.log(level, line); });
}

expected<caf::actor> peers::open_side_link(const std::string& node,
                                           const std::string& tier) {
  v1::NodeRecord peer;
  auto made = connect(node, tier, true, peer);
  if (!made)
    return std::move(made).error();
  auto info = std::make_shared<link_info>();
  info->peer = node;
  info->tier = tier;
  info->note = "asked for by messages";
  return start_link(peer, std::move(made->conn), std::move(info), false);
}

expected<caf::actor> peers::start_link(const v1::NodeRecord& peer,
                                       std::unique_ptr<link> conn,
                                       std::shared_ptr<link_info> info,
                                       bool route) {
  const auto& node = peer.name();
  // Is the endpoint really served by that node? (Nobody else could have put
  // it there in a sticky directory, but the kernel's word is cheap.)
  if (auto served = auth_.vouches_for(conn->peer(), peer); !served) {
    owner_.log(log_level::warning, "the endpoint of node " + quoted(node)
                                     + " is not served by that node ("
                                     + served.error().message()
                                     + "); not using it");
    return error{errc::permission_denied,
                 "the endpoint of node " + quoted(node)
                   + " is not served by that node"};
  }
  std::unique_lock guard{mu_};
  if (stopping_)
    return error{errc::unavailable, "node " + quoted(owner_.name())
                                      + " is shutting down"};
  // What the peer may do here over a link we opened: its requests come
  // back by it, and are checked as those of an accepted link.
  auto access = auth_.identify(conn->peer()).access;
  auto proxy = spawn_link_proxy(owner_, std::move(conn), info, peer,
                                std::move(access));
  proxies_.push_back(proxy.address());
  if (route) {
    links_[node] = entry{proxy, std::move(info), {}};
    owner_.routes_changed();
  } else if (auto i = links_.find(node); i != links_.end()) {
    i->second.side.push_back(std::move(info));
  }
  return proxy;
}

void peers::adopt(const std::string& node, caf::actor proxy,
                  std::shared_ptr<link_info> info) {
  std::unique_lock guard{mu_};
  if (links_.try_emplace(node, entry{std::move(proxy), std::move(info), {}})
        .second)
    owner_.routes_changed();
}

bool peers::drop(const std::string& node, const caf::actor& proxy) {
  std::unique_lock guard{mu_};
  auto i = links_.find(node);
  if (i == links_.end() || i->second.proxy != proxy)
    return false;
  owner_.metrics().retire(*i->second.info);
  for (auto& side : i->second.side)
    owner_.metrics().retire(*side);
  links_.erase(i);
  owner_.routes_changed();
  return true;
}

void peers::announce_release(const std::string& name) {
  std::shared_lock guard{mu_};
  for (auto& [peer, link] : links_)
    detail::announce_release(link.proxy, name);
}

std::vector<route_info> peers::routes() const {
  std::vector<route_info> out;
  {
    std::shared_lock guard{mu_};
    for (auto& [peer, link] : links_) {
      out.push_back({peer, link.info->tier, link.info->note,
                     link.info->messages_out.load(),
                     link.info->messages_in.load()});
      for (auto& side : link.side)
        if (side->open.load())
          out.push_back({peer, side->tier, side->note, side->messages_out.load(),
                         side->messages_in.load()});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& x, const auto& y) { return x.peer < y.peer; });
  return out;
}

std::vector<std::shared_ptr<link_info>> peers::links() const {
  std::vector<std::shared_ptr<link_info>> out;
  std::shared_lock guard{mu_};
  for (auto& [peer, link] : links_) {
    out.push_back(link.info);
    out.insert(out.end(), link.side.begin(), link.side.end());
  }
  return out;
}

std::vector<caf::actor_addr> peers::stop() {
  std::unique_lock guard{mu_};
  stopping_ = true;
  links_.clear();
  return std::exchange(proxies_, {});
}

} // namespace courier::detail

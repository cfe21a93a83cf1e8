#pragma once

// Links to other nodes: one link_proxy actor per peer node owns one
// transport link. Local actors send it letters exactly as they would send a
// local actor; it turns them into envelopes (docs/wire-format.md), keeps the
// pending requests, and turns inbound envelopes back into letters.

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_control_block.hpp>
#include <caf/message_id.hpp>

#include "courier/notices.hpp"
#include "courier/transport.hpp"
#include "courier/v1/control.pb.h"
#include "letter.hpp"
#include "metrics_registry.hpp"

namespace courier::detail {

struct peer_publications; // directory.hpp


class link_host;
class link_core;
class link_access;

/// The largest frame a link accepts before its handshake is done: the Hello
/// or the HelloAck, whose node records leave out their type files
/// (docs/wire-format.md). Links are lowered to it (link::limit_frames)
/// before they start, and raised to limits.max_frame after the hello.
inline constexpr std::size_t hello_frame_limit = std::size_t{16} << 10;

/// Accepted links that may wait for their hello at once, per node; more are
/// closed as they come (docs/operations.md).
inline constexpr std::size_t max_half_open_links = 32;

/// What `courier routes` shows of one link.
struct link_info {
  std::string peer;
  std::string tier;
  std::string note;
  std::atomic<std::uint64_t> messages_out{0};
  std::atomic<std::uint64_t> messages_in{0};
  /// Frame bytes written and read, counted with messages_out and _in.
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> bytes_in{0};
  /// Requests written to this link, from written to answered (only when
  /// node_config::metrics is on).
  log2_histogram request_rtt;
  std::atomic<bool> open{true};
  /// Bytes posted to the peer and not yet written to the link (in the
  /// proxy's mailbox or held back by it); posts beyond the limit are refused
  /// at once (node_impl::charge_backlog).
  std::shared_ptr<detail::backlog> backlog = std::make_shared<detail::backlog>();
  /// What the link's proxy shares with other threads; set before the link
  /// is shown to anyone.
  std::weak_ptr<link_core> core;
};

/// Writes a request to `info`'s link from the requesting actor's own
/// thread, with no hop through the link's proxy; its answer is enqueued to
/// `requester` as the response to CAF request `id`. Done only while the
/// proxy holds nothing back for the link (nothing waits in the route's
/// backlog, no change of link is under way, the link has room): false
/// leaves the letter to the proxy.
bool request_direct(link_info& info, letter& msg,
                    caf::strong_actor_ptr requester, caf::message_id id);

/// Spawns the proxy for a link. `peer` is the peer's record when we
/// connected (outbound), or empty when it connected to us (inbound: the
/// proxy waits for its Hello). `access` is what the peer may do here, as
/// the authenticator decided from the link's peer_identity.
caf::actor spawn_link_proxy(link_host& owner, std::unique_ptr<link> conn,
                            std::shared_ptr<link_info> info,
                            std::optional<v1::NodeRecord> peer,
                            std::shared_ptr<const link_access> access);

/// Asks a proxy to watch an actor on its peer; `fn` runs once, unless
/// `token` is cancelled first.
void watch_remote(const caf::actor& proxy, std::string name,
                  std::function<void(const down_notice&)> fn,
                  std::shared_ptr<monitor_token> token);

/// Asks a proxy to drop a watch (demonitor), here and on its peer.
void unwatch_remote(const caf::actor& proxy,
                    std::shared_ptr<monitor_token> token);

/// The names the peer of `proxy` holds that match `pattern` and that this
/// node may find there (its rules decide, docs/security.md), sorted. Blocks
/// the calling thread until the answer or `until`: unavailable when the
/// link goes, deadline_exceeded when the peer does not answer in time.
/// With `published`, also the descriptors of the peer's message types
/// (serialized FileDescriptorProtos; none if they would not fit a frame)
/// and the services its actors serve (those this node may find).
expected<std::vector<std::string>>
names_over(caf::actor_system& system, const caf::actor& proxy,
           std::string pattern, deadline until,
           peer_publications* published = nullptr);

/// Asks a proxy to send what it has queued, close its link and stop.
void drain_link(const caf::actor& proxy);

/// Tells a proxy's peer that a local name was released.
void announce_release(const caf::actor& proxy, std::string name);

} // namespace courier::detail

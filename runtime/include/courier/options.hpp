#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "courier/access.hpp"
#include "courier/deadline.hpp"
#include "courier/node_plugin.hpp"
#include "courier/transport.hpp"

namespace courier {

/// How a supervisor restarts a named actor that failed. The actor gets its
/// name back; messages sent while it restarts fail with errc::unavailable.
struct restart_policy {
  /// Intensity limit: at most this many restarts within `window`; one more
  /// failure and the supervisor gives up and releases the name.
  std::size_t max_restarts = 3;
  std::chrono::milliseconds window{5000};
  /// Delay before the first restart, doubled for each restart still inside
  /// the window, capped at max_backoff.
  std::chrono::milliseconds initial_backoff{10};
  std::chrono::milliseconds max_backoff{1000};
};

struct spawn_options {
  /// Restart on failure; none means the actor stays down once it fails.
  std::optional<restart_policy> restart;
  /// Posts that may wait in this actor's mailbox; none takes
  /// node_config::max_mailbox. See there.
  std::optional<std::size_t> max_mailbox;
  /// The gRPC services this actor serves, by full name ("shop.Orders"): a
  /// gateway anywhere in the cluster answers their unary methods by
  /// sending the request to this actor and returning its reply
  /// (docs/gateway.md). Each service's generated code must be linked into
  /// the program: spawn fails with invalid_argument for a malformed name
  /// and not_found for a service it does not know. The node publishes
  /// each service with the actor's name, and the service's .proto with
  /// its imports, in its record; they are withdrawn when the actor stops
  /// for good (a restart keeps them).
  std::vector<std::string> services;
};

/// Priorities run from 0 (lowest) to 7 (highest), as in MSMQ.
inline constexpr std::uint8_t max_priority = 7;
inline constexpr std::uint8_t default_priority = 3;

struct post_options {
  /// A message still unhandled at this point is dropped as a dead letter
  /// with reason expired.
  deadline expires = deadline::never();
  /// 0..7; in process, 6 and 7 overtake queued messages of lower priority.
  std::uint8_t priority = default_priority;
  /// The tier to another node for this message only, by name ("shm",
  /// "pipe"); empty lets the route decide. Must be one of the node's
  /// transports. A tier that cannot reach the peer falls back to the route's
  /// own. Order per (sender, receiver) pair holds across the change. Local
  /// destinations always get the in-process hand-off.
  std::string tier;
  /// How long a post from a plain thread may block while the destination's
  /// backlog is full (limits.max_queued of posts to another node not yet
  /// written, or max_mailbox for an actor here), until half of it has
  /// drained; zero, or a post from an actor (which must not hold its
  /// scheduler thread), fails at once with resource_exhausted. A post
  /// still without room after the wait fails with it too.
  std::chrono::nanoseconds wait_for_room{0};
  /// From a plain thread, to an actor of this node that is idle: the actor
  /// handles the message on this thread before post returns, as a
  /// scheduler thread would have, and no thread is woken (the gateway's
  /// Post and PostStream do this on gRPC's thread). The post then takes as
  /// long as the handler. The actor's other messages, and posts from an
  /// actor (whose thread is not to lend), go to the scheduler as usual.
  bool lend_thread = false;

  // -- durable delivery (docs/durable.md) -------------------------------------
  /// Store and forward: the post returns once the message is on this
  /// node's disk, and the node forwards it to whoever holds the name, now
  /// or later (the name may be unknown yet), over any tier, until the
  /// receiving node has it on its disk; its handler runs once, in order
  /// per (sender node, name), and the message is removed only when the
  /// handler has returned. Needs node_config::durable; `expires` and
  /// `tier` do not apply (the timers below do).
  bool durable = false;
  /// The message expires into this node's dead letters if it has not
  /// reached the target's queue by then; zero: no limit.
  std::chrono::nanoseconds time_to_reach_queue{0};
  /// It expires into the dead letters of the node where it is if it has
  /// not been handled by then, counted from the post; zero: no limit.
  std::chrono::nanoseconds time_to_be_received{0};
  /// An actor name that receives courier.v1.DurableNotice posts: reached
  /// the queue, handled, dead-lettered (with the reason). Empty: none.
  std::string ack_to;
};

/// How the node's scheduler threads find work.
enum class scheduler_policy : std::uint8_t {
  /// Per-thread queues with stealing; idle threads poll, sleeping between
  /// polls (up to 50 us, later 10 ms). Best in-process throughput; a
  /// message that wakes an idle node waits for the next poll.
  work_stealing,
  /// One shared queue; idle threads sleep on a condition variable and are
  /// woken at once. Better latency than work_stealing for nodes that mostly
  /// wait for other processes, at the cost of in-process throughput.
  sharing,
  /// As sharing, but an idle thread first polls, for node_config::idle_spin,
  /// the queue and the node's transports (the shared-memory tier hands it
  /// what its rings received; the stream tiers read their sockets; the gRPC
  /// tier runs gRPC's poller), and only then sleeps: a message from another
  /// process reaches its actor with no thread woken. The lowest round trips between processes; costs CPU
  /// for idle_spin after the last message, none once asleep. See
  /// docs/benchmarks.md.
  latency,
  /// The default: latency for a node with a tier its pollers read (shm,
  /// pipe, tcp, grpc: it talks to other processes), sharing for a node
  /// whose tiers all bring frames on threads of their own
  /// (transport::pollable), work_stealing for a node without transports
  /// (all its traffic is in process).
  automatic,
};

class durable_plugin;
class node;

/// Makes a node's durable delivery once the node has started. The node is
/// lent to the plug-in until durable_plugin::stop(): it uses the public
/// verbs, never after stop.
using durable_factory =
  std::function<expected<std::shared_ptr<durable_plugin>>(node& host)>;

/// Severity of a line in the runtime's log.
enum class log_level : std::uint8_t { debug, info, warning, error };

/// How the runtime words its log lines (docs/operations.md, "Logs").
enum class log_format : std::uint8_t {
  /// The line's text alone (node_config::log gets it as it is).
  text,
  /// One JSON object per line: time, level, node, and where known actor,
  /// peer, trace_id, span_id, reason; then message, the text.
  json,
};

/// A node of another machine, and the address of its TCP tier
/// ("tls://host:port", or "tcp://host:port" where plaintext is allowed).
struct seed {
  std::string node;
  std::string address;
};

/// A seed as configuration writes it: "node@tls://host:port"; the error
/// says what is wrong.
expected<seed> parse_seed(std::string_view text);

struct node_config {
  /// Unique on the machine; letters, digits, '_', '-', '.'. Empty picks
  /// "node-<pid>".
  std::string name;
  /// Join the machine's node directory: names become unique machine-wide
  /// and other nodes can reach this one. Off, the node is a private island.
  bool join_directory = true;
  /// The directory; empty picks $COURIER_DIR, else /run/courier for root and
  /// /tmp/courier for other users (see docs/directory.md).
  std::string directory;
  // -- the cluster registry (etcd); docs/directory.md, "The etcd registry" --
  /// Where node records and actor names live cluster-wide:
  /// "etcd://host:port[,host:port...][/prefix/]" (an etcd 3.4+ cluster's
  /// client URLs, tried in turn; keys under /courier/v1/ unless a prefix is
  /// given). Node and actor names are then unique across every node of the
  /// registry, and a node that stops renewing its lease is down for all.
  /// The node still takes its local folder from `directory` (its local
  /// tiers' sockets, and its name there). Empty: the machine's directory
  /// alone. Ignored when join_directory is false.
  std::string registry;
  /// The TTL of the node's lease in the registry, renewed every third of
  /// it: how long a frozen or cut-off node stays registered. Whole seconds
  /// (rounded up, at least 1; etcd may raise it to its minimum).
  std::chrono::milliseconds registry_lease{5000};
  /// The deadline of each call to the registry (connect, request, answer).
  /// An unreachable registry fails node::start with unavailable.
  std::chrono::milliseconds registry_timeout{2000};
  // -- end of the cluster registry --------------------------------------------
  /// Static seeds (docs/directory.md, "Static seeds"): the nodes of other
  /// machines, for two or three machines without a registry. Each seed's
  /// names are asked over the link to it (as many as its rules let this
  /// node find); this machine's nodes come from `directory` as always.
  /// Names are unique per machine, and refused when a seed answered that
  /// it holds them; only the registry makes them unique cluster-wide. Not
  /// with `registry`. Ignored when join_directory is false.
  std::vector<seed> seeds;
  /// How long a seed's answer is used before the next lookup asks again: a
  /// name that appears on a seed is found within it.
  std::chrono::milliseconds seed_cache_ttl{2000};
  /// Tiers this node uses to reach and accept other nodes, by name, e.g.
  /// `{{"pipe", courier::pipe::factory()}}`; courier::local_transports()
  /// (courier/transports.hpp, target courier::transports) registers the
  /// tiers that ship with Courier. The tier policy ranks them per peer by
  /// what each says it reaches. Without any, other nodes are unreachable.
  std::vector<std::pair<std::string, transport_factory>> transports;
  /// Tier overrides per peer node: (glob pattern of node names, tier name);
  /// the first match picks the tier a new route tries first, before the
  /// automatic choice (which remains the fallback). E.g. `{{"db-*", "pipe"}}`.
  std::vector<std::pair<std::string, std::string>> preferred_tiers;
  /// Limits for every transport (frame size, queued bytes). max_queued also
  /// bounds the bytes posted to another node and not yet written to its
  /// link: a post beyond it fails at once with resource_exhausted.
  transport_limits limits;
  /// Posts from this node that may wait, unhandled, in one of its actors'
  /// mailboxes; a post beyond it fails at once with resource_exhausted, so
  /// a fast poster cannot grow a slow actor's mailbox without bound. 0: no
  /// limit. Requests are not counted (each has a requester waiting), nor
  /// messages from other nodes (limits.max_queued bounds those, per link).
  std::size_t max_mailbox = 1'000'000;
  /// Other users allowed to connect (their uid or primary gid); by default
  /// only this node's own uid. Checked against SO_PEERCRED before anything
  /// is read from the peer. Each stands for a rule allowing that user
  /// everything (`{"uid:<n>", "*", verbs::all}`); see `rules` for less.
  std::vector<unsigned> allowed_uids;
  std::vector<unsigned> allowed_gids;
  /// This node's host, when the machine's own word is not the one wanted:
  /// nodes that name the same host are on one host for the tier policy.
  /// Empty: the machine id, boot id and network namespace (so nodes in two
  /// network namespaces are on two hosts).
  std::string host;

  // -- authorization (docs/security.md) ---------------------------------------
  /// What principals other than this node's own user may do to its actors:
  /// each rule allows a principal (`uid:<n>`, `gid:<n>`, `cert:<glob>`,
  /// `san:<glob>`) some verbs on the actor names matching a glob
  /// (courier/access.hpp). Deny by default: whatever no rule allows is
  /// refused on this node before the payload is parsed (permission_denied
  /// to a request, a post dropped), counted (node::refusals) and logged (at
  /// most one line a second); nothing reaches the actor or its dead
  /// letters. Names the principal may not `find` are left out of what it
  /// lists. A local user no rule names may not link at all; certificate
  /// peers and plaintext network peers (`anonymous`) may link and do what
  /// rules allow. The node's own uid, and allowed_uids and allowed_gids,
  /// may do everything. node::start fails with invalid_argument for a
  /// malformed rule.
  std::vector<access_rule> rules;
  // -- end of authorization ---------------------------------------------------
  // -- metrics (docs/operations.md) -------------------------------------------
  /// Count per actor and time handlers and requests (histograms). Off,
  /// the node still counts per link, per tier, dead letters and refusals.
  bool metrics = true;
  /// Where to serve GET /metrics (Prometheus text format) over HTTP, as
  /// "host:port"; port 0 picks one (node::metrics_address). Empty: no
  /// endpoint. node::start fails with invalid_argument for a bad address
  /// and unavailable when it cannot listen there.
  std::string metrics_listen;
  /// Durable delivery (post_options::durable, docs/durable.md), e.g.
  /// `courier::durable::delivery({.directory = "/var/lib/app/queue"})`
  /// (courier/durable/delivery.hpp). Empty: durable posts fail with
  /// failed_precondition, and durable transfers from other nodes with
  /// unimplemented (their senders keep them and try again).
  durable_factory durable;
  /// Services that run beside the node, each under a name
  /// (courier/node_plugin.hpp): e.g. {"gateway",
  /// courier::gateway::plugin(options)}. Started in this order once the
  /// node has started (one that fails fails node::start()), stopped in the
  /// reverse order before its actors.
  std::vector<std::pair<std::string, plugin_factory>> plugins;
  /// How long a new link may take to say hello.
  std::chrono::milliseconds handshake_timeout{2000};
  /// Protobuf recursion limit when parsing payloads from other nodes.
  int recursion_limit = 100;
  /// Scheduler threads; 0 picks the number of cores (at least 2).
  std::size_t worker_threads = 0;
  scheduler_policy scheduler = scheduler_policy::automatic;
  /// How long an idle scheduler thread polls before it sleeps, with
  /// scheduler_policy::latency.
  std::chrono::microseconds idle_spin{200};
  /// Where log lines go; empty writes warnings and errors to stderr
  /// (with log_format::json: info and above). Called from runtime threads;
  /// keep it short and thread-safe.
  std::function<void(log_level, std::string_view)> log;
  /// text, or json: each line (to `log`, or to stderr) is one JSON object.
  courier::log_format log_format = courier::log_format::text;
  /// Start a trace (courier/trace.hpp) for every post, send, request and
  /// broadcast that does not continue one already (a plain thread's, or a
  /// handler's for an untraced message). Off, only traces that come in
  /// (from another node, the gateway, a trace_scope) are continued.
  bool trace = false;
};

} // namespace courier

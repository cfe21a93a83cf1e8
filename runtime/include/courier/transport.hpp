#pragma once

// The runtime's plug-in point for tiers. A transport moves opaque frames
// (encoded envelopes, docs/wire-format.md) between two nodes and reports who
// the peer is, as the kernel or a certificate says; the runtime does the
// handshake, authorization, envelopes, ordering and replies.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "courier/deadline.hpp"
#include "courier/error.hpp"
#include "courier/frame.hpp"

namespace courier {

/// The peer process of a link, as the kernel reports it (SO_PEERCRED on a
/// local socket).
struct kernel_credentials {
  int pid = -1;
  unsigned uid = ~0u;
  unsigned gid = ~0u;
};

/// The peer of a link, as a certificate names it (mutual TLS): its subject
/// and subject alternative names.
struct certificate_identity {
  std::string subject;
  std::vector<std::string> alt_names;
};

/// Who is at the other end of a link. A transport fills in what it can
/// vouch for: kernel credentials on local sockets, a certificate on TLS
/// links, only the address on a plain network socket. The runtime's authenticator
/// turns it into a principal and checks it (runtime/src/authenticator.hpp).
struct peer_identity {
  std::optional<kernel_credentials> kernel;
  std::optional<certificate_identity> certificate;
  /// Where a network peer connects from ("10.0.0.2:41234"). On a plaintext
  /// network link it is all there is: the tier was configured to take such
  /// peers on their word (authorized as "anonymous").
  std::string address;

  /// For log lines and refusals: "uid 1000 (pid 42)", "certificate CN=x",
  /// or "an unauthenticated peer".
  std::string describe() const;
};

/// The identity of the process at the other end of a connected local
/// socket (SO_PEERCRED); empty if the kernel does not say.
peer_identity kernel_peer_of(int socket_fd);

/// Where a node runs, as its record in the directory says: what a
/// transport needs to judge whether it can reach it. A host is a machine id,
/// a boot id and a network namespace.
struct node_place {
  std::string name;
  std::string host_id;
  std::string boot_id;
  std::string netns;
  std::string session;
  int pid = -1;
  unsigned uid = ~0u;
  unsigned gid = ~0u;

  bool same_host(const node_place& other) const noexcept {
    return host_id == other.host_id && boot_id == other.boot_id
           && netns == other.netns;
  }
};

/// Whether, and how well, a transport reaches a peer node.
struct reach_result {
  /// 0: cannot reach it. Otherwise higher is better; the tier policy tries
  /// the reachable tiers best first.
  unsigned rank = 0;
  /// Why, in a few words ("same user, same machine", "another user (uid
  /// 1000)"): shown by routes() as the note of the route.
  std::string reason;
};

/// Where a transport listens, given by the node.
struct listen_context {
  /// The node's name, unique within the directory.
  std::string node;
  /// The name the transport is registered under in this node.
  std::string tier;
  /// A folder of the node's directory in which local tiers may create their
  /// endpoints (sockets); empty when the directory has none. Every tier of
  /// every node shares it: a transport names its endpoints after `node`
  /// and, when registered under another name than its own, `tier`.
  std::string local_dir;

  /// The path of a local endpoint in local_dir for a transport named
  /// `own_name`: <node><suffix>, or <node>.<tier><suffix> when registered
  /// under another name.
  std::string local_endpoint(std::string_view own_name,
                             std::string_view suffix) const {
    auto path = local_dir + "/" + node;
    if (!tier.empty() && tier != own_name)
      path.append(".").append(tier);
    return path.append(suffix);
  }
};

/// A large frame read in two strings: `bulk`, the run of its bytes that
/// link_events::split() asked for, and `rest`, the frame without them; the
/// bulk belongs at rest[bulk_at].
struct split_frame {
  std::string rest;
  std::size_t bulk_at = 0;
  std::string bulk;

  std::size_t size() const noexcept {
    return rest.size() + bulk.size();
  }

  /// The frame in one string (a copy of the bulk).
  std::string joined() && {
    rest.insert(bulk_at, bulk);
    return std::move(rest);
  }
};

/// Bytes [at, at + size) of a frame.
struct frame_range {
  std::size_t at = 0;
  std::size_t size = 0;
};

/// What a link reads, delivered to the runtime.
///
/// Thread safety: a transport calls these from its own I/O thread, one call
/// at a time per link; on_closed comes once, after the last on_frame.
/// on_writable() may come from another of the transport's threads, at the
/// same time as the others.
class link_events {
public:
  virtual ~link_events() = default;

  /// One whole frame, at most the transport's frame limit in size.
  virtual void on_frame(std::string frame) = 0;

  /// One whole frame whose bytes stay valid only during the call (a
  /// transport's read buffer): true if the receiver handled it then, false
  /// if it wants it by on_frame() instead, which the transport then calls.
  /// Saves a copy where the receiver can act at once; by default, false.
  virtual bool on_frame_here(std::string_view frame) {
    (void)frame;
    return false;
  }

  /// Asked after frames were delivered: false when the receiver has too
  /// much on its hands. The transport then stops reading as if by
  /// link::pause_reading(), until link::resume_reading().
  virtual bool wants_more() {
    return true;
  }

  /// Several whole frames read at once, in order (taken, or left to be
  /// cleared); by default, one on_frame() each.
  virtual void on_frames(std::vector<std::string>& frames) {
    for (auto& frame : frames)
      on_frame(std::move(frame));
  }

  /// For a frame of `size` bytes that begins with `head`, asked before the
  /// rest is read: the run of its bytes to read into a string of its own
  /// (a large field, which the receiver then adopts instead of copying),
  /// handed over by on_split_frame(); size 0 (the default) for none. The
  /// run starts at most at head.size() and ends at most at `size`.
  /// Transports ask for frames larger than what they read at once.
  virtual frame_range split(std::string_view head, std::size_t size) {
    (void)head;
    (void)size;
    return {};
  }

  /// A string to read a split() run of `size` bytes into: one the receiver
  /// is done with, of at least that capacity and with its old bytes (so
  /// resizing it clears nothing), or an empty one (the default).
  virtual std::string take_buffer(std::size_t size) {
    (void) size;
    return {};
  }

  /// A frame read as split() asked; by default, joined for on_frame().
  virtual void on_split_frame(split_frame frame) {
    on_frame(std::move(frame).joined());
  }

  /// The link is gone: closed by either side, a read error, or a frame over
  /// the limit (resource_exhausted).
  virtual void on_closed(const error& reason) = 0;

  /// The outbound queue, found too full by link::writable(), has room again.
  virtual void on_writable() {
  }
};

/// One connection to one peer node.
///
/// Thread safety: write() and close() may be called from any thread; frames
/// written from one thread leave in the order written.
class link {
public:
  virtual ~link() = default;

  /// Starts reading; no event arrives before this.
  virtual void start(std::shared_ptr<link_events> events) = 0;

  /// Queues one frame and returns at once. Fails with resource_exhausted
  /// when the frame is over the limit or the outbound queue is full, and
  /// with unavailable once the link is closed. Never blocks. The frame (and
  /// what it keeps alive) is released once written.
  virtual expected<void> write(frame out) = 0;

  /// As write(), when more frames follow at once: the link may hold this
  /// one back, to write it with them, until the next write() or flush().
  virtual expected<void> write_more(frame out) {
    return write(std::move(out));
  }

  /// Writes what write_more() held back.
  virtual void flush() {
  }

  /// Stops reading from the peer (frames already read still arrive): the
  /// receiver's backpressure, and what link_events::wants_more() == false
  /// does. The peer's writes then fill the link and wait. Each pause is
  /// undone by one resume_reading(), in any order; reading goes on when
  /// they balance. Callable from any thread.
  virtual void pause_reading() {
  }

  virtual void resume_reading() {
  }

  /// Sets the largest frame this link accepts from the peer from now on:
  /// `max_frame`, capped at transport_limits::max_frame. A frame announced
  /// larger closes the link (on_closed with resource_exhausted) before its
  /// body is buffered. The runtime lowers it before start() (a link that
  /// has not said hello may send only a hello-sized frame) and raises it
  /// once the handshake is done. Callable from any thread; frames already
  /// being read keep the limit they were read with.
  virtual void limit_frames(std::size_t max_frame) = 0;

  /// Hands back the string of a frame that on_frame() delivered, once it is
  /// read, for a later frame to be read into: no fresh memory to allocate
  /// and touch for every large frame. Optional: links may drop it.
  virtual void recycle(std::string buffer) {
    (void)buffer;
  }

  /// False while the outbound queue holds more than half of
  /// transport_limits::max_queued; on_writable() then follows once it holds
  /// less. A writer that waits for it while false never meets a full queue
  /// (frames are at most max_frame, which is at most half the queue).
  /// Links without a queue of their own are always writable.
  virtual bool writable() {
    return true;
  }

  /// Closes the link once the frames queued so far are written, or after a
  /// few seconds at most (a peer that does not read cannot keep a closing
  /// link, and what it queued, alive); on_closed follows. Idempotent.
  virtual void close() = 0;

  /// The peer, as the transport vouches for it; fixed before start().
  virtual const peer_identity& peer() const noexcept = 0;
};

/// The link a transport hands out when the link's state is shared with
/// threads of the transport (I/O completions, pollers) that may outlive the
/// owner's handle: forwards to `Impl`, and calls `impl.release()` when the
/// owner lets go (close, and for some tiers wait for the link's threads).
template <class Impl>
class shared_link final : public link {
public:
  explicit shared_link(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {
  }

  ~shared_link() override {
    impl_->release();
  }

  void start(std::shared_ptr<link_events> events) override {
    impl_->start(std::move(events));
  }

  expected<void> write(frame out) override {
    return impl_->write(std::move(out));
  }

  expected<void> write_more(frame out) override {
    return impl_->write_more(std::move(out));
  }

  void flush() override {
    impl_->flush();
  }

  void pause_reading() override {
    impl_->pause_reading();
  }

  void resume_reading() override {
    impl_->resume_reading();
  }

  void limit_frames(std::size_t max_frame) override {
    impl_->limit_frames(max_frame);
  }

  void recycle(std::string buffer) override {
    impl_->recycle(std::move(buffer));
  }

  bool writable() override {
    return impl_->writable();
  }

  void close() override {
    impl_->close();
  }

  const peer_identity& peer() const noexcept override {
    return impl_->peer();
  }

private:
  std::shared_ptr<Impl> impl_;
};

/// Limits a transport enforces.
struct transport_limits {
  /// Largest frame accepted or sent (4 MiB by default).
  std::size_t max_frame = 4u << 20;
  /// Bytes queued for writing per link before write() refuses (at least
  /// twice max_frame).
  std::size_t max_queued = 64u << 20;
  /// Node-wide: bytes of large receive buffers (64 KiB and up) the node
  /// keeps, once the messages that held them are gone, for the next large
  /// frames of any link to be read into; a buffer unused for 2 s is let go.
  /// 0 keeps none (every large frame is read into fresh memory).
  std::size_t spare_buffers = 32u << 20;
};

/// One tier: accepts and opens links.
///
/// Adding a tier is a folder under transports/ with a transport like this:
/// reach() says which peers it serves and how well, listen() gives the
/// address format, and one line registers its factory in
/// node_config::transports. Nothing in the runtime names a tier.
///
/// Thread safety: all member functions are thread-safe.
class transport {
public:
  virtual ~transport() = default;

  /// The tier's name, e.g. "pipe".
  virtual std::string_view name() const noexcept = 0;

  /// Whether, and how well, links of this tier reach `peer` from `self`.
  /// Decided from the two places alone, without I/O.
  virtual reach_result reach(const node_place& self,
                             const node_place& peer) const = 0;

  /// Accepts links, and returns the address that other nodes connect() to
  /// (published in the node's record). Each accepted link is handed to
  /// `on_accept` on the transport's I/O thread, not yet started.
  virtual expected<std::string>
  listen(const listen_context& where,
         std::function<void(std::unique_ptr<link>)> on_accept) = 0;

  /// Opens a link to `address`, as the peer's listen() returned it; may
  /// block until `until`.
  virtual expected<std::unique_ptr<link>> connect(const std::string& address,
                                                  deadline until) = 0;

  /// Stops accepting and lets closing links finish writing (bounded);
  /// idempotent.
  virtual void stop() = 0;

  /// Delivers, on the calling thread, frames its links have already
  /// received, without waiting; true if it delivered any. Called by the
  /// idle threads of scheduler_policy::latency, from any thread, while the
  /// links' own threads run: frames of one link still reach on_frame one at
  /// a time and in order. Tiers with nothing to gain keep the default.
  virtual bool poll() {
    return false;
  }

  /// The thread that called poll() stops polling to sleep: no poll()
  /// follows until the scheduler has work again. A tier whose poll() does
  /// I/O that its own threads do otherwise hands it back to them here.
  /// Called from the scheduler's threads; keep it short.
  virtual void polling_stopped() {
  }

  /// Whether poll() delivers anything: a tier whose frames arrive only on
  /// threads of its own says no. scheduler_policy::automatic
  /// polls only in nodes with a tier that says yes; in the others a
  /// polling thread would only take the CPU those threads need.
  virtual bool pollable() const noexcept {
    return false;
  }

  /// Whether polling still pays in a node with plug-ins
  /// (node_config::plugins), which may serve on threads that share this
  /// tier's I/O machinery: the gateway's gRPC callback threads hold gRPC's
  /// poller for the whole process, the gRPC tier's I/O included, and a
  /// polling thread would only take their CPU. A tier that says no is not
  /// polled in such a node, as if not pollable().
  virtual bool pollable_beside_plugins() const noexcept {
    return pollable();
  }
};

/// Makes a transport. Registered explicitly by name in node_config.
using transport_factory
  = std::function<expected<std::unique_ptr<transport>>(const transport_limits&)>;

} // namespace courier

#pragma once

// A Courier link over one bidirectional gRPC stream: what the client side
// (the dialer's call) and the server side (the accepted call) share. One
// gRPC message is one frame, as a ByteBuffer (no Protobuf wrapper); an
// empty message is a heartbeat, never delivered.
//
// The call itself is reached through `call_ops`, which the two call
// objects of grpc_calls.hpp implement over the tier's completion queue.
// gRPC allows one read and one write in flight per stream, and the call
// must not be touched once released (client: our hold on it removed;
// server: Finish called), after which it ends and tells the link
// (on_done).
//
// Reading: one read is in flight while the link is started and not paused;
// its completion (on a thread draining the queue: a polling scheduler
// thread, or the tier's own) checks the frame against the current limit
// and hands it over, then starts the next read unless paused.
// Writing: frames queue under mu_; the writer's thread starts the write
// when none is in flight (no hop to another thread), and each completion
// starts the next. Closing: once the queue is written, the client
// half-closes (WritesDone) and the server finishes the call (status OK);
// whatever is left after close_linger is dropped and the call cancelled.
//
// Every call into call_ops happens outside mu_ (a gRPC call may run a
// reaction of this link on the same thread), counted in in_call_, and
// never after `released_`: release waits for in_call_ to reach zero.
//
// Lock order: mu_ only (spare_mu_ is taken alone).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include "courier/transport.hpp"

namespace courier::grpc_tier {

/// What a link does to its gRPC call.
class call_ops {
public:
  virtual ~call_ops() = default;

  /// Starts reading the next message into `into`.
  virtual void read(::grpc::ByteBuffer* into) = 0;

  /// Starts writing `out` (alive until the write completes).
  virtual void write(const ::grpc::ByteBuffer* out) = 0;

  /// Ends our side once the queue is written: the client half-closes, the
  /// server finishes with OK. The call stays ours until release().
  virtual void end_writes() = 0;

  /// Breaks the call at once (cancel; the server finishes with `why`).
  virtual void abort(const ::grpc::Status& why) = 0;

  /// Gives the call back to gRPC: nothing touches it afterwards.
  virtual void release() = 0;
};

/// Heartbeats and the detection bound of a link; zero turns each off.
struct liveness {
  std::chrono::milliseconds heartbeat{0};
  std::chrono::milliseconds silence{0};
};

/// Thread safety: as courier::link; the on_* completions come from the
/// threads draining the tier's completion queue, one read completion and
/// one write completion at a time.
class grpc_link final : public link,
                        public std::enable_shared_from_this<grpc_link> {
public:
  using clock = std::chrono::steady_clock;

  /// `server`: the accepted side (release() is Finish, which also ends
  /// our writes; the client's release lets go of a hold).
  grpc_link(peer_identity peer, const transport_limits& limits, liveness live,
            bool server);

  /// The call to drive; set once, before anything else happens.
  void attach(call_ops* ops);

  /// The peer as the call's security says, once the dialer knows it;
  /// before start().
  void identify(peer_identity peer) {
    peer_ = std::move(peer);
  }

  // -- courier::link --------------------------------------------------------
  void start(std::shared_ptr<link_events> events) override;
  expected<void> write(frame out) override;
  void pause_reading() override;
  void resume_reading() override;
  void limit_frames(std::size_t max_frame) override;
  void recycle(std::string buffer) override;
  bool writable() override;
  void close() override;

  const peer_identity& peer() const noexcept override {
    return peer_;
  }

  /// The owner let go (shared_link): close, bounded by close_linger.
  void release() {
    close();
  }

  // -- from the call (threads draining the completion queue) -------------------
  void on_read_done(bool ok);
  void on_write_done(bool ok);
  /// The client's stream ended its writes (WritesDone went out).
  void on_writes_done();
  /// The server's call was cancelled (by the peer, or the connection broke).
  void on_cancel();
  /// The call is over (OnDone): `status` as the client got it (the server
  /// passes OK). Reports on_closed once.
  void on_done(const ::grpc::Status& status);

  // -- from the transport's ticker ----------------------------------------------
  /// Heartbeat, silence and the closing deadline; false once the link is
  /// over (the ticker forgets it).
  bool tick(clock::time_point now);

  /// Ends the link at once with `why` (a transport stopping).
  void fail(error why);

private:
  struct outbound {
    ::grpc::ByteBuffer buffer;
    std::size_t size = 0;
  };

  using lock_type = std::unique_lock<std::mutex>;

  template <class F>
  void with_call(lock_type& lock, F&& fn);
  void start_read(lock_type& lock);
  void start_write(lock_type& lock);
  void maybe_end(lock_type& lock);
  void maybe_release(lock_type& lock);
  void break_off(lock_type& lock, error why);
  void deliver(std::shared_ptr<link_events>& events);

  peer_identity peer_; // fixed before start()
  const transport_limits limits_;
  const liveness live_;
  const bool server_;
  std::atomic<std::size_t> frame_limit_;
  std::atomic<clock::rep> last_read_;
  std::atomic<clock::rep> last_sent_;

  std::mutex mu_;
  call_ops* ops_ = nullptr;               // guarded by mu_ (see in_call_)
  std::shared_ptr<link_events> events_;   // guarded by mu_
  std::optional<error> reason_;           // guarded by mu_: why it ended
  std::deque<outbound> queue_;            // guarded by mu_
  outbound in_flight_;                    // written by gRPC: one at a time
  std::size_t queued_bytes_ = 0;          // guarded by mu_, with in_flight_
  ::grpc::ByteBuffer incoming_;           // the read in flight
  clock::time_point close_by_;            // guarded by mu_
  int in_call_ = 0;                       // guarded by mu_
  int pauses_ = 0;                        // guarded by mu_
  bool started_ = false;                  // guarded by mu_
  bool reading_ = false;                  // guarded by mu_: a read in flight
  bool read_over_ = false;                // guarded by mu_: reads fail now
  bool writing_ = false;                  // guarded by mu_: a write in flight
  bool wants_room_ = false;               // guarded by mu_
  bool closing_ = false;                  // guarded by mu_: close() or ended
  bool ended_ = false;                    // guarded by mu_: end_writes() done
  bool aborted_ = false;                  // guarded by mu_: abort() done
  bool released_ = false;                 // guarded by mu_
  bool done_ = false;                     // guarded by mu_: on_done came
  std::mutex spare_mu_;
  std::string spare_;                     // guarded by spare_mu_: recycle()
};

} // namespace courier::grpc_tier

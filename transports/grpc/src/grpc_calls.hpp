#pragma once

// The two ends of a link's gRPC call, driven through the tier's completion
// queue (queue_driver.hpp): the dialer's call (client_call) and the
// accepted one (server_call). Each implements call_ops for its grpc_link
// and turns the completions of its operations into the link's on_*.
//
// Lifetime: a call counts what keeps it: the link's hold (dropped by
// release()) and each operation gRPC has not completed yet. The last to
// go tells the link that the call is over (on_done) and deletes the call:
// no completion ever finds it gone, and the link never calls it after
// release(). The tier's call_registry counts the calls alive, so that the
// queue is shut down only once none is.
//
// Operations: one read and one write in flight at a time (the link's
// rule, and gRPC's); the client's Finish is asked for as soon as the
// stream is open (as gRPC's callback API does), so its status is known
// whenever the call ends; the server's Finish is release().

#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <unordered_set>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "grpc_link.hpp"
#include "queue_driver.hpp"

namespace courier::grpc_tier {

/// The calls of a transport alive: how many, and the dialed ones' contexts
/// (to cancel what the server's shutdown does not).
///
/// Thread safety: all member functions are thread-safe.
class call_registry {
public:
  /// `dialed`: the context of a client call, null for a server call.
  void add(::grpc::ClientContext* dialed) {
    std::lock_guard guard{mu_};
    ++alive_;
    if (dialed != nullptr)
      dialed_.insert(dialed);
  }

  /// The call is going: its context must not be cancelled any more.
  void forget(::grpc::ClientContext* dialed) {
    std::lock_guard guard{mu_};
    dialed_.erase(dialed);
  }

  /// The call is gone.
  void remove() {
    std::lock_guard guard{mu_};
    if (--alive_ == 0)
      cv_.notify_all();
  }

  /// Cancels every dialed call (their operations then fail).
  void cancel_dialed() {
    std::lock_guard guard{mu_};
    for (auto* context : dialed_)
      context->TryCancel();
  }

  /// Waits until no call is alive, or `until`; true if none is.
  bool wait_none(std::chrono::steady_clock::time_point until) {
    std::unique_lock lock{mu_};
    return cv_.wait_until(lock, until, [this] { return alive_ == 0; });
  }

private:
  std::mutex mu_;
  std::condition_variable cv_;
  int alive_ = 0;                                  // guarded by mu_
  std::unordered_set<::grpc::ClientContext*> dialed_; // guarded by mu_
};

/// What both ends do alike: reading and writing (the same operations on
/// either end's stream), and counting what keeps the call.
template <class Self>
class link_call : public call_ops {
public:
  void read(::grpc::ByteBuffer* into) override {
    ++refs_;
    self().stream().Read(into, &read_);
  }

  void write(const ::grpc::ByteBuffer* out) override {
    ++refs_;
    self().stream().Write(*out, &written_);
  }

protected:
  /// `dialed`: the client's context, null on the server.
  link_call(call_registry& calls, int refs, ::grpc::ClientContext* dialed)
    : refs_(refs), calls_(calls), dialed_(dialed) {
  }

  /// Counts the call, once it is whole (its context may be cancelled from
  /// then on).
  void enlist() {
    calls_.add(dialed_);
  }

  ~link_call() override = default;

  /// Drops one of the call's references; the last tells the link that
  /// the call is over, and deletes the call.
  void unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) != 1)
      return;
    if (link_)
      link_->on_done(self().final_status());
    auto& calls = calls_;
    calls.forget(dialed_);
    delete &self();
    calls.remove();
  }

  std::shared_ptr<grpc_link> link_; // set before the first operation
  std::atomic<int> refs_;

private:
  Self& self() {
    return static_cast<Self&>(*this);
  }

  void on_read(bool ok) {
    link_->on_read_done(ok);
    unref();
  }

  void on_written(bool ok) {
    link_->on_write_done(ok);
    unref();
  }

  call_registry& calls_;
  ::grpc::ClientContext* const dialed_;
  member_completion<link_call, &link_call::on_read> read_{this};
  member_completion<link_call, &link_call::on_written> written_{this};
};

/// The dialer's call. Made by new; deletes itself.
class client_call final : public link_call<client_call> {
public:
  client_call(std::shared_ptr<grpc_link> link, ::grpc::CompletionQueue* queue,
              call_registry& calls);

  /// Starts the call on `channel`; the future says whether the server
  /// opened the stream (its initial metadata came).
  std::future<bool> begin(const std::shared_ptr<::grpc::Channel>& channel);

  /// Once the future said yes.
  ::grpc::ClientContext& context() noexcept {
    return context_;
  }

  // -- call_ops (besides reading and writing) ---------------------------------
  void end_writes() override;
  void abort(const ::grpc::Status& why) override;
  void release() override;

private:
  friend class link_call<client_call>;

  ~client_call() override = default;

  ::grpc::GenericClientAsyncReaderWriter& stream() {
    return *stream_;
  }

  const ::grpc::Status& final_status() const {
    return status_;
  }

  void on_started(bool ok);
  void on_opened(bool ok);
  void opening_step(bool ok);
  void on_writes_done(bool ok);
  void on_finished(bool ok);

  ::grpc::CompletionQueue* queue_;
  ::grpc::ClientContext context_;
  std::unique_ptr<::grpc::GenericClientAsyncReaderWriter> stream_;
  ::grpc::Status status_; // written by Finish's completion
  std::promise<bool> opened_;
  std::atomic<int> opening_{2}; // StartCall, and the initial metadata
  std::atomic<bool> opening_failed_{false};
  member_completion<client_call, &client_call::on_started> started_{this};
  member_completion<client_call, &client_call::on_opened> opened_tag_{this};
  member_completion<client_call, &client_call::on_writes_done> writes_done_{
    this};
  member_completion<client_call, &client_call::on_finished> finished_{this};
};

/// What a server_call asks of its transport.
class call_acceptor {
public:
  /// A call came (on a thread draining the queue): the link it carries,
  /// or null and the status to refuse it with.
  virtual std::shared_ptr<grpc_link>
  admit(::grpc::GenericServerContext& call, ::grpc::Status& refusal) = 0;

  /// The link of an admitted call, its call attached: hand it to the node.
  virtual void hand_over(const std::shared_ptr<grpc_link>& link) = 0;

  /// A call came: ask for the next one.
  virtual void request_next() = 0;

protected:
  ~call_acceptor() = default;
};

/// One call asked of the server, then accepted (or refused). Made by new;
/// deletes itself.
class server_call final : public link_call<server_call> {
public:
  /// Asks `service` for the next call.
  server_call(::grpc::AsyncGenericService& service,
              ::grpc::ServerCompletionQueue* queue, call_acceptor& acceptor,
              call_registry& calls);

  // -- call_ops (besides reading and writing) ---------------------------------
  void end_writes() override;
  void abort(const ::grpc::Status& why) override;
  void release() override;

private:
  friend class link_call<server_call>;

  ~server_call() override = default;

  ::grpc::GenericServerAsyncReaderWriter& stream() {
    return stream_;
  }

  const ::grpc::Status& final_status() const {
    return ::grpc::Status::OK;
  }

  void on_accepted(bool ok);
  void on_metadata_sent(bool ok);
  void on_finished(bool ok);
  void on_call_done(bool ok);

  call_acceptor& acceptor_;
  ::grpc::GenericServerContext context_;
  ::grpc::GenericServerAsyncReaderWriter stream_{&context_};
  // link_, for the end of the call, which may come on another thread
  // while on_accepted runs.
  std::atomic<grpc_link*> cancel_to_{nullptr};
  ::grpc::Status status_; // OK unless aborted
  member_completion<server_call, &server_call::on_accepted> accepted_{this};
  member_completion<server_call, &server_call::on_metadata_sent> metadata_{
    this};
  member_completion<server_call, &server_call::on_finished> finished_{this};
  member_completion<server_call, &server_call::on_call_done> call_done_{this};
};

} // namespace courier::grpc_tier

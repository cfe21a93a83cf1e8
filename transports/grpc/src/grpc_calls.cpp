#include "grpc_calls.hpp"

#include "courier/grpc_tier/grpc_transport.hpp"

namespace courier::grpc_tier {

// -- the dialer's call -------------------------------------------------------

client_call::client_call(std::shared_ptr<grpc_link> link,
                         ::grpc::CompletionQueue* queue, call_registry& calls)
  // The link's hold.
  : link_call(calls, 1, &context_), queue_(queue) {
  link_ = std::move(link);
  enlist();
}

std::future<bool>
client_call::begin(const std::shared_ptr<::grpc::Channel>& channel) {
  auto opened = opened_.get_future();
  ::grpc::GenericStub stub{channel};
  stream_ = stub.PrepareCall(&context_, link_method, queue_);
  refs_ += 2;
  stream_->StartCall(&started_);
  // The server sends its initial metadata when it takes the call: that is
  // the stream open.
  stream_->ReadInitialMetadata(&opened_tag_);
  return opened;
}

void client_call::on_started(bool ok) {
  opening_step(ok);
}

void client_call::on_opened(bool ok) {
  opening_step(ok);
}

/// The call's start and the server's initial metadata, in either order.
/// The link may write only once both are done: StartCall's operation is a
/// write that sends the initial metadata, and a write begun before its
/// completion was taken off the queue would send them again (gRPC aborts
/// the process for that).
void client_call::opening_step(bool ok) {
  if (!ok)
    opening_failed_.store(true);
  if (opening_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    // Until the call ends its Finish stays pending, with one read and one
    // write beside it (gRPC's callback API does the same), so that its
    // status is known whenever it ends.
    ++refs_;
    stream_->Finish(&status_, &finished_);
    opened_.set_value(!opening_failed_.load());
  }
  unref();
}

void client_call::end_writes() {
  ++refs_;
  stream_->WritesDone(&writes_done_);
}

void client_call::abort(const ::grpc::Status&) {
  context_.TryCancel();
}

void client_call::release() {
  unref();
}

void client_call::on_writes_done(bool) {
  link_->on_writes_done();
  unref();
}

void client_call::on_finished(bool) {
  unref();
}

// -- the accepted call ----------------------------------------------------------

server_call::server_call(::grpc::AsyncGenericService& service,
                         ::grpc::ServerCompletionQueue* queue,
                         call_acceptor& acceptor, call_registry& calls)
  // The request, and the call's end (which comes if the call does).
  : link_call(calls, 2, nullptr), acceptor_(acceptor) {
  enlist();
  // Told when the call ends, also by a cancel: the link then stops
  // waiting for operations that will only fail.
  context_.AsyncNotifyWhenDone(&call_done_);
  service.RequestCall(&context_, &stream_, queue, queue, &accepted_);
}

void server_call::on_accepted(bool ok) {
  if (!ok) {
    // The server is shutting down; no call came, nor will its end.
    refs_.fetch_sub(1);
    unref();
    return;
  }
  acceptor_.request_next();
  ::grpc::Status refusal;
  auto link = acceptor_.admit(context_, refusal);
  if (!link) {
    ++refs_;
    stream_.Finish(refusal, &finished_);
    unref();
    return;
  }
  link_ = std::move(link);
  link_->attach(this);
  // The dialer waits for this to know that the stream is open; sent before
  // anything else may touch the stream.
  refs_ += 2; // the link's hold, and the metadata
  stream_.SendInitialMetadata(&metadata_);
  cancel_to_.store(link_.get(), std::memory_order_release);
  acceptor_.hand_over(link_);
  unref();
}

void server_call::on_metadata_sent(bool) {
  unref();
}

void server_call::end_writes() {
  // The server's end is its Finish, in release().
}

void server_call::abort(const ::grpc::Status& why) {
  status_ = why; // sent by release()'s Finish
}

void server_call::release() {
  ++refs_;
  stream_.Finish(status_, &finished_);
  unref(); // the link's hold
}

void server_call::on_finished(bool) {
  unref();
}

void server_call::on_call_done(bool) {
  // (A call cancelled as it came may end before on_accepted has its link:
  // then the link learns it from its failing operations.)
  auto* link = cancel_to_.load(std::memory_order_acquire);
  if (link != nullptr && context_.IsCancelled())
    link->on_cancel();
  unref();
}

} // namespace courier::grpc_tier

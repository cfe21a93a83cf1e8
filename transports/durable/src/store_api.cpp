// The public face of the store: open() and thin wrappers over store::impl;
// the *_and_wait calls submit as leaders (store::impl::try_lead).

#include <future>

#include "courier/durable/crc32c.hpp"
#include "store_impl.hpp"

namespace courier::durable {

namespace {

/// After submitting as a leader: commit the batch here, or, if someone
/// else is committing, make sure the writer thread will look.
void lead_or_wake(store::impl& self) {
  if (!self.try_lead())
    self.queue_cv_.notify_one();
}

} // namespace

std::string_view to_string(dead_reason reason) noexcept {
  switch (reason) {
    case dead_reason::none:
      return "none";
    case dead_reason::time_to_reach_queue:
      return "time_to_reach_queue";
    case dead_reason::time_to_be_received:
      return "time_to_be_received";
    case dead_reason::poison:
      return "poison";
  }
  return "unknown";
}

store::impl::impl(store_options options)
  : opt_(std::move(options)),
    fs_(opt_.files ? opt_.files : posix_file_system()),
    clock_(opt_.clock ? opt_.clock : system_clock_source()),
    dedup_(opt_.dedup_window, opt_.dedup_max_producers) {}

// -- the public face ----------------------------------------------------------

expected<std::unique_ptr<store>> store::open(store_options options) {
  if (auto ok = check_crc32c_support(); !ok)
    return ok.error();
  if (options.directory.empty())
    return error{errc::invalid_argument, "store_options.directory is empty"};
  if (options.segment_bytes < 4096)
    return error{errc::invalid_argument,
                 "store_options.segment_bytes is below 4096"};
  if (options.max_attempts == 0)
    return error{errc::invalid_argument, "store_options.max_attempts is 0"};
  if (options.max_message_bytes + 4096 > format::max_record_body)
    return error{errc::invalid_argument,
                 "store_options.max_message_bytes is above 64 MiB"};
  auto self = std::make_unique<impl>(std::move(options));
  if (auto ok = self->recover(); !ok)
    return ok.error();
  self->start_threads();
  return std::unique_ptr<store>{new store(std::move(self))};
}

store::store(std::unique_ptr<impl> self) : self_(std::move(self)) {}

store::~store() {
  close();
}

void store::append(std::string_view queue, std::string payload,
                   const message_options& options, append_callback done) {
  self_->append(queue, std::move(payload), options, std::move(done));
}

expected<append_result> store::append_and_wait(std::string_view queue,
                                               std::string payload,
                                               const message_options& options) {
  std::promise<expected<append_result>> p;
  auto f = p.get_future();
  {
    impl::leading_scope lead;
    self_->append(
      queue, std::move(payload), options,
      [&p](expected<append_result> r) { p.set_value(std::move(r)); });
  }
  lead_or_wake(*self_);
  return f.get();
}

expected<std::vector<stored_message>> store::claim(std::string_view queue,
                                                   std::size_t max) {
  return self_->claim(queue, max, true);
}

expected<std::vector<stored_message>>
store::claim_uncounted(std::string_view queue, std::size_t max) {
  return self_->claim(queue, max, false);
}

expected<void> store::release(std::uint64_t id,
                              std::chrono::milliseconds retry_after) {
  return self_->release(id, retry_after);
}

void store::complete(std::uint64_t id, done_callback done) {
  self_->complete(id, std::move(done));
}

namespace {

template <class F>
expected<void> wait_void(store::impl& self, F&& start) {
  std::promise<expected<void>> p;
  auto f = p.get_future();
  {
    store::impl::leading_scope lead;
    start([&p](expected<void> r) { p.set_value(std::move(r)); });
  }
  lead_or_wake(self);
  return f.get();
}

} // namespace

expected<void> store::complete_and_wait(std::uint64_t id) {
  return wait_void(*self_, [&](done_callback cb) { self_->complete(id, cb); });
}

void store::fail(std::uint64_t id, std::string reason, done_callback done,
                 std::chrono::milliseconds retry_after) {
  self_->fail(id, std::move(reason), std::move(done), retry_after);
}

expected<void> store::fail_and_wait(std::uint64_t id, std::string reason,
                                    std::chrono::milliseconds retry_after) {
  return wait_void(*self_, [&](done_callback cb) {
    self_->fail(id, std::move(reason), cb, retry_after);
  });
}

std::size_t store::dead_letter_count() const {
  return self_->dead_letter_count();
}

std::vector<stored_message> store::peek(std::string_view queue,
                                        std::size_t max) const {
  return self_->peek(queue, max);
}

std::vector<queue_info> store::queues() const {
  return self_->queues();
}

std::vector<dead_letter> store::dead_letters() const {
  return self_->dead_letters();
}

expected<void> store::replay(std::uint64_t id) {
  return wait_void(*self_, [&](done_callback cb) { self_->replay(id, cb); });
}

expected<std::size_t> store::purge(std::string_view queue) {
  std::promise<expected<std::size_t>> p;
  auto f = p.get_future();
  {
    impl::leading_scope lead;
    self_->purge(queue,
                 [&p](expected<std::size_t> r) { p.set_value(std::move(r)); });
  }
  lead_or_wake(*self_);
  return f.get();
}

expected<void> store::discard(std::uint64_t id) {
  return wait_void(*self_, [&](done_callback cb) { self_->discard(id, cb); });
}

std::size_t store::expire_due() {
  return self_->expire_due();
}

expected<void> store::compact() {
  return self_->compact();
}

expected<void> store::flush() {
  return wait_void(*self_, [&](done_callback cb) { self_->flush(cb); });
}

expected<void> store::status() const {
  return self_->status();
}

const recovery_report& store::recovery() const noexcept {
  return self_->report_;
}

void store::close() {
  if (self_)
    self_->close();
}

} // namespace courier::durable

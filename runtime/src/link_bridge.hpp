#pragma once

// The bridge: the link_events a link's transport calls on its own threads.

#include <memory>
#include <string>
#include <vector>

#include <caf/send.hpp>

#include "link_core.hpp"
#include "link_messages.hpp"

namespace courier::detail {

/// Hands what the transport reads (on its threads) to the actors, through
/// the proxy when it must, counting the bytes into the link's inbound
/// backlog: the letters made from them hold them until local actors have
/// handled them. Over `limit`, the transport is told to stop reading
/// (wants_more()).
class bridge final : public link_events {
public:
  /// What a frame of `size` bytes is charged when it arrives.
  static std::size_t charged(std::size_t size) noexcept {
    return size + message_overhead;
  }

  bridge(std::shared_ptr<link_core> core, std::size_t limit)
    : core_(std::move(core)), inbound_(core_->inbound()), limit_(limit) {
  }

  void on_frame(std::string frame) override {
    inbound_->bytes.fetch_add(charged(frame.size()), std::memory_order_relaxed);
    if (core_->read_here(frame, nullptr, 0, charged(frame.size()))) {
      // Only large strings are worth reading into again (link::recycle);
      // small ones skip the link's lock, which answer writers take too.
      if (frame.capacity() >= bulk_threshold)
        core_->recycle(std::move(frame));
      return;
    }
    forward(frame_msg{std::move(frame), {}, 0});
  }

  bool on_frame_here(std::string_view frame) override {
    inbound_->bytes.fetch_add(charged(frame.size()), std::memory_order_relaxed);
    if (core_->read_here(frame, nullptr, 0, charged(frame.size())))
      return true;
    // on_frame() follows, and counts it again.
    inbound_->bytes.fetch_sub(charged(frame.size()), std::memory_order_relaxed);
    return false;
  }

  frame_range split(std::string_view head, std::size_t size) override {
    auto bulk = find_bulk(head, size);
    return {bulk.begin, bulk.size};
  }

  std::string take_buffer(std::size_t size) override {
    return core_->bulks()->take(size);
  }

  void on_split_frame(split_frame frame) override {
    auto size = charged(frame.size());
    inbound_->bytes.fetch_add(size, std::memory_order_relaxed);
    if (core_->read_here(frame.rest, &frame.bulk, frame.bulk_at, size)) {
      core_->bulks()->give(std::move(frame.bulk)); // unless a payload took it
      return;
    }
    forward(frame_msg{std::move(frame.rest), std::move(frame.bulk),
                      frame.bulk_at});
  }

  void on_frames(std::vector<std::string>& frames) override {
    std::size_t bytes = 0;
    for (auto& frame : frames)
      bytes += charged(frame.size());
    inbound_->bytes.fetch_add(bytes, std::memory_order_relaxed);
    std::size_t done = 0;
    while (done < frames.size()
           && core_->read_here(frames[done], nullptr, 0,
                               charged(frames[done].size())))
      ++done;
    if (done == frames.size())
      return;
    frames.erase(frames.begin(),
                 frames.begin() + static_cast<std::ptrdiff_t>(done));
    forward(frames_msg{std::move(frames)});
  }

  bool wants_more() override {
    if (inbound_->bytes.load(std::memory_order_relaxed) <= limit_)
      return true;
    if (inbound_->paused.exchange(true))
      return true; // paused already: one pause, one resume
    // Caught up in the meantime, unseen by backlog_charge::settle()?
    return inbound_->bytes.load() <= inbound_->resume_at
           && inbound_->paused.exchange(false);
  }

  void on_closed(const error& reason) override {
    if (auto proxy = core_->proxy())
      caf::anon_send(proxy, closed_msg{reason});
  }

  void on_writable() override {
    if (auto proxy = core_->proxy())
      caf::anon_send(proxy, writable_msg{});
  }

private:
  template <class Message>
  void forward(Message msg) {
    auto proxy = core_->proxy();
    if (!proxy)
      return;
    core_->forwarded(); // until the proxy has handled it
    caf::anon_send(proxy, std::move(msg));
  }

  std::shared_ptr<link_core> core_;
  std::shared_ptr<backlog> inbound_;
  std::size_t limit_;
};

} // namespace courier::detail

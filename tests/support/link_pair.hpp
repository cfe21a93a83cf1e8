#pragma once

// Two transports of one tier in this process, listening in a temporary
// directory, and one link between them: for tests of a tier's links.

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "courier/transport.hpp"
#include "process.hpp"
#include "test_support.hpp"

namespace courier::testing {

/// Records what a link delivers; split() follows `split_rule` if set.
class recorder final : public link_events {
public:
  void on_frame(std::string frame) override {
    frames.push(std::move(frame));
    readers.push(std::this_thread::get_id()); // after: waits count these
  }

  frame_range split(std::string_view head, std::size_t size) override {
    return split_rule ? split_rule(head, size) : frame_range{};
  }

  void on_split_frame(split_frame frame) override {
    // The pieces, and the frame they make, in the order frames arrive.
    splits.push({frame.rest, frame.bulk_at, frame.bulk});
    frames.push(std::move(frame).joined());
  }

  void on_closed(const error& reason) override {
    closed.push(reason);
  }

  void on_writable() override {
    writable.push(true);
  }

  /// Set before the link starts.
  std::function<frame_range(std::string_view, std::size_t)> split_rule;
  probe<std::string> frames;
  probe<std::thread::id> readers; // the thread that delivered each frame
  probe<split_frame> splits;
  probe<error> closed;
  probe<bool> writable;
};

/// `sender` writes to `receiver` (the accepted end); `received` records what
/// the receiver reads, `replies` what the sender reads. `before_start`, if
/// set, is called with the accepted link before its start() (as the runtime
/// calls link::limit_frames() there).
struct link_pair {
  explicit link_pair(
    const transport_factory& factory, const transport_limits& limits = {},
    const std::function<void(recorder&)>& setup = {},
    std::function<void(courier::link&)> before_start = {}) {
    if (setup)
      setup(*received);
    auto made = factory(limits);
    REQUIRE(made);
    server = std::move(*made);
    made = factory(limits);
    REQUIRE(made);
    client = std::move(*made);
    auto address = server->listen(listen_context{"test", "", dir.path()},
                                  [this, before_start = std::move(
                                           before_start)](
                                    std::unique_ptr<courier::link> conn) {
                                    if (before_start)
                                      before_start(*conn);
                                    conn->start(received);
                                    accepted.push(std::move(conn));
                                  });
    REQUIRE(address);
    auto conn = client->connect(*address, deadline{std::chrono::seconds{5}});
    REQUIRE(conn);
    sender = std::move(*conn);
    sender->start(replies);
    REQUIRE(accepted.wait_for_count(1));
    receiver = accepted.items().front();
  }

  ~link_pair() {
    sender.reset();
    client->stop();
    server->stop();
  }

  temp_dir dir;
  std::unique_ptr<transport> server;
  std::unique_ptr<transport> client;
  std::shared_ptr<recorder> received = std::make_shared<recorder>();
  std::shared_ptr<recorder> replies = std::make_shared<recorder>();
  probe<std::shared_ptr<courier::link>> accepted;
  std::shared_ptr<courier::link> receiver;
  std::unique_ptr<courier::link> sender;
};

} // namespace courier::testing

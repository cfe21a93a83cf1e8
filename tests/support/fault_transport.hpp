#pragma once

// A transport that wraps another and injects faults on command, in the
// spirit of LevelDB's EnvWrapper: its links forward to the inner tier's
// links, except where a fault_plan says otherwise. Registered like any tier,
// under a name of its own:
//
//   auto plan = std::make_shared<fault_plan>();
//   config.transports = {{"fault", fault_factory(pipe::factory(), plan)}};
//   ...
//   plan->drop_next(1); // the next frame written goes nowhere
//
// Only writes are faulted (frames the node sends); reads pass through
// untouched. A plan serves every link of the transports made by its factory,
// so a test gives each node a plan of its own and commands the one whose
// writes it wants to break.

#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "courier/error.hpp"
#include "courier/transport.hpp"

namespace courier::testing {

/// What a fault transport does to the frames its links write and to the
/// links it opens, as commanded by a test at any time.
///
/// Thread safety: all member functions are thread-safe.
class fault_plan {
public:
  /// What happens to one frame written.
  enum class action {
    pass, ///< Written (after the current delay, if any).
    drop, ///< Not written; write() reports success.
    cut,  ///< Its first half written as a frame, then the link closed.
    fail, ///< write() returns the plan's error; nothing is written.
  };

  /// The next `frames` frames written are dropped.
  void drop_next(std::size_t frames);

  /// Frames written from now on leave `by` later than written, in order
  /// per link (zero ends the delay; frames delayed already keep theirs).
  void delay(std::chrono::milliseconds by);

  /// The next frame written is cut in the middle: its first half goes out
  /// as a frame of its own and the link closes, as when a peer's process
  /// dies mid-write. The runtime must see a broken link, never accept it.
  void cut_next();

  /// The next `frames` writes fail with `why`. resource_exhausted (the
  /// default) leaves the link open, as a full queue does; unavailable also
  /// closes the link, as the link contract says of that error.
  void fail_writes(std::size_t frames,
                   error why = error{errc::resource_exhausted,
                                     "the fault plan fails this write"});

  /// While on, connect() fails with unavailable at once.
  void refuse_connects(bool on);

  /// reach() answers with this rank (when the inner tier reaches the peer at
  /// all) instead of the inner tier's; nothing forwards it again.
  void rank(std::optional<unsigned> rank);

  // -- for the fault transport ------------------------------------------------

  /// Decides the fate of one frame being written: its action, and for pass
  /// the delay, for fail the error.
  struct verdict {
    action what = action::pass;
    std::chrono::milliseconds delay{0};
    error why{errc::ok};
  };
  verdict next_write();

  bool refusing_connects() const;
  std::optional<unsigned> rank() const;

  // -- what happened, for assertions ------------------------------------------

  std::size_t dropped() const;
  std::size_t cut() const;
  std::size_t failed() const;
  std::size_t refused() const;

  /// Counts a refused connect.
  void count_refusal();

private:
  mutable std::mutex mu_;
  std::size_t drop_ = 0;
  bool cut_ = false;
  std::size_t fail_ = 0;
  error fail_why_{errc::ok};
  std::chrono::milliseconds delay_{0};
  bool refuse_ = false;
  std::optional<unsigned> rank_;
  std::size_t dropped_ = 0;
  std::size_t cut_count_ = 0;
  std::size_t failed_ = 0;
  std::size_t refused_ = 0;
};

/// A transport factory whose transports wrap those of `inner` and follow
/// `plan`. `name` is the tier's name (the one it is registered under); a
/// local inner tier gets the folder <local_dir>/<name> for its endpoints, so
/// that the wrapper and the tier it wraps can serve one node side by side.
transport_factory fault_factory(transport_factory inner,
                                std::shared_ptr<fault_plan> plan,
                                std::string name = "fault");

} // namespace courier::testing

#pragma once

// An outbound frame: what a link writes. Mostly bytes the frame owns; a large
// string or bytes field of a payload is not copied in but referred to where
// it lies, in a message the frame keeps alive, so that a megabyte payload
// goes from the sender's message to the socket with no copy in user space.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace courier {

class frame {
public:
  frame() = default;

  /// A frame of owned bytes.
  frame(std::string bytes) // NOLINT: implicit, a string is a frame
    : owned_(std::move(bytes)) {
  }

  frame(frame&&) noexcept = default;
  frame& operator=(frame&&) noexcept = default;
  frame(const frame&) = delete;
  frame& operator=(const frame&) = delete;

  std::size_t size() const noexcept {
    return parts_.empty() ? owned_.size() : size_;
  }

  /// True when some bytes are referred to, not owned.
  bool aliases() const noexcept {
    return !parts_.empty();
  }

  /// Calls `fn(std::string_view)` for each part, in order; the views are
  /// valid while the frame lives and is not changed.
  template <class F>
  void for_each_part(F&& fn) const {
    if (parts_.empty()) {
      fn(std::string_view{owned_});
      return;
    }
    for (const auto& p : parts_)
      fn(p.alias != nullptr ? std::string_view{p.alias, p.size}
                            : std::string_view{owned_}.substr(p.offset, p.size));
  }

  /// The bytes in one string (a copy of the referred parts; none otherwise).
  std::string flatten() &&;

  // -- building ---------------------------------------------------------------

  /// Appends `n` owned bytes and returns where to write them; valid until the
  /// next change.
  char* extend(std::size_t n);

  /// Gives back the last `n` bytes of the last extend().
  void shrink(std::size_t n);

  /// Refers to `size` bytes at `data`: they must live as long as what
  /// keep_alive() holds.
  void alias(const char* data, std::size_t size);

  /// Holds `owner` (the message aliased parts point into) while the frame
  /// lives.
  void keep_alive(std::shared_ptr<const void> owner) {
    owner_ = std::move(owner);
  }

private:
  struct part {
    const char* alias = nullptr; // null: owned_[offset, offset + size)
    std::size_t offset = 0;
    std::size_t size = 0;
  };

  std::string owned_;
  std::vector<part> parts_; // empty: the frame is owned_
  std::size_t size_ = 0;    // with parts_
  std::shared_ptr<const void> owner_;
};

} // namespace courier

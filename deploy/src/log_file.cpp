#include "log_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace courier::deploy::detail {

log_file::log_file(std::filesystem::path path, std::uint64_t max_size)
  : path_(std::move(path)), max_size_(max_size) {
  open();
}

log_file::~log_file() {
  if (fd_ >= 0)
    ::close(fd_);
}

void log_file::open() {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  struct stat info {};
  size_ = fd_ >= 0 && ::fstat(fd_, &info) == 0
            ? static_cast<std::uint64_t>(info.st_size)
            : 0;
}

void log_file::write(std::string_view bytes) {
  if (size_ > 0 && size_ + bytes.size() > max_size_) {
    if (fd_ >= 0)
      ::close(fd_);
    auto old = path_;
    old += ".1";
    std::error_code ignored;
    std::filesystem::rename(path_, old, ignored);
    open();
  }
  while (fd_ >= 0 && !bytes.empty()) {
    auto n = ::write(fd_, bytes.data(), bytes.size());
    if (n <= 0)
      return;
    size_ += static_cast<std::uint64_t>(n);
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

} // namespace courier::deploy::detail

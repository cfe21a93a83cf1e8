#pragma once

// One log file with a size bound: past `max_size` bytes the file becomes
// `<file>.1` (replacing the previous one) and a new file starts, so a node
// never holds more than twice the bound on disk.

#include <cstdint>
#include <filesystem>
#include <string_view>

namespace courier::deploy::detail {

/// Thread safety: none; the supervisor's loop owns its log files.
class log_file {
public:
  log_file(std::filesystem::path path, std::uint64_t max_size);
  ~log_file();

  log_file(const log_file&) = delete;
  log_file& operator=(const log_file&) = delete;

  /// Appends `bytes`, rotating first if they would pass the bound. A
  /// file that cannot be written drops them (the supervisor goes on).
  void write(std::string_view bytes);

private:
  void open();

  std::filesystem::path path_;
  std::uint64_t max_size_;
  std::uint64_t size_ = 0;
  int fd_ = -1;
};

} // namespace courier::deploy::detail

#include "courier/durable/file_system.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

namespace courier::durable {

error io_error(int err, const char* op, const std::string& path) {
  auto code = (err == ENOSPC || err == EDQUOT) ? errc::resource_exhausted
                                               : errc::unavailable;
  return {code, std::string{op} + " " + path + ": " + std::strerror(err)};
}

namespace {

class posix_file final : public file {
public:
  posix_file(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  ~posix_file() override {
    ::close(fd_);
  }

  expected<void> write_at(std::uint64_t offset, const void* data,
                          std::size_t size) override {
    auto* p = static_cast<const char*>(data);
    while (size > 0) {
      auto n = ::pwrite(fd_, p, size, static_cast<off_t>(offset));
      if (n < 0) {
        if (errno == EINTR)
          continue;
        return io_error(errno, "write", path_);
      }
      if (n == 0)
        return io_error(ENOSPC, "write", path_);
      p += n;
      offset += static_cast<std::uint64_t>(n);
      size -= static_cast<std::size_t>(n);
    }
    return {};
  }

  expected<std::size_t> read_at(std::uint64_t offset, void* data,
                                std::size_t size) override {
    std::size_t done = 0;
    auto* p = static_cast<char*>(data);
    while (done < size) {
      auto n = ::pread(fd_, p + done, size - done,
                       static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR)
          continue;
        return io_error(errno, "read", path_);
      }
      if (n == 0)
        break;
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

  expected<void> sync() override {
    if (::fdatasync(fd_) != 0)
      return io_error(errno, "fdatasync", path_);
    return {};
  }

  expected<void> truncate(std::uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0)
      return io_error(errno, "ftruncate", path_);
    return {};
  }

  expected<std::uint64_t> size() override {
    struct stat st {};
    if (::fstat(fd_, &st) != 0)
      return io_error(errno, "fstat", path_);
    return static_cast<std::uint64_t>(st.st_size);
  }

private:
  int fd_;
  std::string path_;
};

class posix_fs final : public file_system {
public:
  expected<std::unique_ptr<file>> open(const std::string& path,
                                       bool create) override {
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
    int fd = ::open(path.c_str(), flags, 0640);
    if (fd < 0)
      return io_error(errno, "open", path);
    return std::unique_ptr<file>{new posix_file(fd, path)};
  }

  expected<std::vector<std::string>> list(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr)
      return io_error(errno, "opendir", dir);
    std::vector<std::string> names;
    while (auto* entry = ::readdir(d)) {
      std::string name = entry->d_name;
      if (name != "." && name != "..")
        names.push_back(std::move(name));
    }
    ::closedir(d);
    return names;
  }

  expected<void> rename(const std::string& from,
                        const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0)
      return io_error(errno, "rename", from + " -> " + to);
    return {};
  }

  expected<void> remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return io_error(errno, "unlink", path);
    return {};
  }

  expected<void> make_dir(const std::string& dir) override {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec)
      return io_error(ec.value(), "mkdir", dir);
    return {};
  }

  expected<void> sync_dir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
      return io_error(errno, "open", dir);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0)
      return io_error(err, "fsync", dir);
    return {};
  }

  expected<std::shared_ptr<void>> lock(const std::string& dir) override {
    auto path = dir + "/LOCK";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
      return io_error(errno, "open", path);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK)
        return error{errc::failed_precondition,
                     "the durable store in " + dir
                       + " is open elsewhere (another store holds " + path
                       + ")"};
      return io_error(err, "flock", path);
    }
    return std::shared_ptr<void>{nullptr, [fd](void*) { ::close(fd); }};
  }

  expected<std::uint64_t> free_bytes(const std::string& dir) override {
    struct statvfs st {};
    if (::statvfs(dir.c_str(), &st) != 0)
      return io_error(errno, "statvfs", dir);
    return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  }
};

} // namespace

std::shared_ptr<file_system> posix_file_system() {
  static auto fs = std::make_shared<posix_fs>();
  return fs;
}

} // namespace courier::durable

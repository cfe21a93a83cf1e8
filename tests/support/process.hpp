#pragma once

// Real child processes and real temp directories for integration tests.
// Every child is killed and reaped when its handle goes away; every
// directory is removed.

#include <chrono>
#include <cstdlib>
#include <csignal>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace courier::testing {

/// A unique directory under /tmp, world-writable and sticky like a shared
/// Courier directory (other users' nodes must be able to join it).
class temp_dir {
public:
  temp_dir() {
    char pattern[] = "/tmp/courier-test-XXXXXX";
    if (::mkdtemp(pattern) == nullptr)
      throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
    ::chmod(path_.c_str(), 01777);
  }

  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const noexcept {
    return path_;
  }

private:
  std::string path_;
};

/// A child process with a pipe to its stdin and one from its stdout.
class child_process {
public:
  explicit child_process(const std::vector<std::string>& argv) {
    // Everything the child needs is made before fork(): in a process with
    // other threads, the child may only make async-signal-safe calls until
    // it execs (an allocation can hang forever on a lock another thread
    // held at the fork; under AddressSanitizer it did, now and then).
    auto program = find_program(argv.at(0));
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int in[2];
    int out[2];
    if (::pipe2(in, O_CLOEXEC) != 0)
      throw std::runtime_error("pipe2 failed");
    if (::pipe2(out, O_CLOEXEC) != 0) {
      ::close(in[0]);
      ::close(in[1]);
      throw std::runtime_error("pipe2 failed");
    }
    pid_ = ::fork();
    if (pid_ < 0) {
      for (int fd : {in[0], in[1], out[0], out[1]})
        ::close(fd);
      throw std::runtime_error("fork failed");
    }
    if (pid_ == 0) {
      ::dup2(in[0], STDIN_FILENO);
      ::dup2(out[1], STDOUT_FILENO);
      ::execv(program.c_str(), args.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
  }

  ~child_process() {
    if (stdin_ >= 0)
      ::close(stdin_); // asks a test node to leave
    if (!exited_) {
      if (!wait_exit(std::chrono::seconds{5})) {
        ::kill(pid_, SIGKILL);
        wait_exit(std::chrono::seconds{5});
      }
    }
    ::close(stdout_);
  }

  /// `name` as execvp() would find it: itself if it has a '/', else the
  /// first executable of that name along $PATH.
  static std::string find_program(const std::string& name) {
    if (name.find('/') != std::string::npos)
      return name;
    const char* path = std::getenv("PATH");
    std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
    for (std::size_t at = 0; at <= dirs.size();) {
      auto end = dirs.find(':', at);
      if (end == std::string::npos)
        end = dirs.size();
      auto dir = dirs.substr(at, end - at);
      auto candidate = (dir.empty() ? std::string{"."} : dir) + "/" + name;
      struct stat info {};
      if (::stat(candidate.c_str(), &info) == 0 && S_ISREG(info.st_mode)
          && ::access(candidate.c_str(), X_OK) == 0)
        return candidate;
      at = end + 1;
    }
    return name; // execv fails; the child exits 127
  }

  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const noexcept {
    return pid_;
  }

  /// Reads stdout until a line equal to `expected`; false on timeout or EOF.
  bool wait_for_line(const std::string& expected,
                     std::chrono::milliseconds timeout
                     = std::chrono::seconds{10}) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        auto line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        if (line == expected)
          return true;
        continue;
      }
      if (read_some(until) != read_result::data)
        return false;
    }
  }

  /// Reads stdout until a line that contains `part`; false on timeout or
  /// EOF.
  bool wait_for_line_containing(const std::string& part,
                                std::chrono::milliseconds timeout
                                = std::chrono::seconds{10}) {
    return line_containing(part, timeout).has_value();
  }

  /// Reads stdout until a line that contains `part`, and returns it;
  /// nothing on timeout or EOF.
  std::optional<std::string>
  line_containing(const std::string& part,
                  std::chrono::milliseconds timeout
                  = std::chrono::seconds{10}) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        auto line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        if (line.find(part) != std::string::npos)
          return line;
        continue;
      }
      if (read_some(until) != read_result::data)
        return std::nullopt;
    }
  }

  /// Reads stdout until the child closes it; false on timeout.
  bool read_all(std::string& out, std::chrono::milliseconds timeout
                                  = std::chrono::seconds{20}) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto got = read_some(until);
      if (got != read_result::data) {
        out = std::move(buffer_);
        buffer_.clear();
        return got == read_result::eof;
      }
    }
  }

  /// Closes the child's stdin (a test node then leaves).
  void close_stdin() {
    if (stdin_ >= 0)
      ::close(std::exchange(stdin_, -1));
  }

  void kill(int signal) {
    ::kill(pid_, signal);
  }

  /// Waits for the child to exit; returns its wait status, or nothing on
  /// timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      auto r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        return status;
      }
      if (r < 0 || std::chrono::steady_clock::now() > until)
        return std::nullopt;
      ::usleep(1000); // a poll interval: waitpid has no timeout
    }
  }

private:
  enum class read_result { data, eof, timeout };

  /// Appends what stdout has to buffer_, waiting until `until` at most.
  read_result read_some(std::chrono::steady_clock::time_point until) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return read_result::timeout;
      pollfd pfd{stdout_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
        continue;
      char buf[4096];
      auto n = ::read(stdout_, buf, sizeof buf);
      if (n <= 0)
        return read_result::eof;
      buffer_.append(buf, static_cast<std::size_t>(n));
      return read_result::data;
    }
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  bool exited_ = false;
  std::string buffer_;
};

} // namespace courier::testing

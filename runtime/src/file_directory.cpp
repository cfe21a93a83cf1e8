#include "file_directory.hpp"

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace courier::detail {

namespace {

std::string read_first_line(const char* path) {
  std::ifstream in{path};
  std::string line;
  std::getline(in, line);
  return line;
}

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

/// mkdir -p for one level, with `mode` forced (umask would cut the sticky
/// and world bits of a shared directory).
expected<void> ensure_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) == 0) {
    ::chmod(path.c_str(), mode);
    return {};
  }
  if (errno != EEXIST)
    return error{errc::unavailable, errno_text("cannot create " + path)};
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return error{errc::unavailable, path + " exists and is not a directory"};
  return {};
}

bool read_file(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  out.clear();
  char buf[4096];
  for (;;) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
    if (out.size() > (16u << 20)) // a record is small; refuse a huge file
      break;
  }
  ::close(fd);
  return true;
}

/// Writes `data` to `path` atomically: a temporary file, then rename.
expected<void> write_atomically(const std::string& path, const std::string& data,
                                mode_t mode) {
  auto tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return error{errc::unavailable, errno_text("cannot write " + tmp)};
  ::fchmod(fd, mode);
  std::size_t done = 0;
  while (done < data.size()) {
    auto n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      auto err = errno_text("cannot write " + tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return error{errc::resource_exhausted, err};
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto err = errno_text("cannot rename " + tmp);
    ::unlink(tmp.c_str());
    return error{errc::unavailable, err};
  }
  return {};
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(path.c_str())) {
    while (auto* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (!name.empty() && name.front() != '.') // skips ., .. and temp files
        out.push_back(std::move(name));
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size()
         && s.substr(s.size() - suffix.size()) == suffix;
}

} // namespace

process_identity process_identity::current() {
  process_identity id;
  id.pid = ::getpid();
  id.uid = ::getuid();
  id.gid = ::getgid();
  id.session = read_first_line("/proc/self/sessionid");
  if (id.session.empty() || id.session == "4294967295")
    id.session = "sid-" + std::to_string(::getsid(0));
  id.boot_id = read_first_line("/proc/sys/kernel/random/boot_id");
  id.host_id = read_first_line("/etc/machine-id");
  struct stat netns {};
  if (::stat("/proc/self/ns/net", &netns) == 0)
    id.netns = std::to_string(netns.st_ino);
  return id;
}

std::string default_directory() {
  if (const char* env = std::getenv("COURIER_DIR"); env && *env)
    return env;
  return ::geteuid() == 0 ? "/run/courier" : "/tmp/courier";
}

namespace {

/// The lock at `fd` is held. A live node holds it exclusively; a peer that
/// asks whether the last incarnation still lives (alive(), reap()) holds it
/// shared for a moment. Waits out such probes (up to two seconds) and takes
/// the lock exclusively; false if a live node holds it.
bool wait_for_probers(int fd) {
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0)
    return false; // held exclusively: a live node
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds{2};
  while (std::chrono::steady_clock::now() < until) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0)
      return true;
    // A poll, not a wait: flock has no timeout, and a probe takes
    // microseconds.
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  }
  return false;
}

} // namespace

expected<std::unique_ptr<file_directory>>
file_directory::join(std::string path, std::string node) {
  if (path.empty())
    return error{errc::invalid_argument, "an empty directory path"};
  // Shared by every user of the machine: world-writable and sticky, so that
  // nobody removes another user's files (reaping is then best effort).
  if (auto made = ensure_dir(path, 01777); !made)
    return made.error();
  for (auto sub : {"/nodes", "/names", "/sockets"})
    if (auto made = ensure_dir(path + sub, 01777); !made)
      return made.error();
  auto lock_path = path + "/nodes/" + node + ".lock";
  // A dead holder's lock file may be reaped concurrently: lock, then check
  // that the file we locked is still the one at the path.
  for (int attempt = 0; attempt < 8; ++attempt) {
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      return error{errc::unavailable, errno_text("cannot open " + lock_path)};
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK) {
        auto why = errno_text("cannot lock " + lock_path);
        ::close(fd);
        return error{errc::unavailable, why};
      }
      if (!wait_for_probers(fd)) {
        ::close(fd);
        return error{errc::already_exists,
                     "a live node named '" + node + "' runs in " + path};
      }
    }
    struct stat held {}, current {};
    if (::fstat(fd, &held) == 0 && ::stat(lock_path.c_str(), &current) == 0
        && held.st_ino == current.st_ino && held.st_dev == current.st_dev) {
      ::fchmod(fd, 0644);
      auto dir = std::unique_ptr<file_directory>{
        new file_directory(std::move(path), std::move(node), fd)};
      // Endpoints and names of an earlier incarnation under the same name
      // (killed before it could release them) are stale: the lock says
      // that no other incarnation lives.
      std::string data;
      v1::NodeRecord stale;
      if (read_file(dir->path_ + "/nodes/" + dir->node_ + ".pb", data)
          && stale.ParseFromString(data))
        dir->remove_endpoints(stale);
      for (auto& [actor, owner] : dir->names())
        if (owner == dir->node_)
          dir->release_name(actor);
      return dir;
    }
    ::close(fd); // reaped under our feet: try again with a fresh file
  }
  return error{errc::unavailable, "cannot claim " + lock_path};
}

file_directory::~file_directory() {
  for (auto& [actor, owner] : names())
    if (owner == node_)
      release_name(actor);
  {
    std::lock_guard guard{mu_};
    remove_endpoints(published_);
  }
  ::unlink((path_ + "/nodes/" + node_ + ".pb").c_str());
  ::unlink((path_ + "/nodes/" + node_ + ".lock").c_str());
  ::close(lock_fd_); // releases the flock
}

std::string file_directory::local_dir() const {
  return path_ + "/sockets";
}

std::string file_directory::access_warning() const {
  // Other users reach a node through files under the directory: every
  // folder above them must let them pass (the x bit for others).
  std::string at = path_;
  while (!at.empty()) {
    struct stat st {};
    if (::stat(at.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o",
                    static_cast<unsigned>(st.st_mode & 07777));
      return "the directory " + path_ + " lies under " + at + " (mode "
             + mode + "): nodes of other users cannot reach this node";
    }
    auto slash = at.find_last_of('/');
    if (slash == std::string::npos || slash == 0)
      break;
    at.resize(slash);
  }
  return {};
}

void file_directory::remove_endpoints(const v1::NodeRecord& record) const {
  auto inside = local_dir() + "/";
  for (const auto& endpoint : record.endpoints())
    if (endpoint.address().starts_with(inside)
        && endpoint.address().find("/..") == std::string::npos)
      ::unlink(endpoint.address().c_str());
}

expected<void> file_directory::publish(const v1::NodeRecord& record) {
  std::string data;
  if (!record.SerializeToString(&data))
    return error{errc::internal, "cannot serialize the node record"};
  std::lock_guard guard{mu_};
  published_ = record;
  return write_atomically(path_ + "/nodes/" + node_ + ".pb", data, 0644);
}

void file_directory::suspect(std::string_view node) {
  if (!alive(node))
    reap(node);
}

bool file_directory::alive(std::string_view node) const {
  auto lock_path = path_ + "/nodes/" + std::string{node} + ".lock";
  int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

void file_directory::reap(std::string_view node) {
  auto name = std::string{node};
  auto lock_path = path_ + "/nodes/" + name + ".lock";
  int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0 && ::flock(fd, LOCK_SH | LOCK_NB) != 0) {
    ::close(fd); // alive after all
    return;
  }
  // Holding LOCK_SH keeps a new node of that name from claiming the file
  // while its old files go.
  for (auto& actor : list_dir(path_ + "/names")) {
    std::string owner;
    auto file = path_ + "/names/" + actor;
    if (read_file(file, owner) && owner == name)
      ::unlink(file.c_str());
  }
  std::string data;
  v1::NodeRecord record;
  if (read_file(path_ + "/nodes/" + name + ".pb", data)
      && record.ParseFromString(data))
    remove_endpoints(record);
  ::unlink((path_ + "/nodes/" + name + ".pb").c_str());
  ::unlink(lock_path.c_str());
  if (fd >= 0)
    ::close(fd);
}

expected<void> file_directory::claim_name(std::string_view actor) {
  auto file = path_ + "/names/" + std::string{actor};
  // Write the owner into a private file, then link() it into place: the
  // claim is atomic and a reader never sees a half-written name file.
  auto tmp = path_ + "/names/.claim-" + node_ + "-" + std::string{actor};
  if (auto written = write_atomically(tmp, node_, 0644); !written)
    return written;
  struct unlink_tmp {
    const std::string& path;
    ~unlink_tmp() {
      ::unlink(path.c_str());
    }
  } cleanup{tmp};
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (::link(tmp.c_str(), file.c_str()) == 0)
      return {};
    if (errno != EEXIST)
      return error{errc::unavailable, errno_text("cannot claim " + file)};
    std::string owner;
    if (!read_file(file, owner))
      continue; // released meanwhile
    if (owner == node_ || alive(owner))
      return error{errc::already_exists, "the name '" + std::string{actor}
                                           + "' is held by node '" + owner
                                           + "'"};
    reap(owner);
    ::unlink(file.c_str()); // in case the reaper could not (sticky dir)
  }
  return error{errc::unavailable,
               "cannot claim the name '" + std::string{actor} + "'"};
}

void file_directory::release_name(std::string_view actor) {
  auto file = path_ + "/names/" + std::string{actor};
  std::string owner;
  if (read_file(file, owner) && owner == node_)
    ::unlink(file.c_str());
}

expected<std::string> file_directory::owner_of(std::string_view actor) {
  std::string owner;
  if (!read_file(path_ + "/names/" + std::string{actor}, owner)
      || owner.empty())
    return error{errc::not_found, "no actor named '" + std::string{actor}
                                    + "' on this machine"};
  if (owner != node_ && !alive(owner)) {
    reap(owner);
    return error{errc::not_found, "the holder of '" + std::string{actor}
                                    + "', node '" + owner + "', is dead"};
  }
  return owner;
}

expected<v1::NodeRecord> file_directory::read_node(std::string_view node) {
  auto name = std::string{node};
  if (name != node_ && !alive(name)) {
    reap(name);
    return error{errc::not_found, "no live node named '" + name + "'"};
  }
  std::string data;
  v1::NodeRecord record;
  if (!read_file(path_ + "/nodes/" + name + ".pb", data)
      || !record.ParseFromString(data))
    return error{errc::not_found, "node '" + name + "' has no readable record"};
  return record;
}

std::vector<v1::NodeRecord> file_directory::nodes() {
  std::vector<v1::NodeRecord> out;
  for (auto& file : list_dir(path_ + "/nodes")) {
    if (!ends_with(file, ".lock"))
      continue;
    auto name = file.substr(0, file.size() - 5);
    if (auto record = read_node(name))
      out.push_back(std::move(*record));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> file_directory::names() {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& actor : list_dir(path_ + "/names")) {
    std::string owner;
    if (!read_file(path_ + "/names/" + actor, owner) || owner.empty())
      continue;
    if (owner == node_ || alive(owner))
      out.emplace_back(actor, owner);
    else
      reap(owner);
  }
  return out;
}

} // namespace courier::detail

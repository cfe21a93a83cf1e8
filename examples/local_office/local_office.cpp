// The local office: one program, three processes, three tiers.
//
//   manager (this process)  sends a memo to each of
//     clerk      an actor in the same process       -> in-process tier
//     front.desk another process, same user         -> shared memory
//     archive    another process, user 'nobody'     -> named pipe
//
// The code that sends is the same for all three: ctx.request(name, memo).
// The runtime picks the tier; the office prints which one each route took.
//
// Run it without arguments (as root, the archive runs as 'nobody' through
// setpriv; otherwise as this user). The children are this same program,
// started with a role: local_office --role front|archive --dir DIR.

#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "courier/courier.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"
#include "office/office.pb.h"

using namespace std::chrono_literals;

namespace {

courier::behavior signer(courier::context& ctx) {
  return {[&ctx](const office::Memo&) {
    office::Receipt receipt;
    receipt.set_signed_by(ctx.name() + "@" + ctx.node_name());
    receipt.set_process(::getpid());
    receipt.set_user(::getuid());
    return receipt;
  }};
}

courier::node_config config_for(const std::string& name, const std::string& dir) {
  courier::node_config config;
  config.name = name;
  config.directory = dir;
  config.transports = {{"pipe", courier::pipe::factory()},
                       {"shm", courier::shm::factory()}};
  config.log = [name](courier::log_level level, std::string_view line) {
    if (level >= courier::log_level::warning)
      std::cerr << "  [" << name << "] " << line << "\n";
  };
  return config;
}

/// A child role: serve one actor until stdin closes.
int serve(const std::string& role, const std::string& dir) {
  auto config = config_for(role == "front" ? "front-office" : "archive-room",
                           dir);
  if (role == "archive")
    config.allowed_uids = {0}; // the manager runs as root
  auto self = courier::node::start(config);
  if (!self) {
    std::cerr << role << ": " << self.error().to_string() << "\n";
    return 1;
  }
  auto spawned = self->spawn(role == "front" ? "front.desk" : "archive", signer);
  if (!spawned) {
    std::cerr << role << ": " << spawned.error().to_string() << "\n";
    return 1;
  }
  std::cout << "ready" << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}

/// A child process running this program in a role.
struct child {
  pid_t pid = -1;
  int to_child = -1;
  int from_child = -1;

  ~child() {
    if (to_child >= 0)
      ::close(to_child); // the child leaves when its stdin closes
    if (pid > 0) {
      int status = 0;
      for (int i = 0; i < 500 && ::waitpid(pid, &status, WNOHANG) == 0; ++i)
        ::usleep(10000);
      if (::waitpid(pid, &status, WNOHANG) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
      }
    }
    if (from_child >= 0)
      ::close(from_child);
  }
};

std::unique_ptr<child> launch(std::vector<std::string> argv) {
  int in[2];
  int out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
    return nullptr;
  auto c = std::make_unique<child>();
  // Built before fork(): with other threads running, the child must not
  // allocate before it execs (a lock held at the fork would stay held).
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(a.data());
  args.push_back(nullptr);
  c->pid = ::fork();
  if (c->pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  c->to_child = in[1];
  c->from_child = out[0];
  // Wait (at most 10 s) for its "ready".
  std::string seen;
  for (int i = 0; i < 100 && seen.find("ready\n") == std::string::npos; ++i) {
    pollfd pfd{c->from_child, POLLIN, 0};
    if (::poll(&pfd, 1, 100) > 0) {
      char buf[64];
      auto n = ::read(c->from_child, buf, sizeof buf);
      if (n <= 0)
        break;
      seen.append(buf, static_cast<std::size_t>(n));
    }
  }
  if (seen.find("ready\n") == std::string::npos)
    return nullptr;
  return c;
}

std::string self_path() {
  char buf[4096];
  auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "local_office";
}

} // namespace

int main(int argc, char** argv) {
  std::string role;
  std::string dir;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--role") == 0)
      role = argv[i + 1];
    if (std::strcmp(argv[i], "--dir") == 0)
      dir = argv[i + 1];
  }
  if (!role.empty())
    return serve(role, dir);

  // The office's own directory, so the demo never meets other nodes.
  char pattern[] = "/tmp/courier-office-XXXXXX";
  if (::mkdtemp(pattern) == nullptr) {
    std::cerr << "cannot create a directory: " << std::strerror(errno) << "\n";
    return 1;
  }
  dir = pattern;
  ::chmod(dir.c_str(), 01777); // the archive's user must be able to join
  int status = 0;
  {
    const bool root = ::geteuid() == 0;
    std::cout << "The local office opens in " << dir << ".\n";
    auto front = launch({self_path(), "--role", "front", "--dir", dir});
    std::vector<std::string> archive_argv{self_path(), "--role", "archive",
                                          "--dir", dir};
    if (root)
      archive_argv.insert(archive_argv.begin(),
                          {"setpriv", "--reuid=65534", "--regid=65534",
                           "--clear-groups", "--"});
    auto archive = launch(archive_argv);
    if (!front || !archive) {
      std::cerr << "a child process did not start\n";
      return 1;
    }
    std::cout << "  front-office runs as pid " << front->pid
              << " (this user), archive-room as pid " << archive->pid
              << (root ? " (user nobody)" : " (this user: run as root to see "
                                            "another user)")
              << ".\n\n";
    auto manager = courier::node::start(config_for("manager-office", dir));
    if (!manager) {
      std::cerr << manager.error().to_string() << "\n";
      return 1;
    }
    if (!manager->spawn("clerk", signer)) {
      std::cerr << "cannot spawn the clerk\n";
      return 1;
    }
    // The same request to three names; the runtime picks each route.
    for (auto name : {"clerk", "front.desk", "archive"}) {
      office::Memo memo;
      memo.set_text("Lunch is at noon.");
      auto receipt = manager->send<office::Receipt>(name, memo, 2s);
      if (!receipt) {
        std::cout << "  memo to " << name << ": " << receipt.error().to_string()
                  << "\n";
        status = 1;
        continue;
      }
      std::cout << "  memo to " << name << ": signed by "
                << (*receipt)->signed_by() << " (pid " << (*receipt)->process()
                << ", uid " << (*receipt)->user() << ")\n";
    }
    std::cout << "\nRoutes from manager-office:\n"
              << "  clerk: in-process (same node: the memo object itself, "
                 "no copy)\n";
    for (auto& route : manager->routes())
      std::cout << "  " << route.peer << ": " << route.tier << " (" << route.note
                << "), " << route.messages_out << " out, " << route.messages_in
                << " in\n";
    std::cout << "\nNames on this machine's office directory:\n";
    for (auto& held : manager->machine_names())
      if (held.actor.rfind("courier.", 0) != 0)
        std::cout << "  " << held.actor << " @ " << held.node << "\n";
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  std::cout << "\nThe local office closes.\n";
  return status;
}

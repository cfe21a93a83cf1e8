#include "launch.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace courier::deploy::detail {

namespace {

/// What a child that could not exec reports on its status pipe.
struct launch_failure {
  int step;
  int error;
};

constexpr const char* step_names[] = {
  "set up its descriptors", "change to its working directory",
  "set its groups", "switch its group", "switch its user",
  "set its parent-death signal", "exec",
};

/// The child's side, between fork and exec: system calls only.
[[noreturn]] void become(const launch_plan& plan, char* const* argv,
                         char* const* envp, int stdin_fd, int output_fd,
                         int status_fd, pid_t supervisor) {
  auto fail = [status_fd](int step) {
    launch_failure failure{step, errno};
    (void)!::write(status_fd, &failure, sizeof failure);
    ::_exit(127);
  };
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction by_default {};
  by_default.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD})
    ::sigaction(sig, &by_default, nullptr);
  ::setpgid(0, 0); // a terminal's Ctrl-C reaches the supervisor, not nodes
  if (::dup2(stdin_fd, STDIN_FILENO) < 0 || ::dup2(output_fd, STDOUT_FILENO) < 0
      || ::dup2(output_fd, STDERR_FILENO) < 0)
    fail(0);
  // Every other descriptor closes at exec (the status pipe's too).
  ::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
  if (::chdir(plan.cwd.c_str()) != 0)
    fail(1);
  if (plan.switch_user) {
    // Raw system calls: they change this thread, the only one here.
    if (::syscall(SYS_setgroups, plan.groups.size(), plan.groups.data()) != 0)
      fail(2);
    if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0)
      fail(3);
    if (::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0)
      fail(4);
  }
  // After the user switch, which clears it.
  if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
    fail(5);
  if (::getppid() != supervisor) // it died before the line above
    ::_exit(127);
  ::execve(plan.program.c_str(), argv, envp);
  fail(6);
  ::_exit(127);
}

void close_all(std::initializer_list<int> fds) {
  for (int fd : fds)
    if (fd >= 0)
      ::close(fd);
}

} // namespace

expected<launch_plan> plan_launch(const system_spec& system,
                                  const node_spec& node,
                                  const std::string& config_file) {
  launch_plan plan;
  auto program = resolve_program(node.program);
  if (!program)
    return std::move(program).error();
  plan.program = *program;
  plan.argv.push_back(plan.program);
  if (!config_file.empty()) {
    plan.argv.push_back("--config");
    plan.argv.push_back(config_file);
  }
  plan.argv.insert(plan.argv.end(), node.args.begin(), node.args.end());
  plan.cwd = node.cwd;

  std::map<std::string, std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string text = *entry;
    auto eq = text.find('=');
    if (eq != std::string::npos)
      env[text.substr(0, eq)] = text.substr(eq + 1);
  }
  if (!system.directory.empty())
    env["COURIER_DIR"] = system.directory;

  plan.uid = ::geteuid();
  plan.gid = ::getegid();
  if (auto* me = ::getpwuid(plan.uid))
    plan.user = me->pw_name;
  else
    plan.user = std::to_string(plan.uid);
  if (!node.user.empty()) {
    auto* user = ::getpwnam(node.user.c_str());
    if (user == nullptr)
      return error{errc::not_found, "no user named '" + node.user + "'"};
    plan.user = node.user;
    if (user->pw_uid != plan.uid || user->pw_gid != plan.gid) {
      plan.switch_user = true;
      plan.uid = user->pw_uid;
      plan.gid = user->pw_gid;
      int count = 64;
      plan.groups.resize(static_cast<std::size_t>(count));
      if (::getgrouplist(user->pw_name, user->pw_gid, plan.groups.data(),
                         &count)
          < 0) {
        plan.groups.resize(static_cast<std::size_t>(count));
        ::getgrouplist(user->pw_name, user->pw_gid, plan.groups.data(), &count);
      }
      plan.groups.resize(static_cast<std::size_t>(count));
      env["HOME"] = user->pw_dir;
      env["USER"] = user->pw_name;
      env["LOGNAME"] = user->pw_name;
    }
  }
  for (const auto& [key, value] : node.env)
    env[key] = value;
  for (const auto& [key, value] : env)
    plan.envp.push_back(key + "=" + value);
  return plan;
}

expected<launched> launch(const launch_plan& plan) {
  std::vector<char*> argv;
  for (const auto& arg : plan.argv)
    argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const auto& entry : plan.envp)
    envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);

  int in[2] = {-1, -1};
  int out[2] = {-1, -1};
  int status[2] = {-1, -1};
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0
      || ::pipe2(status, O_CLOEXEC) != 0) {
    auto why = std::string{std::strerror(errno)};
    close_all({in[0], in[1], out[0], out[1], status[0], status[1]});
    return error{errc::internal, "cannot make pipes: " + why};
  }
  const pid_t supervisor = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    auto why = std::string{std::strerror(errno)};
    close_all({in[0], in[1], out[0], out[1], status[0], status[1]});
    return error{errc::internal, "cannot fork: " + why};
  }
  if (pid == 0)
    become(plan, argv.data(), envp.data(), in[0], out[1], status[1],
           supervisor);
  close_all({in[0], out[1], status[1]});
  // The status pipe closes at the exec; a failure arrives before that.
  launch_failure failure{};
  ssize_t got;
  do
    got = ::read(status[0], &failure, sizeof failure);
  while (got < 0 && errno == EINTR);
  ::close(status[0]);
  if (got == static_cast<ssize_t>(sizeof failure)) {
    close_all({in[1], out[0]});
    int ignored = 0;
    ::waitpid(pid, &ignored, 0);
    return error{errc::internal,
                 "cannot " + std::string{step_names[failure.step]} + " ("
                   + plan.program + "): " + std::strerror(failure.error)};
  }
  ::fcntl(out[0], F_SETFL, ::fcntl(out[0], F_GETFL) | O_NONBLOCK);
  return launched{pid, in[1], out[0]};
}

} // namespace courier::deploy::detail

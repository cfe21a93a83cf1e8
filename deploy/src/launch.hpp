#pragma once

// Starting one node's process: everything it needs is prepared first (a
// launch_plan), then launch() forks and execs. Between fork and exec the
// child makes system calls only: the supervisor has other threads (its
// node's), and an allocation there could hang on a lock one of them held.

#include <string>
#include <vector>

#include <sys/types.h>

#include "courier/deploy/system_file.hpp"

namespace courier::deploy::detail {

/// What the child does between fork and exec, all of it decided before.
struct launch_plan {
  std::string program; ///< absolute
  std::vector<std::string> argv;
  std::vector<std::string> envp;
  std::string cwd;
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  std::string user; ///< the user's name, for `ps`
};

/// The plan for `node`; `config_file` is passed as `--config FILE` before
/// its arguments when not empty. Errors: not_found (program, user).
expected<launch_plan> plan_launch(const system_spec& system,
                                  const node_spec& node,
                                  const std::string& config_file);

/// A started process: its pid, the write end of its stdin and the read end
/// (non-blocking) of its stdout and stderr.
struct launched {
  pid_t pid = -1;
  int stdin_fd = -1;
  int output_fd = -1;
};

/// Forks and execs `plan`: the child gets its own process group, its user,
/// an empty signal mask, SIGTERM when the supervisor dies, and no other
/// descriptor. Returns once the exec has happened. Errors: internal naming
/// the step that failed (fork, chdir, the user switch, exec) and why.
expected<launched> launch(const launch_plan& plan);

} // namespace courier::deploy::detail

#pragma once

// The files under a system's run dir, and what they hold:
//
//   <run_dir>/up.lock        flock(LOCK_EX) by the live supervisor; its pid
//   <run_dir>/state.json     the supervisor's view of its nodes (status)
//   <run_dir>/config/<node>.toml  a node's inline settings, as a file
//
// docs/deploy.md describes them for operators.

#include <filesystem>
#include <string>

#include "courier/deploy/supervisor.hpp"

namespace courier::deploy::detail {

std::filesystem::path lock_path(const system_spec& system);
std::filesystem::path state_path(const system_spec& system);
std::filesystem::path config_dir(const system_spec& system);

/// Creates the run dir and takes the system's lock: an open descriptor
/// (close-on-exec) whose lock lives as long as any copy of it; or
/// already_exists naming the supervisor that holds it.
expected<int> take_lock(const system_spec& system);

/// Writes this process's pid into the lock file held through `fd`.
void record_supervisor(int fd);

/// The pid written in the lock file, or 0.
int supervisor_pid(const system_spec& system);

/// Writes `status` to the state file, atomically (a temporary file, then
/// rename).
void write_state(const system_spec& system, const system_status& status);

/// Reads the state file; not_found when there is none.
expected<system_status> read_state(const system_spec& system);

/// Removes the state file, the generated configurations and the lock
/// file, and the run dir itself if nothing else is left in it.
void remove_state(const system_spec& system);

/// Unix time in milliseconds.
std::int64_t unix_ms();

} // namespace courier::deploy::detail

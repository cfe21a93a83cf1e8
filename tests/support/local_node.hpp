#pragma once

// A node in the test process that joins a test directory and reaches other
// processes over the named pipe.

#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"
#include "process.hpp"
#include "test_support.hpp"

namespace courier::testing {

struct local_node {
  local_node(const temp_dir& dir, std::string name,
             std::vector<unsigned> allowed = {}, bool shared_memory = true)
    : local_node(dir, std::move(name), [&](node_config& config) {
        config.allowed_uids = allowed;
        if (!shared_memory)
          config.transports.pop_back();
      }) {
  }

  /// `adjust` edits the configuration before the node starts.
  local_node(const temp_dir& dir, std::string name,
             const std::function<void(node_config&)>& adjust) {
    node_config config;
    config.name = std::move(name);
    config.directory = dir.path();
    config.transports = {{"pipe", pipe::factory()}, {"shm", shm::factory()}};
    adjust(config);
    capture_log(config, lines);
    auto started = node::start(std::move(config));
    REQUIRE(started);
    instance.emplace(std::move(*started));
  }

  node* operator->() {
    return &*instance;
  }

  std::shared_ptr<probe<std::string>> lines
    = std::make_shared<probe<std::string>>();
  std::optional<node> instance;
};

/// Starts courier_test_node with `actors` and waits until it serves.
inline std::unique_ptr<child_process>
start_test_node(const temp_dir& dir, const std::string& name,
                std::vector<std::string> actors,
                std::vector<std::string> prefix = {}) {
  std::vector<std::string> args = prefix;
  for (auto a : {std::string{COURIER_TEST_NODE}, std::string{"--dir"},
                 dir.path(), std::string{"--name"}, name})
    args.push_back(a);
  args.insert(args.end(), actors.begin(), actors.end());
  auto child = std::make_unique<child_process>(args);
  // Generous: a sanitized build on a loaded two-CPU machine starts slowly.
  if (!child->wait_for_line("ready", std::chrono::seconds{30})) {
    // Where it hangs, for whoever reads the failure.
    auto dump = "gdb -p " + std::to_string(child->pid())
                + " -batch -ex 'thread apply all bt' 1>&2 2>/dev/null";
    if (std::system(dump.c_str()) != 0)
      std::cerr << "(no stacks: gdb failed)\n";
    FAIL("test node '" << name << "' did not say ready within 30 s");
  }
  return child;
}

} // namespace courier::testing

// echo_node: a node that stays up, to point the `courier` CLI at.
//
//   echo_node [--config FILE] [NODE]
//
// NODE defaults to the configuration file's name, else echo-node. FILE is a
// node configuration (docs/configuration.md); without one, or when it
// registers no tiers, the node uses the local tiers (shm and the pipe).
//
// It joins the machine's directory ($COURIER_DIR, else /tmp/courier, or
// /run/courier for root), serves one actor, `echo`, which answers every
// echo.Text with the same text, and runs until SIGINT or SIGTERM. Then it
// stops cleanly: its name, record and sockets leave the directory, and it
// exits with status 0.

#include <csignal>
#include <cstring>
#include <iostream>
#include <string>

#include <pthread.h>

#include "courier/config/config_file.hpp"
#include "courier/courier.hpp"
#include "courier/transports.hpp"
#include "echo/echo.pb.h"

namespace {

/// Answers each Text with a copy of it.
courier::behavior echoer(courier::context&) {
  return {[](const echo::Text& text) { return text; }};
}

/// The node's configuration: the file's, if any, then the command line's
/// name and the defaults for what the file leaves out.
courier::expected<courier::node_config> config_for(const std::string& file,
                                                   const std::string& name) {
  courier::node_config config;
  if (!file.empty()) {
    auto loaded = courier::load_node_config(file);
    if (!loaded)
      return loaded;
    config = std::move(*loaded);
  }
  if (!name.empty())
    config.name = name;
  if (config.name.empty())
    config.name = "echo-node";
  if (config.transports.empty())
    config.transports = courier::local_transports(); // shm and the pipe
  if (!config.log) // the file's log_level sets one
    config.log = [](courier::log_level level, std::string_view line) {
      if (level >= courier::log_level::warning)
        std::cerr << "echo_node: " << line << "\n";
    };
  return config;
}

} // namespace

int main(int argc, char** argv) {
  std::string file;
  std::string name;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc && file.empty())
      file = argv[++i];
    else if (!arg.empty() && arg[0] != '-' && name.empty())
      name = arg;
    else {
      std::cerr << "usage: echo_node [--config FILE] [NODE]\n";
      return 2;
    }
  }
  auto config = config_for(file, name);
  if (!config) {
    std::cerr << "echo_node: " << config.error().to_string() << "\n";
    return 1;
  }
  name = config->name;
  // Blocked before the node starts its threads, which inherit the mask: the
  // signals then wait for sigwait() below instead of killing the process.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto self = courier::node::start(std::move(*config));
  if (!self) {
    std::cerr << "echo_node: " << self.error().to_string() << "\n";
    return 1;
  }
  if (auto spawned = self->spawn("echo", echoer); !spawned) {
    std::cerr << "echo_node: " << spawned.error().to_string() << "\n";
    return 1;
  }
  std::cout << "echo_node: node '" << name
            << "' serves 'echo'; Ctrl-C or SIGTERM stops it" << std::endl;

  int signal = 0;
  sigwait(&stop_signals, &signal);
  std::cout << "echo_node: " << strsignal(signal) << ", stopping" << std::endl;
  return 0; // the node stops as `self` goes: actors, names, sockets
}

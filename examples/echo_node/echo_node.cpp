// echo_node: a node that stays up, to point the `courier` CLI at.
//
//   echo_node [NODE]      (NODE defaults to echo-node)
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

#include "courier/courier.hpp"
#include "courier/transports.hpp"
#include "echo/echo.pb.h"

namespace {

/// Answers each Text with a copy of it.
courier::behavior echoer(courier::context&) {
  return {[](const echo::Text& text) { return text; }};
}

courier::node_config config_for(std::string name) {
  courier::node_config config;
  config.name = std::move(name);
  config.transports = courier::local_transports(); // shm and the pipe
  config.log = [](courier::log_level level, std::string_view line) {
    if (level >= courier::log_level::warning)
      std::cerr << "echo_node: " << line << "\n";
  };
  return config;
}

} // namespace

int main(int argc, char** argv) {
  if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
    std::cerr << "usage: echo_node [NODE]\n";
    return 2;
  }
  std::string name = argc == 2 ? argv[1] : "echo-node";
  // Blocked before the node starts its threads, which inherit the mask: the
  // signals then wait for sigwait() below instead of killing the process.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto self = courier::node::start(config_for(name));
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

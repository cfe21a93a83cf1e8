// Polyglot: a C++ actor declares at spawn that it serves the gRPC service
// shop.Orders; `courier gateway`, a program that was never compiled with
// shop/orders.proto, serves it from what the actor's node publishes; a
// Python client (stubs from stock protoc, Debian's python3-grpcio) lists it
// by reflection and calls it, both as the service and through the gateway's
// own Send; then `courier send` calls the same actor from the shell.
//
//   polyglot CLIENT_PY PYTHON_STUBS COURIER_CLI

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "courier/courier.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "shop/orders.pb.h"

namespace {

/// Starts a program; its pid (-1 if it could not fork). With `out`, its
/// stdout is a pipe whose reading end `*out` receives.
pid_t start(std::vector<std::string> args, int* out = nullptr) {
  int pipe_fds[2] = {-1, -1};
  if (out != nullptr && ::pipe2(pipe_fds, O_CLOEXEC) != 0)
    return -1;
  // The arguments are made before fork: the child only execs.
  std::vector<char*> argv;
  for (auto& arg : args)
    argv.push_back(arg.data());
  argv.push_back(nullptr);
  auto pid = ::fork();
  if (pid == 0) {
    if (out != nullptr)
      ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::execvp(argv[0], argv.data());
    std::perror(argv[0]);
    ::_exit(127);
  }
  if (out != nullptr) {
    ::close(pipe_fds[1]);
    *out = pipe_fds[0];
  }
  return pid;
}

/// Waits for a program to end; its exit status (-1 if it did not end
/// normally).
int finish(pid_t pid) {
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
    return -1;
  return WEXITSTATUS(status);
}

/// Runs a program to its end; its exit status.
int run(std::vector<std::string> args) {
  return finish(start(std::move(args)));
}

/// The first line `fd` gives within 10 s, or nothing.
std::optional<std::string> first_line(int fd) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds{10};
  std::string line;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      until - std::chrono::steady_clock::now());
    pollfd ready{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&ready, 1, static_cast<int>(left.count())) <= 0)
      return std::nullopt;
    char c = 0;
    if (::read(fd, &c, 1) != 1)
      return std::nullopt;
    if (c == '\n')
      return line;
    line += c;
  }
}

} // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: polyglot CLIENT_PY PYTHON_STUBS COURIER_CLI\n";
    return 2;
  }
  // A directory of its own, so that `courier send` finds this node.
  char folder[] = "/tmp/courier-polyglot-XXXXXX";
  if (::mkdtemp(folder) == nullptr)
    return 1;
  int status = 1;
  {
    courier::node_config config;
    config.name = "shop";
    config.directory = folder;
    config.transports = {{"pipe", courier::pipe::factory()}};
    auto node = courier::node::start(std::move(config));
    if (!node) {
      std::cerr << node.error().to_string() << "\n";
      return 1;
    }
    int next_id = 0;
    // The actor says which service it serves: its node publishes it, with
    // shop/orders.proto, for any gateway to serve.
    courier::spawn_options serves;
    serves.services = {"shop.Orders"};
    auto orders = node->spawn(
      "orders",
      [&next_id](courier::context&) {
        return courier::behavior{[&next_id](const shop::PlaceOrder& order) {
          shop::Placed placed;
          placed.set_order_id("order-" + std::to_string(++next_id));
          placed.set_item(order.item());
          placed.set_quantity(order.quantity());
          return placed;
        }};
      },
      serves);
    if (!orders) {
      std::cerr << "cannot start the shop: " << orders.error().to_string()
                << "\n";
      return 1;
    }
    // A gateway node of its own, from the CLI: it knows shop.Orders only
    // from what node 'shop' publishes.
    int gateway_out = -1;
    auto gateway = start({argv[3], "--dir", folder, "--name", "gw", "gateway",
                          "--listen", "127.0.0.1:0"},
                         &gateway_out);
    auto said = gateway > 0 ? first_line(gateway_out) : std::nullopt;
    if (said && said->find(' ') != std::string::npos) {
      auto address = said->substr(said->rfind(' ') + 1);
      std::cout << "node 'shop': actor 'orders' serves shop.Orders; courier "
                   "gateway serves it on "
                << address << std::endl;
      // Debian's python3, where python3-grpcio is.
      status = run({"/usr/bin/python3", argv[1], argv[2], address});
      if (status == 0)
        status = run({argv[3], "--dir", folder, "send", "orders",
                      "shop.PlaceOrder", R"({"item": "lamp", "quantity": 1})"});
    } else {
      std::cerr << "courier gateway did not start\n";
    }
    if (gateway > 0) {
      ::kill(gateway, SIGTERM);
      (void)finish(gateway);
    }
    if (gateway_out >= 0)
      ::close(gateway_out);
    std::cout << (status == 0 ? "polyglot: done" : "polyglot: FAILED")
              << std::endl;
  }
  std::error_code ignored;
  std::filesystem::remove_all(folder, ignored);
  return status;
}

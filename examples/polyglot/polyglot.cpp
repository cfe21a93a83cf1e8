// Polyglot: a C++ actor serves the gRPC service shop.Orders; a Python
// client (stubs from stock protoc, Debian's python3-grpcio) calls it
// through the gateway, both as the service and through the gateway's own
// Send; then `courier send` calls the same actor from the shell.
//
//   polyglot CLIENT_PY PYTHON_STUBS COURIER_CLI

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "courier/courier.hpp"
#include "courier/gateway/gateway.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "shop/orders.pb.h"

namespace {

/// Runs a program to its end; its exit status (-1 if it did not run).
int run(std::vector<std::string> args) {
  auto pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& arg : args)
      argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::perror(argv[0]);
    ::_exit(127);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
    return -1;
  return WEXITSTATUS(status);
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
    auto orders = node->spawn("orders", [&next_id](courier::context&) {
      return courier::behavior{[&next_id](const shop::PlaceOrder& order) {
        shop::Placed placed;
        placed.set_order_id("order-" + std::to_string(++next_id));
        placed.set_item(order.item());
        placed.set_quantity(order.quantity());
        return placed;
      }};
    });
    courier::gateway::options settings;
    settings.services = {{"shop.Orders", "orders"}};
    auto gateway = courier::gateway::server::start(*node, settings);
    if (!orders || !gateway) {
      std::cerr << "cannot start the shop\n";
      return 1;
    }
    auto port = std::to_string((*gateway)->port());
    std::cout << "node 'shop': actor 'orders' serves shop.Orders on gRPC port "
              << port << std::endl;
    // Debian's python3, where python3-grpcio is.
    status = run({"/usr/bin/python3", argv[1], argv[2], "127.0.0.1:" + port});
    if (status == 0)
      status = run({argv[3], "--dir", folder, "send", "orders",
                    "shop.PlaceOrder", R"({"item": "lamp", "quantity": 1})"});
    std::cout << (status == 0 ? "polyglot: done" : "polyglot: FAILED")
              << std::endl;
  }
  std::error_code ignored;
  std::filesystem::remove_all(folder, ignored);
  return status;
}

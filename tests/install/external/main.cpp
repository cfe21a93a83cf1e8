// An external program on an installed Courier: a node from a configuration
// text (courier::config) with the shared-memory and pipe tiers, in the node
// directory given as the only argument; an actor that answers a Ping; one
// send to it, whose reply is printed.
#include <iostream>
#include <string>

#include "courier/config/config_file.hpp"
#include "courier/courier.hpp"
#include "ping/ping.pb.h"

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: courier_external DIRECTORY\n";
    return 2;
  }
  // The directory as a TOML literal string: no escapes inside.
  std::string toml = "name = \"external\"\n";
  toml += "directory = '" + std::string{argv[1]} + "'\n";
  toml += "[tiers.shm]\n[tiers.pipe]\n";
  auto config = courier::load_node_config_from_string(toml, "external.toml");
  if (!config) {
    std::cerr << config.error().to_string() << "\n";
    return 1;
  }
  auto node = courier::node::start(std::move(*config));
  if (!node) {
    std::cerr << node.error().to_string() << "\n";
    return 1;
  }
  auto spawned = node->spawn("pinger", [](courier::context&) {
    return courier::behavior{[](const ping::Ping& ping) {
      ping::Pong pong;
      pong.set_text("pong: " + ping.text());
      return pong;
    }};
  });
  if (!spawned) {
    std::cerr << spawned.error().to_string() << "\n";
    return 1;
  }
  ping::Ping ping;
  ping.set_text("hello from outside");
  auto reply = node->send<ping::Pong>("pinger", ping, 2s);
  if (!reply) {
    std::cerr << reply.error().to_string() << "\n";
    return 1;
  }
  std::cout << (*reply)->text() << "\n";
}

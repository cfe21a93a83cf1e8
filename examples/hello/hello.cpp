#include <iostream>

#include "courier/courier.hpp"
#include "greet/greet.pb.h"

using namespace std::chrono_literals;

int main() {
  auto node = courier::node::start();
  if (!node)
    return 1;

  // An actor is a name plus one typed handler per message type.
  auto spawned = node->spawn("greeter", [](courier::context&) {
    return courier::behavior{[](const greet::Hello& hello) {
      greet::Greeting reply;
      reply.set_text("Hello, " + hello.name() + "!");
      return reply;
    }};
  });
  if (!spawned)
    return 1;

  greet::Hello hello;
  hello.set_name("world");
  auto reply = node->send<greet::Greeting>("greeter", hello, 500ms);
  if (!reply) {
    std::cerr << reply.error().to_string() << "\n";
    return 1;
  }
  std::cout << (*reply)->text() << "\n";
}

// courier: look at and talk to the nodes of this machine.
//
//   courier [--dir DIR] [--json] nodes
//   courier [--dir DIR] [--json] names [PATTERN]
//   courier [--dir DIR] [--json] find NAME
//   courier [--dir DIR] [--json] routes
//   courier [--dir DIR] post NAME TYPE JSON
//   courier [--dir DIR] [--json] send NAME TYPE JSON [--timeout MS]
//
// Exit status: 0 success, 1 the operation failed (the reason is printed on
// stderr as "courier: <code>: <text>"), 2 bad usage.

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <google/protobuf/util/json_util.h>

#include "courier/courier.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "courier/v1/control.pb.h"

using namespace courier;

namespace {

constexpr const char* usage_text =
  "usage: courier [--dir DIR] [--json] COMMAND\n"
  "commands:\n"
  "  nodes                          live nodes of this machine\n"
  "  names [PATTERN]                names held on this machine (glob)\n"
  "  find NAME                      which node holds NAME\n"
  "  routes                         each node's routes and their tiers\n"
  "  post NAME TYPE JSON            fire and forget\n"
  "  send NAME TYPE JSON [--timeout MS]\n"
  "                                 call and print the reply as JSON\n";

int usage(const std::string& why) {
  std::cerr << "courier: " << why << "\n" << usage_text;
  return 2;
}

int fail(const error& err) {
  std::cerr << "courier: " << err.to_string() << "\n";
  return 1;
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

struct options {
  std::string dir;
  bool json = false;
  long timeout_ms = 5000;
  std::vector<std::string> args;
};

/// Builds TYPE from JSON with the descriptors the owner of NAME published.
expected<message> encode(node& self, const std::string& name,
                         const std::string& type, const std::string& json) {
  auto owner = self.machine_names(name);
  if (owner.empty() || owner.front().actor != name)
    return error{errc::not_found, "no actor named '" + name + "' on this machine"};
  if (auto imported = self.import_types(owner.front().node); !imported)
    return imported.error();
  auto msg = self.new_message(type);
  if (!msg)
    return error{errc::not_found,
                 "'" + owner.front().node + "' publishes no message type '"
                   + type + "'"};
  auto parsed = google::protobuf::util::JsonStringToMessage(json, msg->get());
  if (!parsed.ok())
    return error{errc::invalid_argument,
                 "not a valid " + type + " in JSON: "
                   + std::string{parsed.message()}};
  return message{std::move(*msg)};
}

std::string to_json(const google::protobuf::Message& msg) {
  std::string out;
  google::protobuf::util::JsonPrintOptions print;
  print.always_print_primitive_fields = true;
  if (!google::protobuf::util::MessageToJsonString(msg, &out, print).ok())
    return "{}";
  return out;
}

int run(node& self, const options& opt) {
  const auto& cmd = opt.args[0];
  const auto argc = opt.args.size();
  if (cmd == "nodes") {
    auto nodes = self.nodes();
    if (opt.json) {
      std::cout << "[";
      for (std::size_t i = 0; i < nodes.size(); ++i) {
        auto& n = nodes[i];
        std::cout << (i ? ", " : "") << "{\"name\": " << json_string(n.name)
                  << ", \"pid\": " << n.pid << ", \"uid\": " << n.uid
                  << ", \"session\": " << json_string(n.session)
                  << ", \"self\": " << (n.name == self.name() ? "true" : "false")
                  << "}";
      }
      std::cout << "]\n";
    } else {
      for (auto& n : nodes)
        if (n.name != self.name())
          std::cout << n.name << "  pid " << n.pid << "  uid " << n.uid
                    << "  session " << n.session << "\n";
    }
    return 0;
  }
  if (cmd == "names" || cmd == "find") {
    if (cmd == "find" && argc != 2)
      return usage("find takes one NAME");
    auto pattern = argc > 1 ? opt.args[1] : std::string{"*"};
    auto names = self.machine_names(pattern);
    std::erase_if(names, [&](const name_info& n) { return n.node == self.name(); });
    if (cmd == "find" && names.empty())
      return fail(error{errc::not_found,
                        "no actor named '" + pattern + "' on this machine"});
    if (opt.json) {
      std::cout << "[";
      for (std::size_t i = 0; i < names.size(); ++i)
        std::cout << (i ? ", " : "") << "{\"name\": "
                  << json_string(names[i].actor)
                  << ", \"node\": " << json_string(names[i].node) << "}";
      std::cout << "]\n";
    } else {
      for (auto& n : names)
        std::cout << n.actor << "  " << n.node << "\n";
    }
    return 0;
  }
  if (cmd == "routes") {
    std::string out = "[";
    bool first = true;
    for (auto& n : self.nodes()) {
      if (n.name == self.name())
        continue;
      auto report = self.send<v1::RoutesReport>("courier.node." + n.name,
                                                v1::RoutesQuery{},
                                                std::chrono::milliseconds{opt.timeout_ms});
      if (!report) {
        std::cerr << "courier: " << n.name << ": " << report.error().to_string()
                  << "\n";
        continue;
      }
      for (auto& r : (*report)->routes()) {
        if (r.peer() == self.name())
          continue; // our own query's link
        if (opt.json) {
          out += (first ? "" : ", ");
          out += "{\"node\": " + json_string(n.name) + ", \"peer\": "
                 + json_string(r.peer()) + ", \"tier\": "
                 + json_string(r.tier()) + ", \"note\": "
                 + json_string(r.note())
                 + ", \"messages_out\": " + std::to_string(r.messages_out())
                 + ", \"messages_in\": " + std::to_string(r.messages_in())
                 + "}";
        } else {
          std::cout << n.name << " -> " << r.peer() << "  " << r.tier() << "  ("
                    << r.note() << ")  out " << r.messages_out() << " in "
                    << r.messages_in() << "\n";
        }
        first = false;
      }
    }
    if (opt.json)
      std::cout << out << "]\n";
    return 0;
  }
  if (cmd == "post" || cmd == "send") {
    if (argc != 4)
      return usage(cmd + " takes NAME TYPE JSON");
    auto msg = encode(self, opt.args[1], opt.args[2], opt.args[3]);
    if (!msg)
      return fail(msg.error());
    if (cmd == "post") {
      if (auto posted = self.post(opt.args[1], *msg); !posted)
        return fail(posted.error());
      return 0;
    }
    auto reply = self.send(opt.args[1], *msg,
                           std::chrono::milliseconds{opt.timeout_ms});
    if (!reply)
      return fail(reply.error());
    auto json = to_json(**reply);
    if (opt.json)
      std::cout << "{\"type\": "
                << json_string((*reply)->GetDescriptor()->full_name())
                << ", \"reply\": " << json << "}\n";
    else
      std::cout << json << "\n";
    return 0;
  }
  return usage("unknown command '" + cmd + "'");
}

} // namespace

int main(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--dir" && i + 1 < argc)
      opt.dir = argv[++i];
    else if (arg == "--json")
      opt.json = true;
    else if (arg == "--timeout" && i + 1 < argc) {
      try {
        opt.timeout_ms = std::stol(argv[++i]);
      } catch (const std::exception&) {
        return usage("--timeout takes milliseconds");
      }
      if (opt.timeout_ms <= 0)
        return usage("--timeout takes a positive number of milliseconds");
    } else if (arg == "-h" || arg == "--help") {
      std::cout << usage_text;
      return 0;
    } else {
      opt.args.push_back(arg);
    }
  }
  if (opt.args.empty())
    return usage("no command");
  node_config config;
  config.name = "cli-" + std::to_string(::getpid());
  config.directory = opt.dir;
  config.transports = {{"pipe", pipe::factory()}};
  config.log = [](log_level level, std::string_view line) {
    if (level >= log_level::warning)
      std::cerr << "courier: " << line << "\n";
  };
  auto self = node::start(config);
  if (!self)
    return fail(self.error());
  return run(*self, opt);
}

// Subcommands that talk to actors: post and send. Messages are given as
// JSON (Protobuf's JSON mapping) and encoded with the descriptors that the
// holder of the name published, so the CLI needs no generated code.

#include <chrono>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "cli.hpp"

namespace courier::cli {

namespace {

/// What post and send take.
struct message_args {
  std::string name;
  std::string type;
  std::string json;
};

/// Declares NAME TYPE JSON on `sub`; the result holds them after parsing.
std::shared_ptr<message_args> add_message_args(CLI::App& sub) {
  auto args = std::make_shared<message_args>();
  sub.add_option("NAME", args->name, "the actor: a name, or actor@node")
    ->required();
  sub
    .add_option("TYPE", args->type,
                "the message type's Protobuf full name, e.g. shop.PlaceOrder")
    ->required();
  sub
    .add_option("JSON", args->json,
                "the message in Protobuf's JSON mapping, e.g. '{\"a\": 1}'")
    ->required();
  return args;
}

/// Builds the message from JSON with the types the holder of the name
/// published.
expected<message> encode(node& self, const message_args& args) {
  auto holder = holder_of(self, args.name);
  if (!holder)
    return std::move(holder).error();
  if (auto imported = self.import_types(*holder); !imported)
    return imported.error();
  auto msg = self.new_message(args.type);
  if (!msg)
    return error{errc::not_found, "'" + *holder
                                    + "' publishes no message type '"
                                    + args.type + "'"};
  auto parsed
    = google::protobuf::util::JsonStringToMessage(args.json, msg->get());
  if (!parsed.ok())
    return error{errc::invalid_argument,
                 "not a valid " + args.type
                   + " in JSON: " + std::string{parsed.message()}};
  return message{std::move(*msg)};
}

/// A reply in Protobuf's JSON mapping, every field shown.
expected<std::string> reply_json(const google::protobuf::Message& reply) {
  std::string out;
  google::protobuf::util::JsonPrintOptions print;
  print.always_print_primitive_fields = true;
  auto printed
    = google::protobuf::util::MessageToJsonString(reply, &out, print);
  if (!printed.ok())
    return error{errc::internal, "cannot print the reply as JSON: "
                                   + std::string{printed.message()}};
  return out;
}

/// Prints a reply: its JSON, or with --json an object with its type too.
int print_reply(const google::protobuf::Message& reply, bool json) {
  auto text = reply_json(reply);
  if (!text)
    return fail(text.error());
  if (!json) {
    std::cout << *text << "\n";
    return exit_ok;
  }
  nlohmann::ordered_json out{
    {"type", reply.GetDescriptor()->full_name()},
    {"reply", nlohmann::ordered_json::parse(*text, nullptr, false)}};
  std::cout << out.dump() << "\n";
  return exit_ok;
}

} // namespace

command post_command(CLI::App& sub) {
  auto args = add_message_args(sub);
  return [args](node& self, const global_options&) {
    auto msg = encode(self, *args);
    if (!msg)
      return fail(msg.error());
    if (auto posted = self.post(args->name, std::move(*msg)); !posted)
      return fail(posted.error());
    return exit_ok;
  };
}

command send_command(CLI::App& sub) {
  auto args = add_message_args(sub);
  auto timeout_ms = add_timeout(sub, "how long to wait for the reply (ms)");
  return [args, timeout_ms](node& self, const global_options& global) {
    auto msg = encode(self, *args);
    if (!msg)
      return fail(msg.error());
    auto reply = self.send(args->name, std::move(*msg),
                           std::chrono::milliseconds{*timeout_ms});
    if (!reply)
      return fail(reply.error());
    return print_reply(**reply, global.json);
  };
}

} // namespace courier::cli

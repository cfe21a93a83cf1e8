// Subcommands for durable delivery (docs/durable.md): queues lists each
// node's durable queues, queue peek/purge looks into or empties one,
// deadletters lists the dead letters and replays them. All ask the
// node's durable actor (courier.durable.<name>) with a
// DurableAdminRequest; a node without a store is left out of listings.

#include <chrono>
#include <ctime>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <google/protobuf/util/json_util.h>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "courier/v1/durable.pb.h"

namespace courier::cli {

namespace {

using json = nlohmann::ordered_json;
using v1::DurableAdminRequest;

expected<v1::DurableAdminReply> ask(node& self, const std::string& peer,
                                    const DurableAdminRequest& request,
                                    std::chrono::milliseconds timeout) {
  auto reply = self.send<v1::DurableAdminReply>("courier.durable." + peer,
                                                request, timeout);
  if (!reply)
    return std::move(reply).error();
  return **reply;
}

/// A wall-clock time as UTC ISO 8601 (seconds), "-" for none.
std::string when(std::int64_t unix_ns) {
  if (unix_ns <= 0)
    return "-";
  std::time_t seconds = unix_ns / 1'000'000'000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buf;
}

/// A message's payload as JSON when its type is known to this CLI (from
/// the node that holds the queue), else its bytes in base64.
json payload_json(node& self, const v1::DurableItem& item) {
  google::protobuf::util::JsonPrintOptions print;
  print.always_print_primitive_fields = true;
  std::string text;
  if (auto made = self.new_message(item.type_name());
      made && (*made)->ParseFromString(item.payload())
      && google::protobuf::util::MessageToJsonString(**made, &text, print)
           .ok())
    return json::parse(text, nullptr, false);
  // Protobuf's JSON mapping writes bytes in base64.
  v1::DurableItem bytes_only;
  bytes_only.set_payload(item.payload());
  text.clear();
  (void)google::protobuf::util::MessageToJsonString(bytes_only, &text, print);
  auto parsed = json::parse(text, nullptr, false);
  return {{"base64", parsed.is_object() ? parsed["payload"] : json{}}};
}

json message_json(node& self, const std::string& peer,
                  const v1::DurableMessageInfo& m) {
  json row = {{"node", peer},
              {"id", m.id()},
              {"queue", m.queue()},
              {"target", m.item().target()},
              {"from", m.item().sender_node()},
              {"type", m.item().type_name()},
              {"priority", m.item().priority()},
              {"attempts", m.attempts()},
              {"stored", when(m.stored_unix_ns())},
              {"posted", when(m.item().posted_unix_ns())},
              {"bytes", m.item().payload().size()}};
  if (!m.reason().empty()) {
    row["reason"] = m.reason();
    row["detail"] = m.detail();
    row["died"] = when(m.died_unix_ns());
  }
  row["payload"] = payload_json(self, m.item());
  return row;
}

/// Every node with a store (or `only`), and its answer to `request`; a
/// node without a store (not_found) is skipped unless it was named.
int for_each_store(
  node& self, const std::string& only, const DurableAdminRequest& request,
  std::chrono::milliseconds timeout,
  const std::function<void(const std::string&, const v1::DurableAdminReply&)>&
    each) {
  int status = exit_ok;
  for (const auto& peer : nodes_to_ask(self, only)) {
    auto reply = ask(self, peer, request, timeout);
    if (!reply) {
      if (reply.code() == errc::not_found && only.empty())
        continue; // no durable store there
      std::cerr << "courier: " << peer << ": " << reply.error().to_string()
                << "\n";
      status = exit_failed;
      continue;
    }
    each(peer, *reply);
  }
  return status;
}

std::string queue_line(const json& row) {
  return plain(row["node"]) + "  " + plain(row["queue"]) + "  depth "
         + plain(row["depth"]) + "  in flight " + plain(row["in_flight"])
         + "  bytes " + plain(row["bytes"]) + "  oldest "
         + plain(row["oldest"]);
}

std::string dead_line(const json& row) {
  return plain(row["node"]) + "  #" + plain(row["id"]) + "  "
         + plain(row["queue"]) + "  " + plain(row["reason"]) + "  attempts "
         + plain(row["attempts"]) + "  stored " + plain(row["stored"])
         + "  died " + plain(row["died"]) + "  " + plain(row["detail"]);
}

} // namespace

command queues_command(CLI::App& sub) {
  auto only = std::make_shared<std::string>();
  sub.add_option("NODE", *only, "the node to ask; all of them without it");
  auto timeout_ms = add_timeout(sub, "how long each node may take (ms)");
  return [only, timeout_ms](node& self, const global_options& global) {
    DurableAdminRequest request;
    request.set_op(DurableAdminRequest::OP_QUEUES);
    json rows = json::array();
    auto status = for_each_store(
      self, *only, request, std::chrono::milliseconds{*timeout_ms},
      [&](const std::string& peer, const v1::DurableAdminReply& reply) {
        for (const auto& q : reply.queues())
          rows.push_back({{"node", peer},
                          {"queue", q.name()},
                          {"depth", q.depth()},
                          {"in_flight", q.in_flight()},
                          {"bytes", q.bytes()},
                          {"oldest", when(q.oldest_unix_ns())}});
      });
    print_rows(rows, global.json, queue_line);
    return status;
  };
}

command queue_command(CLI::App& sub) {
  struct args {
    std::string name, node;
    unsigned count = 10;
    bool peek = false, purge = false;
  };
  auto a = std::make_shared<args>();
  auto timeout_ms = add_timeout(sub, "how long each node may take (ms)");
  sub.require_subcommand(1, 1);
  auto* peek = sub.add_subcommand(
    "peek", "the first N messages of queue NAME (in:NAME, out:NAME, or "
            "both for a bare NAME), as JSON");
  peek->add_option("NAME", a->name, "the queue")->required();
  peek->add_option("N", a->count, "how many (default 10)")
    ->check(CLI::Range(1u, 10'000u));
  peek->add_option("--node", a->node, "the node (default: every node)");
  peek->callback([a] { a->peek = true; });
  auto* purge = sub.add_subcommand(
    "purge", "removes every message of queue NAME that is not being handled");
  purge->add_option("NAME", a->name, "the queue")->required();
  purge->add_option("--node", a->node, "the node (default: every node)");
  purge->callback([a] { a->purge = true; });
  return [a, timeout_ms](node& self, const global_options& global) {
    DurableAdminRequest request;
    request.set_op(a->peek ? DurableAdminRequest::OP_PEEK
                           : DurableAdminRequest::OP_PURGE);
    request.set_queue(a->name);
    request.set_max(a->count);
    json rows = json::array();
    auto status = for_each_store(
      self, a->node, request, std::chrono::milliseconds{*timeout_ms},
      [&](const std::string& peer, const v1::DurableAdminReply& reply) {
        if (a->purge) {
          rows.push_back(
            {{"node", peer}, {"queue", a->name}, {"purged", reply.count()}});
          return;
        }
        (void)self.import_types(peer); // to show payloads as JSON
        for (const auto& m : reply.messages())
          rows.push_back(message_json(self, peer, m));
      });
    if (a->peek)
      std::cout << rows.dump(2) << "\n";
    else
      print_rows(rows, global.json, [](const json& row) {
        return plain(row["node"]) + "  " + plain(row["queue"]) + "  purged "
               + plain(row["purged"]);
      });
    return status;
  };
}

command deadletters_command(CLI::App& sub) {
  struct args {
    std::string node;
    std::uint64_t id = 0;
    bool all = false, replay = false;
  };
  auto a = std::make_shared<args>();
  sub.add_option("NODE", a->node, "the node to ask; all of them without it");
  auto timeout_ms = add_timeout(sub, "how long each node may take (ms)");
  auto* replay = sub.add_subcommand(
    "replay", "puts dead letters back in their queue, attempts at zero");
  auto* id = replay->add_option("ID", a->id, "the dead letter's id");
  auto* all = replay->add_flag("--all", a->all, "every dead letter");
  id->excludes(all);
  replay->add_option("--node", a->node, "the node (default: every node)");
  replay->callback([a, replay] {
    if (a->id == 0 && !a->all)
      throw CLI::ValidationError("replay", "give an ID or --all");
    a->replay = true;
  });
  return [a, timeout_ms](node& self, const global_options& global) {
    DurableAdminRequest request;
    if (a->replay) {
      request.set_op(a->all ? DurableAdminRequest::OP_REPLAY_ALL
                            : DurableAdminRequest::OP_REPLAY);
      request.set_id(a->id);
    } else {
      request.set_op(DurableAdminRequest::OP_DEAD_LETTERS);
    }
    json rows = json::array();
    bool replayed = false;
    auto status = for_each_store(
      self, a->node, request, std::chrono::milliseconds{*timeout_ms},
      [&](const std::string& peer, const v1::DurableAdminReply& reply) {
        if (a->replay) {
          replayed = true;
          rows.push_back({{"node", peer}, {"replayed", reply.count()}});
          return;
        }
        (void)self.import_types(peer);
        for (const auto& m : reply.messages())
          rows.push_back(message_json(self, peer, m));
      });
    if (a->replay && !replayed && status == exit_ok)
      return fail(error{errc::not_found, "no node has that dead letter"});
    print_rows(rows, global.json,
               a->replay ? +[](const json& row) {
                 return plain(row["node"]) + "  replayed "
                        + plain(row["replayed"]);
               }
                         : dead_line);
    return status;
  };
}

} // namespace courier::cli

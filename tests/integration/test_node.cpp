// A node for integration tests, run as a separate process.
//
//   courier_test_node --dir DIR --name NODE [--allow-uid UID] [--pipe-only]
//                     [--fault-only] [--flood NAME] [--flood-big NAME]
//                     [--latency] [--max-queued BYTES] [--log-stdout]
//                     [--registry URL] [--lease MS] [ACTOR...]
//
// ACTOR is one of: echo.<suffix> (Ping -> Pong from this node, a Blob
// back as it came), adder,
// sloth (parks Hold and Ping), counter (Ping posts counted in order;
// Add answers Sum{count * 1000000 + out_of_order}), quitter (parks Hold,
// answers Ping with the number parked, Quit stops it), gate (takes Tree
// posts, and keeps the first one until the process is asked to end, so
// that the others wait in its mailbox), orders (serves the gRPC service
// shop.Orders of examples/polyglot, declared at spawn: PlaceOrder answers
// Placed{order_id "order-<n>"}, n counting the orders it took; an order of
// quantity 0 stops it).
// --registry sets node_config::registry (an etcd URL) and --lease its
// registry_lease in milliseconds. --durable DIR gives the node durable
// delivery with its store in DIR.
// --max-queued sets limits.max_queued; --log-stdout prints the node's log
// lines to stdout, each as "log: <line>".
// --flood NAME posts Pings numbered from 0 to NAME without pause, from a
// thread of its own, until the process ends (a sender killed mid-stream).
// --flood-big NAME does the same with 64 KiB Pings and no calls, posting
// again whenever the route says it is full (resource_exhausted).
// --try VERB:TARGET[:COUNT] (repeatable) tries a verb on another node's
// actors before "ready" and prints one line "tried VERB TARGET: ..." with
// the outcomes: post (COUNT Pings; "posted N refused M"), send (COUNT
// Pings; "ok N <errc> M ..."), names (TARGET a pattern; the names listed,
// as actor@node), find (TARGET a name; its node, or the error), monitor
// (the notice's reason and detail), broadcast (TARGET a pattern; who
// replied, and who failed with what), routes (TARGET ignored; each route as
// peer:tier).
// --fault-only registers one tier, "fault": the fault wrapper over the pipe
// (tests/support/fault_transport.hpp), with a plan that injects nothing.
// --tcp makes TCP its only tier, --with-tcp adds it beside the local
// tiers; --tcp-listen ADDR (default 127.0.0.1:0), --tls DIR (mutual TLS
// with DIR/ca.pem, DIR/<name>.pem and DIR/<name>.key), --allow-plaintext,
// --heartbeat MS and --unreachable-after MS set it up. --grpc and
// --with-grpc do the same with the gRPC tier (--grpc-listen ADDR; --tls,
// --allow-plaintext, --heartbeat and --unreachable-after apply to it too);
// --grpc --with-tcp gives a node both network tiers and nothing else.
// hop.<suffix> takes a Ping as a request, prints "hop NODE/NAME trace
// TRACE_ID span SPAN_ID" (its context's trace), and asks --hop-next NAME
// the same Ping before it answers with the reply (or, without
// --hop-next, answers a Pong whose `from` is its trace id).
// --trace sets node_config::trace (plain threads' calls start traces);
// --log-json sets log_format json; --no-rules leaves out the rule that
// lets network peers do everything with --tcp (they are then refused).
// It prints "ready" once its actors are up, then serves until stdin closes
// or it is killed. Everything it logs goes to stderr.

#include <atomic>
#include <condition_variable>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "courier/courier.hpp"
#include "courier/durable/delivery.hpp"
#include "courier/grpc_tier/grpc_transport.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"
#include "courier/tcp/tcp_transport.hpp"
#include "courier_test/v1/test.pb.h"
#include "fault_transport.hpp"
#include "shop/orders.pb.h"

using namespace courier;
using namespace std::chrono_literals;
namespace tpb = courier_test::v1;

namespace {

std::mutex stdout_mu;
std::string hop_next; // --hop-next

behavior hop(context& ctx) {
  return {[&ctx](const tpb::Ping& p) {
    {
      std::lock_guard guard{stdout_mu};
      std::cout << "hop " << ctx.node_name() << "/" << ctx.name() << " trace "
                << ctx.trace_id() << " span " << ctx.trace().span_id_hex()
                << std::endl;
    }
    if (hop_next.empty()) {
      tpb::Pong out;
      out.set_seq(p.seq());
      out.set_from(ctx.trace_id());
      ctx.take_reply().deliver(std::move(out));
      return;
    }
    auto answer = std::make_shared<responder>(ctx.take_reply());
    ctx.request(hop_next, p, deadline{10s})
      .then([answer](const message& reply) { answer->deliver(reply); },
            [answer](const error& e) { answer->deliver(e); });
  }};
}

behavior echo(context& ctx) {
  return {
    [&ctx](const tpb::Ping& p) {
      tpb::Pong out;
      out.set_seq(p.seq());
      out.set_from(ctx.node_name() + "/" + ctx.name() + "<-" + ctx.sender());
      return out;
    },
    [](std::shared_ptr<const tpb::Blob> blob) { return blob; },
  };
}

behavior adder(context&) {
  return {[](const tpb::Add& x) {
    tpb::Sum out;
    out.set_value(x.a() + x.b());
    return out;
  }};
}

behavior sloth(context& ctx) {
  auto parked = std::make_shared<std::vector<responder>>();
  return {
    [&ctx, parked](const tpb::Hold&) { parked->push_back(ctx.take_reply()); },
    [&ctx, parked](const tpb::Ping&) { parked->push_back(ctx.take_reply()); },
  };
}

behavior counter(context&) {
  struct tally {
    std::int64_t next = 0;
    std::int64_t count = 0;
    std::int64_t out_of_order = 0;
  };
  auto state = std::make_shared<tally>();
  return {
    [state](const tpb::Ping& p) {
      if (p.seq() != state->next)
        ++state->out_of_order;
      state->next = p.seq() + 1;
      ++state->count;
    },
    [state](const tpb::Add&) {
      tpb::Sum out;
      out.set_value(state->count * 1000000 + state->out_of_order);
      return out;
    },
  };
}

// The gate's latch: open once the test asks the process to end.
std::mutex gate_mu;
std::condition_variable gate_cv;
bool gate_open = false;

behavior gate(context&) {
  return {[](const tpb::Tree&) {
    std::unique_lock guard{gate_mu};
    gate_cv.wait_for(guard, 120s, [] { return gate_open; });
  }};
}

behavior orders(context& ctx) {
  auto taken = std::make_shared<int>(0);
  return {[&ctx, taken](const shop::PlaceOrder& order) -> expected<shop::Placed> {
    if (order.quantity() == 0) {
      ctx.stop();
      return error{errc::aborted, "the shop closed"};
    }
    shop::Placed placed;
    placed.set_order_id("order-" + std::to_string(++*taken));
    placed.set_item(order.item());
    placed.set_quantity(order.quantity());
    return placed;
  }};
}

behavior quitter(context& ctx) {
  auto parked = std::make_shared<std::vector<responder>>();
  return {
    [&ctx, parked](const tpb::Hold&) { parked->push_back(ctx.take_reply()); },
    [parked](const tpb::Ping&) { // how many requests wait here
      tpb::Pong out;
      out.set_seq(static_cast<std::int64_t>(parked->size()));
      return out;
    },
    [&ctx](const tpb::Quit&) { ctx.stop(); },
  };
}

/// Runs one --try and returns what it prints (see the top of this file).
std::string try_verb(node& self, const std::string& spec) {
  auto first = spec.find(':');
  auto second = spec.find(':', first + 1);
  auto verb = spec.substr(0, first);
  auto target = spec.substr(first + 1, second == std::string::npos
                                         ? std::string::npos
                                         : second - first - 1);
  long count = second == std::string::npos ? 1 : std::stol(spec.substr(second + 1));
  std::string out = "tried " + verb + " " + target + ":";
  if (verb == "post") {
    long posted = 0;
    long refused = 0;
    for (long i = 0; i < count;) {
      auto done = self.post(target, tpb::Ping{});
      if (!done && done.code() == errc::resource_exhausted) {
        std::this_thread::sleep_for(100us); // the route is full: again
        continue;
      }
      ++(done ? posted : refused);
      ++i;
    }
    return out + " posted " + std::to_string(posted) + " refused "
           + std::to_string(refused);
  }
  if (verb == "send") {
    std::map<std::string, long> outcomes;
    for (long i = 0; i < count; ++i) {
      tpb::Ping p;
      p.set_seq(i);
      auto reply = self.send(target, p, deadline{5s});
      ++outcomes[reply ? "ok" : std::string{to_string(reply.code())}];
    }
    for (auto& [what, n] : outcomes)
      out += " " + what + " " + std::to_string(n);
    return out;
  }
  if (verb == "names") {
    for (auto& held : self.machine_names(target))
      if (held.node != self.name())
        out += " " + held.actor + "@" + held.node;
    return out;
  }
  if (verb == "find") {
    for (auto& held : self.machine_names(target))
      if (held.actor == target)
        return out + " " + held.node;
    return out + " not_found";
  }
  if (verb == "monitor") {
    std::promise<down_notice> notice;
    auto watched = self.monitor(target, [&](const down_notice& d) {
      notice.set_value(d);
    });
    if (!watched)
      return out + " " + watched.error().to_string();
    auto got = notice.get_future();
    if (got.wait_for(10s) != std::future_status::ready)
      return out + " no notice";
    auto d = got.get();
    self.demonitor(*watched);
    return out + " " + std::string{to_string(d.reason)} + " " + d.detail;
  }
  if (verb == "broadcast") {
    auto result = self.broadcast(target, tpb::Ping{}, deadline{5s});
    for (auto& r : result.replied)
      out += " replied " + r.name;
    for (auto& f : result.failed)
      out += " failed " + f.name + " " + std::string{to_string(f.reason.code())};
    for (auto& t : result.timed_out)
      out += " timed_out " + t;
    for (auto& d : result.dead)
      out += " dead " + d;
    return out;
  }
  if (verb == "routes") {
    for (const auto& route : self.routes())
      out += " " + route.peer + ":" + route.tier;
    return out;
  }
  return out + " unknown verb";
}

} // namespace

int main(int argc, char** argv) {
  node_config config;
  config.transports = {{"pipe", pipe::factory()}, {"shm", shm::factory()}};
  std::vector<std::string> actors;
  std::string flood_target;
  bool flood_big = false;
  std::vector<std::string> tries;
  enum { no_tcp, tcp_only, with_tcp } tcp_use = no_tcp;
  tcp::options tcp_settings;
  enum { no_grpc, grpc_only, with_grpc } grpc_use = no_grpc;
  grpc_tier::options grpc_settings;
  std::string tls_dir;
  bool no_rules = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--dir" && i + 1 < argc)
      config.directory = argv[++i];
    else if (arg == "--name" && i + 1 < argc)
      config.name = argv[++i];
    else if (arg == "--allow-uid" && i + 1 < argc)
      config.allowed_uids.push_back(std::stoul(argv[++i]));
    else if (arg == "--pipe-only")
      config.transports = {{"pipe", pipe::factory()}};
    else if (arg == "--fault-only")
      config.transports = {
        {"fault", testing::fault_factory(
                    pipe::factory(), std::make_shared<testing::fault_plan>())}};
    else if (arg == "--tcp")
      tcp_use = tcp_only;
    else if (arg == "--with-tcp")
      tcp_use = with_tcp;
    else if (arg == "--grpc")
      grpc_use = grpc_only;
    else if (arg == "--with-grpc")
      grpc_use = with_grpc;
    else if (arg == "--grpc-listen" && i + 1 < argc)
      grpc_settings.listen = argv[++i];
    else if (arg == "--tcp-listen" && i + 1 < argc)
      tcp_settings.listen = argv[++i];
    else if (arg == "--tls" && i + 1 < argc)
      tls_dir = argv[++i];
    else if (arg == "--allow-plaintext")
      tcp_settings.allow_plaintext = true;
    else if (arg == "--heartbeat" && i + 1 < argc)
      tcp_settings.heartbeat = std::chrono::milliseconds{std::stol(argv[++i])};
    else if (arg == "--unreachable-after" && i + 1 < argc)
      tcp_settings.unreachable_after
        = std::chrono::milliseconds{std::stol(argv[++i])};
    else if (arg == "--latency")
      config.scheduler = scheduler_policy::latency;
    else if (arg == "--max-queued" && i + 1 < argc)
      config.limits.max_queued = std::stoull(argv[++i]);
    else if (arg == "--registry" && i + 1 < argc)
      config.registry = argv[++i];
    else if (arg == "--seed" && i + 1 < argc) {
      auto parsed = parse_seed(argv[++i]);
      if (!parsed) {
        std::cerr << "test node: " << parsed.error().to_string() << std::endl;
        return 2;
      }
      config.seeds.push_back(std::move(*parsed));
    } else if (arg == "--lease" && i + 1 < argc)
      config.registry_lease = std::chrono::milliseconds{std::stoll(argv[++i])};
    else if (arg == "--durable" && i + 1 < argc) {
      durable::delivery_options o;
      o.store.directory = argv[++i];
      o.retry_min = std::chrono::milliseconds{10};
      o.retry_max = std::chrono::milliseconds{200};
      config.durable = durable::delivery(o);
    } else if (arg == "--log-stdout")
      config.log = [](log_level, std::string_view line) {
        std::lock_guard guard{stdout_mu};
        std::cout << "log: " << line << std::endl;
      };
    else if (arg == "--log-json")
      config.log_format = log_format::json;
    else if (arg == "--trace")
      config.trace = true;
    else if (arg == "--no-rules")
      no_rules = true;
    else if (arg == "--hop-next" && i + 1 < argc)
      hop_next = argv[++i];
    else if (arg == "--try" && i + 1 < argc)
      tries.push_back(argv[++i]);
    else if (arg == "--flood" && i + 1 < argc)
      flood_target = argv[++i];
    else if (arg == "--flood-big" && i + 1 < argc) {
      flood_target = argv[++i];
      flood_big = true;
    }
    else
      actors.push_back(arg);
  }
  if (!tls_dir.empty())
    tcp_settings.tls = tcp::tls_files{tls_dir + "/" + config.name + ".pem",
                                      tls_dir + "/" + config.name + ".key",
                                      tls_dir + "/ca.pem"};
  grpc_settings.tls = tcp_settings.tls;
  grpc_settings.allow_plaintext = tcp_settings.allow_plaintext;
  grpc_settings.heartbeat = tcp_settings.heartbeat;
  grpc_settings.unreachable_after = tcp_settings.unreachable_after;
  if ((tcp_use != no_tcp || grpc_use != no_grpc) && !no_rules)
    // Network peers are denied everything by default (docs/security.md):
    // the test's nodes on the loopback, or with the test CA's
    // certificates, may do everything.
    config.rules.push_back({tls_dir.empty() ? "anonymous" : "cert:*", "*",
                            verbs::all});
  if (tcp_use == tcp_only)
    config.transports = {{"tcp", tcp::factory(tcp_settings)}};
  else if (tcp_use == with_tcp)
    config.transports.emplace_back("tcp", tcp::factory(tcp_settings));
  if (grpc_use == grpc_only && tcp_use == with_tcp)
    config.transports = {{"tcp", tcp::factory(tcp_settings)}};
  else if (grpc_use == grpc_only)
    config.transports.clear();
  if (grpc_use != no_grpc)
    config.transports.emplace_back("grpc", grpc_tier::factory(grpc_settings));
  auto started = node::start(config);
  if (!started) {
    std::cerr << "test node: " << started.error().to_string() << std::endl;
    return 1;
  }
  for (auto& name : actors) {
    actor_factory factory;
    spawn_options options;
    if (name.rfind("echo", 0) == 0)
      factory = echo;
    else if (name.rfind("hop", 0) == 0)
      factory = hop;
    else if (name == "adder")
      factory = adder;
    else if (name == "sloth")
      factory = sloth;
    else if (name == "counter")
      factory = counter;
    else if (name == "quitter")
      factory = quitter;
    else if (name == "gate")
      factory = gate;
    else if (name == "orders") {
      factory = orders;
      options.services = {"shop.Orders"};
    } else {
      std::cerr << "test node: unknown actor kind " << name << std::endl;
      return 2;
    }
    if (auto spawned = started->spawn(name, factory, options); !spawned) {
      std::cerr << "test node: " << spawned.error().to_string() << std::endl;
      return 1;
    }
  }
  std::atomic<bool> done{false};
  std::thread flood;
  if (!flood_target.empty()) {
    // The first post links to the target's node before "ready" is printed.
    tpb::Ping first;
    if (auto posted = started->post(flood_target, first); !posted) {
      std::cerr << "test node: " << posted.error().to_string() << std::endl;
      return 1;
    }
  }
  for (auto& spec : tries) {
    auto tried = try_verb(*started, spec);
    std::lock_guard guard{stdout_mu};
    std::cout << tried << std::endl;
  }
  {
    std::lock_guard guard{stdout_mu};
    std::cout << "ready" << std::endl;
  }
  if (!flood_target.empty()) {
    flood = std::thread{[&] {
      tpb::Ping p;
      if (flood_big) {
        p.set_text(std::string(64u << 10, 'f'));
        for (std::int64_t seq = 1; !done.load();) {
          p.set_seq(seq);
          auto posted = started->post(flood_target, p);
          if (posted)
            ++seq;
          else if (posted.code() == errc::resource_exhausted)
            std::this_thread::sleep_for(1ms); // the route is full
          else
            return;
        }
        return;
      }
      for (std::int64_t seq = 1; !done.load();) {
        p.set_seq(seq);
        if (auto posted = started->post(flood_target, p);
            !posted && posted.code() == errc::resource_exhausted) {
          std::this_thread::sleep_for(100us); // the route is full: again
          continue;
        }
        if (seq % 64 == 0) // a call now and then keeps the backlog bounded
          (void)started->send(flood_target, tpb::Add{}, deadline{5s});
        ++seq;
      }
    }};
  }
  // Serve until the test closes our stdin (or kills us).
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  done = true;
  {
    std::lock_guard guard{gate_mu};
    gate_open = true;
  }
  gate_cv.notify_all();
  if (flood.joinable())
    flood.join();
  return 0;
}

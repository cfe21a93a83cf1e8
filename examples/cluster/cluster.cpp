// Three hosts, one actor on each, and a request that crosses all three.
//
//   cluster            (as root) builds the hosts and runs the request
//   cluster --serve NODE ACTOR [NEXT NEXT_NODE] --registry URL --listen ADDR
//           --certs DIR
//                      one node of the cluster (started by the above)
//   cluster --hosts up|down DIR
//                      makes (or removes) the hosts courier-demo-{alpha,
//                      beta,gamma} and the certificates in DIR, for
//                      examples/deploy/cluster.toml
//   cluster --ask DIR  from alpha's host, asks "front" and prints the path
//
// The hosts are network namespaces joined by a bridge (10.78.0.1-3), which
// Courier takes for three machines: a host is a machine id, a boot id and
// a network namespace. An etcd on the first holds the cluster's node
// records and names. Node alpha serves "front", beta "middle", gamma
// "back"; a request to "front" goes front -> middle -> back and the answer
// comes back with every hop and the tier it took. Everything the example
// makes (namespaces, processes, files) is removed at the end.

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cert.hpp"
#include "cluster/cluster.pb.h"
#include "courier/courier.hpp"
#include "courier/transports.hpp"

using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct host {
  std::string node;
  std::string actor;
  std::string address;
};

const std::vector<host> hosts{{"alpha", "front", "10.78.0.1"},
                              {"beta", "middle", "10.78.0.2"},
                              {"gamma", "back", "10.78.0.3"}};

bool run(const std::string& command) {
  return std::system(("(" + command + ") >/dev/null 2>&1").c_str()) == 0;
}

courier::tcp::options tcp_settings(const std::string& listen,
                                   const std::string& certs,
                                   const std::string& node) {
  courier::tcp::options out;
  out.listen = listen;
  out.tls = courier::tcp::tls_files{certs + "/" + node + ".pem",
                                    certs + "/" + node + ".key",
                                    certs + "/ca.pem"};
  return out;
}

/// A node started with the registry, retried while etcd comes up.
std::optional<courier::node> start_node(courier::node_config config) {
  auto until = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    auto started = courier::node::start(config);
    if (started)
      return std::move(*started);
    if (started.code() != courier::errc::unavailable
        || std::chrono::steady_clock::now() > until) {
      std::cerr << config.name << ": " << started.error().to_string() << "\n";
      return std::nullopt;
    }
    std::this_thread::sleep_for(200ms); // etcd is starting: try again
  }
}

/// The tier of this node's route to `peer`, or "?" if it has none.
std::string tier_to(courier::node& self, const std::string& peer) {
  for (const auto& route : self.routes())
    if (route.peer == peer)
      return route.tier;
  return "?";
}

// -- one node -----------------------------------------------------------------------

int serve(const std::vector<std::string>& args) {
  std::string node_name = args.at(0);
  std::string actor = args.at(1);
  std::string next;
  std::string next_node;
  std::string registry;
  std::string listen;
  std::string certs;
  for (std::size_t i = 2; i < args.size(); ++i) {
    if (args[i] == "--registry")
      registry = args.at(++i);
    else if (args[i] == "--listen")
      listen = args.at(++i);
    else if (args[i] == "--certs")
      certs = args.at(++i);
    else if (next.empty())
      next = args[i];
    else
      next_node = args[i];
  }
  courier::node_config config;
  config.name = node_name;
  config.registry = registry;
  config.registry_lease = 2s;
  config.transports
    = courier::cluster_transports(tcp_settings(listen, certs, node_name));
  // Peers on other hosts are certificates: those of the cluster's CA may
  // do everything here (the CA signs this cluster's nodes only).
  config.rules = {{"cert:*", "*", courier::verbs::all}};
  auto self = start_node(std::move(config));
  if (!self)
    return 1;
  auto* me = &*self;
  auto spawned = self->spawn(actor, [=](courier::context& ctx) {
    return courier::behavior{[=, &ctx](const cluster::Trace& trace) {
      auto here = node_name + "/" + actor;
      if (next.empty()) {
        cluster::Path path;
        path.mutable_hops()->CopyFrom(trace.hops());
        path.add_hops(here);
        ctx.take_reply().deliver(path);
        return;
      }
      cluster::Trace on = trace;
      on.add_hops(here);
      // One answer, for whichever continuation runs.
      auto answer = std::make_shared<courier::responder>(ctx.take_reply());
      ctx.request(next, on, courier::deadline{5s})
        .then(
          [=](const cluster::Path& path) {
            // The hop's note, now that the route exists: its tier.
            cluster::Path out = path;
            auto& hop = (*out.mutable_hops())[trace.hops_size()];
            hop += " --" + tier_to(*me, next_node) + "-->";
            answer->deliver(out);
          },
          [=](const courier::error& why) { answer->deliver(why); });
    }};
  });
  if (!spawned) {
    std::cerr << node_name << ": " << spawned.error().to_string() << "\n";
    return 1;
  }
  std::cout << "ready" << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  return 0;
}

// -- the launcher -------------------------------------------------------------------

/// A child process with its stdin kept open (closing it ends a node).
struct child {
  pid_t pid = -1;
  int to_child = -1;
  int from_child = -1;

  bool ready(std::chrono::seconds patience) {
    std::string seen;
    auto until = std::chrono::steady_clock::now() + patience;
    char c;
    while (std::chrono::steady_clock::now() < until) {
      pollfd p{from_child, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0)
        continue;
      if (::read(from_child, &c, 1) != 1)
        return false;
      if (c != '\n') {
        seen += c;
        continue;
      }
      if (seen == "ready")
        return true;
      seen.clear();
    }
    return false;
  }

  void end() {
    if (pid < 0)
      return;
    ::close(to_child);
    for (int i = 0; i < 50; ++i) {
      if (::waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = -1;
        break;
      }
      std::this_thread::sleep_for(100ms);
    }
    if (pid >= 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    ::close(from_child);
    pid = -1;
  }
};

child spawn(const std::vector<std::string>& argv, bool quiet) {
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int in[2];
  int out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
    return {};
  int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  auto pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    if (quiet)
      ::dup2(null, STDERR_FILENO);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(null);
  ::close(in[0]);
  ::close(out[1]);
  return {pid, in[1], out[0]};
}

/// The certificates' folder under `work`.
std::string certs_of(const fs::path& work) {
  return (work / "certs").string();
}

/// The hosts: a bridge in namespace `hub`, a veth from each of `spaces`
/// (one per entry of `hosts`) to it, with the host's address.
bool make_hosts(const std::string& hub, const std::vector<std::string>& spaces) {
  bool made = run("ip netns add " + hub)
              && run("ip -n " + hub + " link add br0 type bridge")
              && run("ip -n " + hub + " link set br0 up");
  for (std::size_t i = 0; made && i < hosts.size(); ++i) {
    auto port = "v" + hosts[i].node;
    made = run("ip netns add " + spaces[i])
           && run("ip link add " + port + " netns " + hub
                  + " type veth peer name eth0 netns " + spaces[i])
           && run("ip -n " + hub + " link set " + port + " master br0 up")
           && run("ip -n " + spaces[i] + " addr add " + hosts[i].address
                  + "/24 dev eth0")
           && run("ip -n " + spaces[i] + " link set eth0 up")
           && run("ip -n " + spaces[i] + " link set lo up");
  }
  return made;
}

/// Certificates for every node in `certs`, one CA.
bool mint(const std::string& certs) {
  courier::cert::ca_request ca;
  ca.out = certs;
  bool minted = static_cast<bool>(courier::cert::make_ca(ca));
  for (const auto& name : {"alpha", "beta", "gamma", "desk"}) {
    courier::cert::node_request node;
    node.name = name;
    node.ca = certs;
    node.out = certs;
    minted = minted && courier::cert::make_node_certificate(node);
  }
  return minted;
}

/// From alpha's host, a node of this process ("desk") asks "front" and
/// prints the path; 0 on success.
int ask(const std::string& space, const std::string& registry,
        const std::string& certs) {
  int status = 1;
  int home = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  int there = ::open(("/run/netns/" + space).c_str(), O_RDONLY | O_CLOEXEC);
  if (home < 0 || there < 0 || ::setns(there, CLONE_NEWNET) != 0) {
    std::cerr << "cluster: cannot enter alpha's host\n";
    return 1;
  }
  ::close(there);
  {
    courier::node_config config;
    config.name = "desk";
    config.registry = registry;
    config.registry_lease = 2s;
    config.transports = courier::cluster_transports(
      tcp_settings(hosts[0].address + ":0", certs, "desk"));
    auto desk = start_node(std::move(config));
    // `courier up -d` returns once the nodes run, before alpha has claimed
    // "front" in etcd: wait for the name, not for a fixed time.
    auto until = std::chrono::steady_clock::now() + 30s;
    while (desk && desk->find("front").code() == courier::errc::not_found
           && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(50ms);
    if (desk) {
      cluster::Trace trace;
      trace.add_hops("desk");
      auto path = desk->send<cluster::Path>("front", trace, 10s);
      if (path) {
        std::cout << "request to 'front' went:\n  desk --"
                  << tier_to(*desk, "alpha") << "-->";
        for (const auto& hop : (*path)->hops())
          if (hop != "desk")
            std::cout << " " << hop;
        std::cout << std::endl;
        for (const auto& route : desk->routes())
          std::cout << "route desk -> " << route.peer << ": " << route.tier
                    << " (" << route.note << ")" << std::endl;
        status = 0;
      } else {
        std::cerr << "cluster: the request failed: "
                  << path.error().to_string() << "\n";
      }
    }
  }
  ::setns(home, CLONE_NEWNET);
  ::close(home);
  return status;
}

int launch(const std::string& self_path) {
  if (::geteuid() != 0 || !run("command -v ip") || !fs::exists("/usr/bin/etcd")) {
    std::cout << "cluster: skipped (it needs root, ip and etcd to make three "
                 "hosts out of network namespaces)\n";
    return 0;
  }
  auto tag = std::to_string(::getpid());
  auto hub = "courier-cl" + tag + "-hub";
  std::vector<std::string> spaces;
  for (const auto& h : hosts)
    spaces.push_back("courier-cl" + tag + "-" + h.node);
  auto work = fs::temp_directory_path() / ("courier-cluster-" + tag);
  fs::create_directories(work);
  std::vector<child> children;
  int status = 1;
  auto cleanup = [&] {
    for (auto i = children.rbegin(); i != children.rend(); ++i)
      i->end();
    for (const auto& ns : spaces)
      run("ip netns del " + ns);
    run("ip netns del " + hub);
    fs::remove_all(work);
  };

  if (!make_hosts(hub, spaces) || !mint(certs_of(work))) {
    std::cerr << "cluster: cannot make the hosts or their certificates\n";
    cleanup();
    return 1;
  }
  auto certs = certs_of(work);

  // etcd on alpha's host.
  auto etcd_url = "http://" + hosts[0].address + ":2379";
  children.push_back(spawn(
    {"ip", "netns", "exec", spaces[0], "/usr/bin/etcd", "--name", "cluster",
     "--data-dir", (work / "etcd").string(), "--listen-client-urls", etcd_url,
     "--advertise-client-urls", etcd_url, "--listen-peer-urls",
     "http://127.0.0.1:2380", "--initial-advertise-peer-urls",
     "http://127.0.0.1:2380", "--initial-cluster",
     "cluster=http://127.0.0.1:2380"},
    true));
  auto registry = "etcd://" + hosts[0].address + ":2379";

  // The nodes, last hop first.
  for (std::size_t i = hosts.size(); i-- > 0;) {
    std::vector<std::string> argv{"ip", "netns", "exec", spaces[i], self_path,
                                  "--serve", hosts[i].node, hosts[i].actor};
    if (i + 1 < hosts.size()) {
      argv.push_back(hosts[i + 1].actor);
      argv.push_back(hosts[i + 1].node);
    }
    for (const auto& a : {std::string{"--registry"}, registry,
                          std::string{"--listen"}, hosts[i].address + ":0",
                          std::string{"--certs"}, certs})
      argv.push_back(a);
    children.push_back(spawn(argv, false));
    if (!children.back().ready(30s)) {
      std::cerr << "cluster: node " << hosts[i].node << " did not start\n";
      cleanup();
      return 1;
    }
    std::cout << "started " << hosts[i].node << " (" << hosts[i].actor
              << ") on host " << hosts[i].address << "\n";
  }

  // This process joins alpha's host with a node of its own and asks.
  status = ask(spaces[0], registry, certs);
  cleanup();
  return status;
}

} // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "--serve")
    return serve({args.begin() + 1, args.end()});
  // For a system file (examples/deploy/cluster.toml): the hosts and
  // certificates made and removed apart from the nodes, and the request.
  if (args.size() == 3 && args[0] == "--hosts") {
    std::vector<std::string> spaces;
    for (const auto& h : hosts)
      spaces.push_back("courier-demo-" + h.node);
    if (args[1] == "down") {
      for (const auto& ns : spaces)
        run("ip netns del " + ns);
      run("ip netns del courier-demo-hub");
      fs::remove_all(args[2]);
      return 0;
    }
    fs::create_directories(args[2]);
    return make_hosts("courier-demo-hub", spaces) && mint(certs_of(args[2]))
             ? 0
             : 1;
  }
  if (args.size() == 2 && args[0] == "--ask")
    return ask("courier-demo-alpha", "etcd://" + hosts[0].address + ":2379",
               certs_of(args[1]));
  return launch(fs::canonical("/proc/self/exe").string());
}

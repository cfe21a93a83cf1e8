// One process of the durable orders system (and of the durable kill tests):
//
//   orders_node billing  --dir DIR --store STORE --name NODE --applied FILE
//                        [--consumers billing,billing-2]
//   orders_node producer --dir DIR --store STORE --name NODE --id P
//                        --to billing[,billing-2] --count N [--from I]
//                        --acked FILE
//
// billing holds the consumer names; each applies an order once, by its
// business key (producer, seq): an order handed again after a crash (the
// one whose handler had returned when the node died) is recognised from
// FILE, which lists every applied order as "consumer producer seq", and
// noted in FILE.again instead. It prints "ready" and runs until killed.
//
// producer posts orders I..N-1 durably, round robin over the names, and
// appends "target producer seq" to FILE once each post is acknowledged
// (on this node's disk). Then it waits until its outgoing queues are
// empty, prints "drained" and exits.

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "courier/courier.hpp"
#include "courier/durable/delivery.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"
#include "courier/v1/durable.pb.h"
#include "orders.pb.h"

namespace {

using namespace std::chrono_literals;

struct args {
  std::string role, dir, store, name, file, id;
  std::vector<std::string> names;
  long count = 0, from = 0;
};

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in{text};
  for (std::string part; std::getline(in, part, ',');)
    if (!part.empty())
      out.push_back(part);
  return out;
}

bool parse(int argc, char** argv, args& a) {
  if (argc < 2)
    return false;
  a.role = argv[1];
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string key = argv[i], value = argv[i + 1];
    if (key == "--dir")
      a.dir = value;
    else if (key == "--store")
      a.store = value;
    else if (key == "--name")
      a.name = value;
    else if (key == "--applied" || key == "--acked")
      a.file = value;
    else if (key == "--consumers" || key == "--to")
      a.names = split(value);
    else if (key == "--id")
      a.id = value;
    else if (key == "--count")
      a.count = std::stol(value);
    else if (key == "--from")
      a.from = std::stol(value);
    else
      return false;
  }
  return !a.dir.empty() && !a.store.empty() && !a.name.empty()
         && !a.file.empty();
}

/// Appends one line with one write(2): whole lines survive a SIGKILL.
class line_file {
public:
  explicit line_file(const std::string& path)
    : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644)) {}
  ~line_file() {
    if (fd_ >= 0)
      ::close(fd_);
  }
  bool ok() const {
    return fd_ >= 0;
  }
  void write(const std::string& line) {
    auto text = line + "\n";
    std::lock_guard guard{mu_};
    if (::write(fd_, text.data(), text.size())
        != static_cast<ssize_t>(text.size()))
      std::perror("write");
  }

private:
  int fd_;
  std::mutex mu_;
};

courier::expected<courier::node> start(const args& a) {
  courier::node_config config;
  config.name = a.name;
  config.directory = a.dir;
  config.transports = {{"pipe", courier::pipe::factory()},
                       {"shm", courier::shm::factory()}};
  courier::durable::delivery_options durable;
  durable.store.directory = a.store;
  durable.retry_min = 5ms;
  durable.retry_max = 200ms;
  config.durable = courier::durable::delivery(durable);
  return courier::node::start(std::move(config));
}

int billing(const args& a) {
  // The orders applied so far (this process's memory of its own effects).
  auto applied = std::make_shared<std::set<std::string>>();
  {
    std::ifstream in{a.file};
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields{line};
      std::string consumer, producer, seq;
      if (fields >> consumer >> producer >> seq)
        applied->insert(producer + " " + seq);
    }
  }
  auto effects = std::make_shared<line_file>(a.file);
  auto again = std::make_shared<line_file>(a.file + ".again");
  auto mu = std::make_shared<std::mutex>();
  if (!effects->ok() || !again->ok()) {
    std::cerr << "cannot open " << a.file << "\n";
    return 2;
  }
  auto started = start(a);
  if (!started) {
    std::cerr << "billing: " << started.error().to_string() << "\n";
    return 1;
  }
  auto consumers = a.names.empty() ? std::vector<std::string>{"billing"}
                                   : a.names;
  for (const auto& name : consumers) {
    auto spawned = started->spawn(name, [=](courier::context&) {
      return courier::behavior{[=](const durable_orders::v1::Order& order) {
        auto key = order.producer() + " " + std::to_string(order.seq());
        std::lock_guard guard{*mu};
        if (!applied->insert(key).second) {
          again->write(name + " " + key);
          return;
        }
        effects->write(name + " " + key);
      }};
    });
    if (!spawned) {
      std::cerr << "billing: " << spawned.error().to_string() << "\n";
      return 1;
    }
  }
  std::cout << "ready" << std::endl;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  int signal = 0;
  sigwait(&set, &signal);
  return 0;
}

int producer(const args& a) {
  if (a.names.empty() || a.id.empty()) {
    std::cerr << "producer: --to and --id are required\n";
    return 2;
  }
  line_file acked{a.file};
  if (!acked.ok()) {
    std::cerr << "cannot open " << a.file << "\n";
    return 2;
  }
  auto started = start(a);
  if (!started) {
    std::cerr << "producer: " << started.error().to_string() << "\n";
    return 1;
  }
  auto& node = *started;
  std::cout << "ready" << std::endl;
  for (long seq = a.from; seq < a.count; ++seq) {
    const auto& target = a.names[static_cast<std::size_t>(seq)
                                 % a.names.size()];
    durable_orders::v1::Order order;
    order.set_producer(a.id);
    order.set_seq(seq);
    order.set_cents(100 + seq);
    auto posted = node.post_durable(target, order);
    if (!posted) {
      // Full (a quota): wait and try the same order again.
      if (posted.code() == courier::errc::resource_exhausted) {
        std::this_thread::sleep_for(10ms);
        --seq;
        continue;
      }
      std::cerr << "producer: " << posted.error().to_string() << "\n";
      return 1;
    }
    acked.write(target + " " + a.id + " " + std::to_string(seq));
  }
  // Store and forward: the orders leave this node's disk when the
  // receiving node has them on its own.
  courier::v1::DurableAdminRequest ask;
  ask.set_op(courier::v1::DurableAdminRequest::OP_QUEUES);
  for (;;) {
    auto reply = node.send("courier.durable." + a.name, ask, 5s);
    if (reply) {
      std::uint64_t left = 0;
      for (const auto& q :
           dynamic_cast<const courier::v1::DurableAdminReply&>(**reply)
             .queues())
        left += q.depth();
      if (left == 0)
        break;
    }
    std::this_thread::sleep_for(20ms);
  }
  std::cout << "drained" << std::endl;
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  args a;
  if (!parse(argc, argv, a)) {
    std::cerr << "usage: orders_node billing|producer --dir DIR --store STORE "
                 "--name NODE (--applied|--acked) FILE ...\n";
    return 2;
  }
  if (a.role == "billing")
    return billing(a);
  if (a.role == "producer")
    return producer(a);
  std::cerr << "unknown role " << a.role << "\n";
  return 2;
}

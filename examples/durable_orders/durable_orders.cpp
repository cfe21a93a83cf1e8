// Durable orders: this process posts durable orders to `billing`, an actor
// of another process (orders_node billing), and kills that process with
// SIGKILL a few times while it does. A few rush orders, posted while
// billing is down, may wait only 150 ms: they expire into this node's dead
// letters, and the auditor hears why. At the end: sent, handled (each
// order once), handled again (zero), dead letters and their reasons.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "courier/courier.hpp"
#include "courier/durable/delivery.hpp"
#include "courier/pipe/pipe_transport.hpp"
#include "courier/shm/shm_transport.hpp"
#include "courier/v1/durable.pb.h"
#include "orders.pb.h"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

/// The billing process: started, waited for ("ready"), killed.
class billing_process {
public:
  billing_process(std::string dir, std::string store, std::string applied)
    : dir_(std::move(dir)), store_(std::move(store)),
      applied_(std::move(applied)) {}

  ~billing_process() {
    kill();
  }

  bool start() {
    int out[2];
    if (::pipe(out) != 0)
      return false;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::close(out[0]);
      ::close(out[1]);
      ::execl(ORDERS_NODE, ORDERS_NODE, "billing", "--dir", dir_.c_str(),
              "--store", store_.c_str(), "--name", "billing-node",
              "--applied", applied_.c_str(), nullptr);
      ::_exit(127);
    }
    ::close(out[1]);
    // Waits for its "ready" line (a blocking read: the child says it or
    // exits, which closes the pipe).
    std::string seen;
    char c;
    while (seen.find("ready") == std::string::npos && ::read(out[0], &c, 1) == 1)
      seen += c;
    ::close(out[0]);
    return seen.find("ready") != std::string::npos;
  }

  void kill() {
    if (pid_ <= 0)
      return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

private:
  std::string dir_, store_, applied_;
  pid_t pid_ = -1;
};

/// Orders applied by billing, from its file: (distinct, lines).
std::pair<std::size_t, std::size_t> applied(const std::string& path) {
  std::ifstream in{path};
  std::set<std::string> keys;
  std::size_t lines = 0;
  for (std::string line; std::getline(in, line); ++lines)
    keys.insert(line);
  return {keys.size(), lines};
}

std::size_t line_count(const std::string& path) {
  std::ifstream in{path};
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);)
    ++n;
  return n;
}

} // namespace

int main() {
  auto root = fs::temp_directory_path()
              / ("durable-orders-" + std::to_string(::getpid()));
  fs::create_directories(root / "dir");
  auto applied_file = (root / "applied").string();
  int status = 1;
  {
    billing_process billing{(root / "dir").string(),
                            (root / "billing-store").string(), applied_file};
    if (!billing.start()) {
      std::cerr << "billing did not start\n";
      return 1;
    }
    courier::node_config config;
    config.name = "shop";
    config.directory = (root / "dir").string();
    config.transports = {{"pipe", courier::pipe::factory()},
                         {"shm", courier::shm::factory()}};
    courier::durable::delivery_options durable;
    durable.store.directory = (root / "shop-store").string();
    durable.retry_max = 200ms;
    config.durable = courier::durable::delivery(durable);
    auto shop = courier::node::start(std::move(config));
    if (!shop) {
      std::cerr << shop.error().to_string() << "\n";
      return 1;
    }
    // The administration queue: what became of the orders that asked.
    std::mutex mu;
    std::map<std::string, int> dead_reasons;
    std::atomic<int> dead{0};
    (void)shop->spawn("auditor", [&](courier::context&) {
      return courier::behavior{[&](const courier::v1::DurableNotice& n) {
        if (n.kind() != courier::v1::DurableNotice::KIND_DEAD_LETTER)
          return;
        std::lock_guard guard{mu};
        ++dead_reasons[n.reason() + " (on node " + n.node() + ")"];
        ++dead;
      }};
    });
    constexpr int orders = 600;
    constexpr int rush = 5;
    int sent = 0;
    for (int seq = 0; seq < orders; ++seq) {
      durable_orders::v1::Order order;
      order.set_producer("shop");
      order.set_seq(seq);
      order.set_cents(1000 + seq);
      if (!shop->post_durable("billing", order)) {
        std::cerr << "a durable post failed\n";
        return 1;
      }
      ++sent;
      if (seq % 150 == 75) {
        billing.kill(); // SIGKILL, whatever it was doing
        std::cout << "billing killed after order " << seq << std::endl;
        if (seq == 75)
          for (int r = 0; r < rush; ++r) {
            courier::post_options o;
            o.time_to_be_received = 150ms;
            o.ack_to = "auditor";
            order.set_seq(orders + r);
            if (shop->post_durable("billing", order, o))
              ++sent;
          }
        std::this_thread::sleep_for(400ms);
        if (!billing.start()) {
          std::cerr << "billing did not restart\n";
          return 1;
        }
        std::cout << "billing restarted" << std::endl;
      }
      std::this_thread::sleep_for(1ms);
    }
    auto deadline = std::chrono::steady_clock::now() + 60s;
    while (applied(applied_file).first + dead.load()
             < static_cast<std::size_t>(sent)
           && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
    auto [handled, lines] = applied(applied_file);
    auto again = line_count(applied_file + ".again");
    std::cout << "\nsent " << sent << ", handled " << handled
              << ", duplicated " << lines - handled << ", handed again after "
              << "a crash (recognised by its key, not applied) " << again
              << ", dead letters " << dead.load() << "\n";
    {
      std::lock_guard guard{mu};
      for (const auto& [reason, n] : dead_reasons)
        std::cout << "  " << n << " dead: " << reason << "\n";
    }
    auto lost = static_cast<long>(sent) - static_cast<long>(handled)
                - dead.load();
    std::cout << "lost " << lost << std::endl;
    status = lost == 0 && lines == handled ? 0 : 1;
  }
  std::error_code ignored;
  fs::remove_all(root, ignored);
  return status;
}

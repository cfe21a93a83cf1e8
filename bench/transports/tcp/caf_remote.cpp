#include "caf_remote.hpp"

#include <chrono>
#include <cstdlib>
#include <future>
#include <iostream>
#include <utility>

#include <caf/all.hpp>
#include <caf/io/all.hpp>

namespace courier::bench {

namespace {

using clock_type = std::chrono::steady_clock;
using count_atom = caf::atom_constant<caf::atom("count")>;

caf::behavior echo_actor(caf::event_based_actor*) {
  return {[](const std::string& payload) { return payload; }};
}

caf::behavior sink_actor(caf::event_based_actor*) {
  auto count = std::make_shared<std::int64_t>(0);
  return {
    [count](const std::string&) { ++*count; },
    [count](count_atom) { return std::exchange(*count, std::int64_t{0}); },
  };
}

struct driver_state {
  caf::actor echo;
  caf::message payload;
  int rounds = 0;
  std::vector<double> rtts;
  clock_type::time_point sent;
  std::promise<std::vector<double>> done;
};

/// The next request of a round-trip driver, from its continuation.
void next_round(caf::event_based_actor* self,
                const std::shared_ptr<driver_state>& st) {
  if (static_cast<int>(st->rtts.size()) == st->rounds) {
    st->done.set_value(std::move(st->rtts));
    self->quit();
    return;
  }
  st->sent = clock_type::now();
  self->request(st->echo, caf::infinite, st->payload)
    .then(
      [self, st](const std::string&) {
        st->rtts.push_back(
          std::chrono::duration<double, std::nano>(clock_type::now() - st->sent)
            .count());
        next_round(self, st);
      },
      [](const caf::error& e) {
        std::cerr << "CAF request failed: " << caf::to_string(e) << "\n";
        std::exit(1);
      });
}

} // namespace

int caf_serve(const std::string& host) {
  caf::actor_system_config cfg;
  cfg.load<caf::io::middleman>();
  caf::actor_system sys{cfg};
  auto echo = sys.spawn(echo_actor);
  auto sink = sys.spawn(sink_actor);
  auto echo_port = sys.middleman().publish(echo, 0, host.c_str());
  auto sink_port = sys.middleman().publish(sink, 0, host.c_str());
  if (!echo_port || !sink_port) {
    std::cerr << "CAF cannot publish on " << host << "\n";
    return 1;
  }
  std::cout << *echo_port << " " << *sink_port << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  // The parent is gone; CAF's orderly shutdown of its links adds nothing.
  std::_Exit(0);
}

struct caf_client::state {
  state() : sys(cfg.load<caf::io::middleman>()) {}

  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::actor echo;
  caf::actor sink;
};

caf_client::caf_client(const std::string& host, int echo_port, int sink_port)
  : state_(std::make_unique<state>()) {
  auto& mm = state_->sys.middleman();
  auto echo = mm.remote_actor(host, static_cast<std::uint16_t>(echo_port));
  auto sink = mm.remote_actor(host, static_cast<std::uint16_t>(sink_port));
  if (!echo || !sink) {
    std::cerr << "CAF remote_actor failed: "
              << caf::to_string(echo ? sink.error() : echo.error()) << "\n";
    return;
  }
  state_->echo = std::move(*echo);
  state_->sink = std::move(*sink);
}

caf_client::~caf_client() {
  state_->echo = nullptr;
  state_->sink = nullptr;
}

bool caf_client::ok() const {
  return state_->echo != nullptr && state_->sink != nullptr;
}

std::vector<double> caf_client::rtt(std::size_t size, int rounds) {
  auto st = std::make_shared<driver_state>();
  st->echo = state_->echo;
  st->payload = caf::make_message(std::string(size, 'x'));
  st->rounds = rounds;
  auto result = st->done.get_future();
  state_->sys.spawn([st](caf::event_based_actor* self) {
    next_round(self, st);
    return caf::behavior{[](const caf::message&) {}};
  });
  return result.get();
}

double caf_client::oneway(std::size_t size, int count) {
  // One message, sent again and again: no copy per send in this process.
  auto msg = caf::make_message(std::string(size, 'x'));
  auto start = clock_type::now();
  for (int i = 0; i < count; ++i)
    caf::anon_send(state_->sink, msg);
  std::int64_t got = -1;
  caf::scoped_actor self{state_->sys};
  self->request(state_->sink, caf::infinite, count_atom::value)
    .receive([&](std::int64_t n) { got = n; },
             [&](const caf::error& e) {
               std::cerr << "CAF count failed: " << caf::to_string(e) << "\n";
             });
  auto seconds
    = std::chrono::duration<double>(clock_type::now() - start).count();
  if (got != count) {
    std::cerr << "the CAF sink got " << got << " of " << count << "\n";
    return 0;
  }
  return count / seconds;
}

} // namespace courier::bench

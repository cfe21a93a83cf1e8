// The process the crash tests kill: a producer and a consumer on one
// durable store, reporting each step on stdout as it happens, so the
// parent knows what was acknowledged before the SIGKILL or crash point.
//
//   courier_durable_crash_child DIR FIRST LAST [CRASH_POINT[:N]]
//
// The producer appends sequences FIRST..LAST (producer 1, epoch 1) one at
// a time, waiting for each acknowledgement: "A <seq> <duplicate 0|1>".
// The consumer claims one at a time: "H <seq>" when its handler runs,
// "C <seq>" once the removal is durable; it compacts every 40 removals.
// When all is sent and handled: "D", exit 0. A crash point exits 86.

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <unistd.h>

#include "courier/durable/crash_point.hpp"
#include "courier/durable/store.hpp"

namespace {

void say(const std::string& line) {
  auto text = line + "\n";
  // One write per line: the parent sees whole lines, even after a kill.
  (void)!::write(STDOUT_FILENO, text.data(), text.size());
}

} // namespace

int main(int argc, char** argv) {
  using namespace courier::durable;
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s DIR FIRST LAST [CRASH_POINT[:N]]\n",
                 argv[0]);
    return 2;
  }
  if (argc > 4) {
    ::setenv("COURIER_CRASH_AT", argv[4], 1);
    reload_crash_point();
  }
  std::uint64_t first = std::strtoull(argv[2], nullptr, 10);
  std::uint64_t last = std::strtoull(argv[3], nullptr, 10);
  store_options o;
  o.directory = argv[1];
  o.segment_bytes = 8192;
  o.compact_automatically = false;
  auto opened = store::open(o);
  if (!opened) {
    std::fprintf(stderr, "open: %s\n", opened.error().to_string().c_str());
    return 3;
  }
  auto& s = **opened;
  std::atomic<bool> sent{false};
  std::thread producer{[&] {
    for (auto seq = first; seq <= last; ++seq) {
      message_options m;
      m.producer_id = 1;
      m.producer_epoch = 1;
      m.sequence = seq;
      auto r = s.append_and_wait("orders", std::to_string(seq), m);
      if (!r) {
        std::fprintf(stderr, "append: %s\n", r.error().to_string().c_str());
        ::_exit(4);
      }
      say("A " + std::to_string(seq) + " " + (r->duplicate ? "1" : "0"));
    }
    sent = true;
  }};
  int removed = 0;
  for (;;) {
    auto got = s.claim("orders", 1);
    if (!got) {
      std::fprintf(stderr, "claim: %s\n", got.error().to_string().c_str());
      ::_exit(5);
    }
    if (got->empty()) {
      if (sent && s.peek("orders", 1).empty())
        break;
      std::this_thread::sleep_for(std::chrono::microseconds{200});
      continue;
    }
    auto& m = got->front();
    say("H " + m.payload);
    if (auto ok = s.complete_and_wait(m.id); !ok) {
      std::fprintf(stderr, "complete: %s\n", ok.error().to_string().c_str());
      ::_exit(6);
    }
    say("C " + m.payload);
    if (++removed % 40 == 0)
      if (auto ok = s.compact(); !ok) {
        std::fprintf(stderr, "compact: %s\n", ok.error().to_string().c_str());
        ::_exit(7);
      }
  }
  producer.join();
  say("D");
  return 0;
}

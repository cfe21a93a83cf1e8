// The order desk: a small shop run by four named actors in one node.
//
//   orders  takes orders; asks stock to reserve the goods, answers later
//   stock   keeps the inventory; refuses orders it cannot fill
//   ledger  books every order; supervised: when it crashes it comes back
//   van     the delivery van; while out on a round it answers nobody
//
// main() plays the customer and the shop manager, using every verb: find,
// register_type, send, post, request (inside orders), monitor, broadcast.

#include <iostream>
#include <map>
#include <mutex>
#include <condition_variable>
#include <thread>

#include "courier/courier.hpp"
#include "shop/shop.pb.h"

using namespace std::chrono_literals;
using courier::behavior;
using courier::context;
using courier::errc;
using courier::error;
using courier::expected;

namespace {

behavior stock(context&) {
  auto shelves = std::make_shared<std::map<std::string, int>>(
    std::map<std::string, int>{{"widget", 10}, {"gadget", 3}});
  return {[shelves](const shop::Reserve& r) -> expected<shop::Reserved> {
    auto& left = (*shelves)[r.item()];
    if (r.quantity() > left)
      return error{errc::resource_exhausted,
                   "only " + std::to_string(left) + " " + r.item() + "s left"};
    left -= r.quantity();
    shop::Reserved out;
    out.set_left(left);
    return out;
  }};
}

behavior orders(context& ctx) {
  auto next_id = std::make_shared<std::int64_t>(1);
  return {
    // Asks stock without blocking, then answers its own caller.
    [&ctx, next_id](const shop::PlaceOrder& order) {
      auto reply = std::make_shared<courier::responder>(ctx.take_reply());
      shop::Reserve reserve;
      reserve.set_item(order.item());
      reserve.set_quantity(order.quantity());
      ctx.request("stock", reserve, 200ms)
        .then(
          [&ctx, reply, order, next_id](const shop::Reserved& reserved) {
            shop::OrderPlaced placed;
            placed.set_order_id((*next_id)++);
            placed.set_item(order.item());
            placed.set_quantity(order.quantity());
            placed.set_left_in_stock(reserved.left());
            shop::LedgerEntry entry;
            entry.set_order_id(placed.order_id());
            entry.set_cents(order.quantity() * 250);
            if (auto booked = ctx.post("ledger", entry); !booked)
              std::cout << "  (orders) could not book: "
                        << booked.error().to_string() << "\n";
            reply->deliver(placed);
          },
          [reply](const error& err) { reply->deliver(err); });
    },
    [](const shop::HealthCheck&) {
      shop::Healthy out;
      out.set_note("taking orders");
      return out;
    },
  };
}

behavior ledger(context& ctx) {
  // Fresh books for every incarnation: a restart starts from zero.
  auto total = std::make_shared<shop::LedgerTotal>();
  return {
    [&ctx, total](const shop::LedgerEntry& e) {
      if (e.cents() < 0)
        ctx.fail("a negative entry corrupted the books");
      total->set_entries(total->entries() + 1);
      total->set_cents(total->cents() + e.cents());
    },
    [total](const shop::LedgerQuery&) { return *total; },
  };
}

behavior van(context& ctx) {
  auto waiting = std::make_shared<std::vector<courier::responder>>();
  // Out on a round: takes the question, answers when back (never, here).
  return {[&ctx, waiting](const shop::HealthCheck&) {
    waiting->push_back(ctx.take_reply());
  }};
}

void show(const char* what, const expected<std::shared_ptr<const shop::OrderPlaced>>& r) {
  std::cout << what;
  if (r)
    std::cout << " -> order #" << (*r)->order_id() << " placed ("
              << (*r)->quantity() << " x " << (*r)->item() << ", "
              << (*r)->left_in_stock() << " left)\n";
  else
    std::cout << " -> refused: " << r.error().to_string() << "\n";
}

/// Waits for the first down notice of a watched actor.
struct down_latch {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<courier::down_notice> notice;

  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock guard{mu};
    return cv.wait_for(guard, timeout, [&] { return notice.has_value(); });
  }
};

} // namespace

int main() {
  courier::node_config config;
  config.name = "order-desk";
  config.log = [](courier::log_level level, std::string_view line) {
    if (level >= courier::log_level::info)
      std::cout << "  [runtime] " << line << "\n";
  };
  auto started = courier::node::start(config);
  if (!started) {
    std::cerr << "cannot start: " << started.error().to_string() << "\n";
    return 1;
  }
  auto& desk = *started;
  std::cout << "Node '" << desk.name() << "' is open.\n\n";

  courier::spawn_options supervised;
  supervised.restart = courier::restart_policy{};
  supervised.restart->max_restarts = 3;
  for (auto [name, factory, options] :
       {std::tuple{"stock", courier::actor_factory{stock}, courier::spawn_options{}},
        std::tuple{"orders", courier::actor_factory{orders}, courier::spawn_options{}},
        std::tuple{"ledger", courier::actor_factory{ledger}, supervised},
        std::tuple{"van", courier::actor_factory{van}, courier::spawn_options{}}}) {
    if (auto spawned = desk.spawn(name, factory, options); !spawned) {
      std::cerr << "cannot spawn " << name << ": "
                << spawned.error().to_string() << "\n";
      return 1;
    }
  }
  std::cout << "1. Actors on duty: ";
  for (auto& name : desk.names())
    std::cout << name << " ";
  std::cout << "\n   find(\"orders\"): "
            << (desk.find("orders") ? "found" : "missing")
            << "; find(\"refunds\"): " << desk.find("refunds").error().to_string()
            << "\n";
  auto second = desk.spawn("orders", orders);
  std::cout << "   a second 'orders' is refused: " << second.error().to_string()
            << "\n\n";

  std::cout << "2. Message types by name:\n   register_type(\"shop.PlaceOrder\"): "
            << (desk.register_type("shop.PlaceOrder") ? "known" : "unknown")
            << "\n   register_type(\"shop.Refund\"): "
            << desk.register_type("shop.Refund").error().to_string() << "\n\n";

  std::cout << "3. A customer calls (send, 500 ms deadline):\n";
  shop::PlaceOrder order;
  order.set_item("widget");
  order.set_quantity(2);
  show("   2 widgets", desk.send<shop::OrderPlaced>("orders", order, 500ms));
  order.set_quantity(100);
  show("   100 widgets", desk.send<shop::OrderPlaced>("orders", order, 500ms));
  order.set_item("gadget");
  order.set_quantity(3);
  show("   3 gadgets", desk.send<shop::OrderPlaced>("orders", order, 500ms));
  auto stray = desk.send("refunds", order, 500ms);
  std::cout << "   asking 'refunds', which nobody runs: "
            << stray.error().to_string() << "\n\n";

  auto books = desk.send<shop::LedgerTotal>("ledger", shop::LedgerQuery{}, 500ms);
  std::cout << "4. The ledger has " << (books ? (*books)->entries() : -1)
            << " entries.\n   The manager watches it and posts a bad entry...\n";
  auto latch = std::make_shared<down_latch>();
  if (auto watched = desk.monitor("ledger", [latch](const courier::down_notice& d) {
        std::lock_guard guard{latch->mu};
        latch->notice = d;
        latch->cv.notify_all();
      });
      !watched) {
    std::cerr << "cannot monitor: " << watched.error().to_string() << "\n";
    return 1;
  }
  shop::LedgerEntry bad;
  bad.set_cents(-500);
  if (auto posted = desk.post("ledger", bad); !posted)
    std::cerr << "post failed: " << posted.error().to_string() << "\n";
  if (!latch->wait(5s)) {
    std::cerr << "the ledger never reported down\n";
    return 1;
  }
  std::cout << "   monitor: 'ledger' went down (" << to_string(latch->notice->reason)
            << ": " << latch->notice->detail << ")"
            << (latch->notice->restarting ? ", its supervisor restarts it" : "")
            << "\n";
  // Ask until the restarted ledger answers: while its supervisor waits out
  // the backoff, the name stays taken and calls fail with `unavailable`.
  auto until = std::chrono::steady_clock::now() + 5s;
  int refused = 0;
  for (;;) {
    books = desk.send<shop::LedgerTotal>("ledger", shop::LedgerQuery{}, 500ms);
    if (books || books.code() != errc::unavailable
        || std::chrono::steady_clock::now() > until)
      break;
    ++refused;
    std::this_thread::sleep_for(5ms); // a poll interval
  }
  std::cout << "   while it restarted, " << refused
            << (refused == 1 ? " call was" : " calls were")
            << " refused with 'unavailable'\n";
  if (books)
    std::cout << "   'ledger' is back under its name, with fresh books: "
              << (*books)->entries() << " entries\n\n";

  std::cout << "5. Roll call (broadcast HealthCheck to '*', 300 ms):\n";
  auto roll = desk.broadcast("*", shop::HealthCheck{}, 300ms);
  for (auto& r : roll.replied)
    std::cout << "   " << r.name << ": replied ("
              << static_cast<const shop::Healthy&>(*r.payload).note() << ")\n";
  for (auto& f : roll.failed)
    std::cout << "   " << f.name << ": failed (" << f.reason.to_string() << ")\n";
  for (auto& t : roll.timed_out)
    std::cout << "   " << t << ": no answer in time\n";
  for (auto& d : roll.dead)
    std::cout << "   " << d << ": down\n";

  std::cout << "\n6. Messages that reached nobody (dead letters): "
            << desk.dead_letters() << "\n";
  for (auto reason : {courier::dead_letter_reason::no_such_name,
                      courier::dead_letter_reason::unhandled_type,
                      courier::dead_letter_reason::restarting,
                      courier::dead_letter_reason::actor_stopped,
                      courier::dead_letter_reason::expired})
    if (auto count = desk.dead_letters(reason); count > 0)
      std::cout << "   " << to_string(reason) << ": " << count << "\n";
  std::cout << "\nClosing the desk.\n";
  return 0;
}

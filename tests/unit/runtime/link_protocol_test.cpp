// The link protocol (hello, monitor/down, demonitor, name release, the
// handshake's limits) between two link proxies over an in-memory link
// pair, each proxy with a test host in place of a node: what the protocol
// asks of its node (link_host) is all it gets.

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "frame.hpp"
#include "link_host.hpp"
#include "remote.hpp"
#include "test_support.hpp"

using namespace courier;
using namespace courier::detail;
using namespace courier::testing;
using namespace std::chrono_literals;

namespace {

/// One direction of an in-memory link: frames written on one side reach
/// the other side's events on a thread of its own, one at a time, in order.
class memory_wire {
public:
  memory_wire() : thread_([this] { run(); }) {
  }

  ~memory_wire() {
    {
      std::lock_guard guard{mu_};
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  void start(std::shared_ptr<link_events> events) {
    std::lock_guard guard{mu_};
    events_ = std::move(events);
    cv_.notify_all();
  }

  /// Queues a frame, or (empty) the end of the stream with `why`.
  void push(std::optional<std::string> frame,
            error why = error{errc::unavailable, "closed"}) {
    std::lock_guard guard{mu_};
    queue_.push_back({std::move(frame), std::move(why)});
    cv_.notify_all();
  }

  std::size_t limit = hello_frame_limit; // what the reading side accepts

private:
  struct item {
    std::optional<std::string> frame;
    error why{errc::unavailable, "closed"};
  };

  void run() {
    std::unique_lock guard{mu_};
    for (;;) {
      cv_.wait(guard, [&] { return stop_ || (events_ && !queue_.empty()); });
      if (stop_)
        return;
      auto next = std::move(queue_.front());
      queue_.pop_front();
      auto events = events_;
      if (closed_)
        continue;
      if (next.frame && next.frame->size() > limit) {
        next = item{std::nullopt,
                    error{errc::resource_exhausted, "a frame over the limit"}};
      }
      if (!next.frame)
        closed_ = true;
      guard.unlock();
      if (next.frame)
        events->on_frame(std::move(*next.frame));
      else
        events->on_closed(next.why);
      guard.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<item> queue_;
  std::shared_ptr<link_events> events_;
  bool closed_ = false;
  bool stop_ = false;
  std::thread thread_;
};

/// One end of the pair: writes go out on `out`, reads come in on `in`.
class memory_link final : public courier::link {
public:
  memory_link(std::shared_ptr<memory_wire> in, std::shared_ptr<memory_wire> out)
    : in_(std::move(in)), out_(std::move(out)) {
  }

  ~memory_link() override {
    close();
  }

  void start(std::shared_ptr<link_events> events) override {
    in_->start(std::move(events));
  }

  expected<void> write(frame out) override {
    std::lock_guard guard{mu_};
    if (closed_)
      return error{errc::unavailable, "closed"};
    out_->push(std::move(out).flatten());
    return {};
  }

  void limit_frames(std::size_t max_frame) override {
    in_->limit = max_frame;
  }

  void close() override {
    std::lock_guard guard{mu_};
    if (std::exchange(closed_, true))
      return;
    out_->push(std::nullopt, error{errc::unavailable, "the peer closed"});
    in_->push(std::nullopt, error{errc::cancelled, "closed locally"});
  }

  const peer_identity& peer() const noexcept override {
    return peer_;
  }

private:
  std::shared_ptr<memory_wire> in_;
  std::shared_ptr<memory_wire> out_;
  std::mutex mu_;
  bool closed_ = false;
  peer_identity peer_;
};

/// A node as far as a link can tell: it records what the protocol asks
/// of it.
class test_host final : public link_host {
public:
  explicit test_host(std::string name) : name_(std::move(name)) {
    config_.name = name_;
    config_.handshake_timeout = 300ms;
    caf_config_.set("scheduler.max-threads", 2);
    system_.emplace(caf_config_);
  }

  ~test_host() override {
    system_->await_all_actors_done();
  }

  const std::string& name() const noexcept override {
    return name_;
  }

  const node_config& config() const noexcept override {
    return config_;
  }

  caf::actor_system& system() noexcept override {
    return *system_;
  }

  const std::shared_ptr<bulk_pool>& bulks() noexcept override {
    return bulks_;
  }

  v1::NodeRecord record() const override {
    v1::NodeRecord out;
    out.set_name(name_);
    out.set_pid(1);
    out.add_type_files(std::string(100'000, 'x')); // never in a hello
    return out;
  }

  void log(log_level, std::string_view line) const override {
    logged.push(std::string{line});
  }

  expected<route> resolve_local(std::string_view name) override {
    return error{errc::not_found, "no actor named " + quoted(name)};
  }

  expected<const google::protobuf::Message*>
  prototype(std::string_view type) override {
    return error{errc::not_found, "unknown type " + std::string{type}};
  }

  std::shared_ptr<name_slot> remote_sender(std::string_view,
                                           const std::string&) override {
    return nullptr;
  }

  letter make_letter(letter_kind, message, const route&,
                     std::shared_ptr<name_slot>, deadline) override {
    FAIL("no letter is made in these tests");
    return letter{};
  }

  void report_dead_letter(dead_letter_reason, std::string_view target,
                          const message&, const name_slot*) override {
    dead.push(std::string{target});
  }

  expected<monitor_handle>
  monitor(destination name, std::function<void(const down_notice&)> on_down,
          caf::actor_addr) override {
    if (name.name() == "nobody")
      return error{errc::not_found, "no actor named 'nobody'"};
    std::lock_guard guard{mu_};
    watchers_.push_back(std::move(on_down));
    watched.push(std::string{name.name()});
    return monitor_handle{};
  }

  void demonitor(const monitor_handle&) override {
    demonitored.push(true);
  }

  void report_refusal(const link_access& who, std::string_view,
                      verbs verb, std::string_view target,
                      const trace_context&) override {
    refused.push(who.principal() + " " + std::string{verb_name(verb)} + " "
                 + std::string{target});
  }

  std::vector<std::string> visible_names(std::string_view pattern,
                                         const link_access& who) override {
    std::vector<std::string> out;
    for (const auto& name : held)
      if (glob_match(pattern, name) && who.allows(name, verbs::find))
        out.push_back(name);
    return out;
  }

  expected<void> vouches_for(const peer_identity&,
                             const v1::NodeRecord& claimed) const override {
    if (claimed.name() == impostor)
      return error{errc::permission_denied, "not who it claims to be"};
    return {};
  }

  void adopt_link(const std::string& node, caf::actor,
                  std::shared_ptr<link_info>) override {
    adopted.push(node);
  }

  void learned_peer(const v1::NodeRecord& record) override {
    learned.push(record.name());
  }

  void end_half_open() noexcept override {
  }

  void drop_link(const std::string& node, const caf::actor&) override {
    dropped.push(node);
  }

  void forget_remote_name(const std::string& actor,
                          const std::string& node) override {
    forgotten.push(actor + "@" + node);
  }

  expected<caf::actor> open_side_link(const std::string&,
                                      const std::string& tier) override {
    return error{errc::unavailable, "no tier " + tier + " here"};
  }

  /// Stops the watched actor: every monitor taken so far sees `notice`.
  void stop_watched(const down_notice& notice) {
    std::vector<std::function<void(const down_notice&)>> fns;
    {
      std::lock_guard guard{mu_};
      fns.swap(watchers_);
    }
    for (auto& fn : fns)
      fn(notice);
  }

  std::string impostor;
  /// What the peer may do here; set before the link starts.
  std::shared_ptr<const link_access> access = link_access::everything("uid:0");
  /// The names this host holds, for NamesQuery.
  std::vector<std::string> held;
  probe<std::string> refused;
  mutable probe<std::string> logged;
  probe<std::string> dead;
  probe<std::string> watched;
  probe<bool> demonitored;
  probe<std::string> adopted;
  probe<std::string> learned; // names from handshake answers
  probe<std::string> dropped;
  probe<std::string> forgotten;

private:
  std::string name_;
  node_config config_;
  std::shared_ptr<bulk_pool> bulks_
    = std::make_shared<bulk_pool>(std::size_t{32} << 20);
  caf::actor_system_config caf_config_;
  std::optional<caf::actor_system> system_;
  std::mutex mu_;
  std::vector<std::function<void(const down_notice&)>> watchers_;
};

/// Two hosts and a link between them: `a` connected to `b`.
struct linked_pair {
  /// `b_access`: what `a` may do at `b` (everything by default).
  explicit linked_pair(std::shared_ptr<const link_access> b_access = nullptr) {
    if (b_access)
      b.access = std::move(b_access);
    auto ab = std::make_shared<memory_wire>();
    auto ba = std::make_shared<memory_wire>();
    a_info->peer = "b";
    a_proxy = spawn_link_proxy(a, std::make_unique<memory_link>(ba, ab), a_info,
                               b.record(), a.access);
    b_proxy = spawn_link_proxy(b, std::make_unique<memory_link>(ab, ba), b_info,
                               std::nullopt, b.access);
  }

  ~linked_pair() {
    drain_link(a_proxy);
    drain_link(b_proxy);
  }

  test_host a{"a"};
  test_host b{"b"};
  std::shared_ptr<link_info> a_info = std::make_shared<link_info>();
  std::shared_ptr<link_info> b_info = std::make_shared<link_info>();
  caf::actor a_proxy;
  caf::actor b_proxy;
};

/// Raw frames to one proxy that waits for a hello, as a hostile peer.
struct raw_peer_of {
  raw_peer_of() {
    auto in = std::make_shared<memory_wire>();
    to_proxy = std::make_shared<memory_wire>();
    proxy = spawn_link_proxy(host, std::make_unique<memory_link>(to_proxy, in),
                             info, std::nullopt, host.access);
    in->start(replies);
  }

  ~raw_peer_of() {
    drain_link(proxy);
  }

  struct recorder final : link_events {
    void on_frame(std::string frame) override {
      frames.push(std::move(frame));
    }
    void on_closed(const error& why) override {
      closed.push(why);
    }
    probe<std::string> frames;
    probe<error> closed;
  };

  test_host host{"b"};
  std::shared_ptr<link_info> info = std::make_shared<link_info>();
  std::shared_ptr<memory_wire> to_proxy;
  caf::actor proxy;
  std::shared_ptr<recorder> replies = std::make_shared<recorder>();
};

} // namespace

TEST_CASE("the hello makes an accepted link the route to its peer, without "
          "the peer's type files",
          "[runtime][link]") {
  linked_pair pair;
  REQUIRE(pair.b.adopted.wait_for_count(1));
  CHECK(pair.b.adopted.items().front() == "a");
  CHECK(pair.b_info->peer == "a");
  // Nothing was refused or closed: the hello (without its 100 kB of type
  // files) fitted the hello-sized frame limit.
  CHECK(pair.a.dropped.items().empty());
  CHECK(pair.b.dropped.items().empty());
}

TEST_CASE("a hello the transport does not vouch for is refused, and both "
          "sides drop the link",
          "[runtime][link][security]") {
  test_host a{"a"};
  test_host b{"b"};
  b.impostor = "a";
  auto ab = std::make_shared<memory_wire>();
  auto ba = std::make_shared<memory_wire>();
  auto a_info = std::make_shared<link_info>();
  auto a_proxy = spawn_link_proxy(a, std::make_unique<memory_link>(ba, ab),
                                  a_info, b.record(), a.access);
  auto b_proxy = spawn_link_proxy(b, std::make_unique<memory_link>(ab, ba),
                                  std::make_shared<link_info>(), std::nullopt,
                                  b.access);
  REQUIRE(a.dropped.wait_for_count(1)); // the connector learns of the refusal
  CHECK(b.adopted.items().empty());
  REQUIRE(eventually([&] {
    for (auto& line : a.logged.items())
      if (line.find("refused our link: not who it claims to be")
          != std::string::npos)
        return true;
    return false;
  }));
  drain_link(a_proxy);
  drain_link(b_proxy);
}

TEST_CASE("a monitor across the link gets its peer's down notice once, and "
          "a demonitor reaches the peer",
          "[runtime][link]") {
  linked_pair pair;
  REQUIRE(pair.b.adopted.wait_for_count(1));
  probe<down_notice> downs;
  auto token = std::make_shared<monitor_token>();
  watch_remote(pair.a_proxy, "worker",
               [&](const down_notice& d) { downs.push(d); }, token);
  REQUIRE(pair.b.watched.wait_for_count(1));
  CHECK(pair.b.watched.items().front() == "worker");
  pair.b.stop_watched({"worker", down_reason::failed, "out of coffee", true});
  REQUIRE(downs.wait_for_count(1));
  auto notice = downs.items().front();
  CHECK(notice.name == "worker");
  CHECK(notice.reason == down_reason::failed);
  CHECK(notice.detail == "out of coffee");
  CHECK(notice.restarting);

  SECTION("a monitor of a name nobody holds is answered at once") {
    watch_remote(pair.a_proxy, "nobody",
                 [&](const down_notice& d) { downs.push(d); },
                 std::make_shared<monitor_token>());
    REQUIRE(downs.wait_for_count(2));
    CHECK(downs.items()[1].reason == down_reason::stopped);
  }
  SECTION("a cancelled watch is dropped over there and never fires") {
    auto second = std::make_shared<monitor_token>();
    watch_remote(pair.a_proxy, "worker",
                 [&](const down_notice& d) { downs.push(d); }, second);
    REQUIRE(pair.b.watched.wait_for_count(2));
    second->cancelled = true;
    unwatch_remote(pair.a_proxy, second);
    REQUIRE(pair.b.demonitored.wait_for_count(1));
    pair.b.stop_watched({"worker", down_reason::stopped, "", false});
    // A second round trip of the protocol orders after the notice would.
    announce_release(pair.b_proxy, "flush");
    REQUIRE(pair.a.forgotten.wait_for_count(1));
    CHECK(downs.items().size() == 1);
  }
}

TEST_CASE("a monitor the peer may not take is refused over there, counted "
          "once, and its watcher told why",
          "[runtime][link][security]") {
  probe<down_notice> downs; // outlives the pair: its loss notifies watches
  linked_pair pair{std::make_shared<const link_access>(
    "uid:1000",
    std::vector<access_rule>{{"uid:1000", "worker.*", verbs::monitor}},
    false)};
  REQUIRE(pair.b.adopted.wait_for_count(1));
  watch_remote(pair.a_proxy, "admin",
               [&](const down_notice& d) { downs.push(d); },
               std::make_shared<monitor_token>());
  REQUIRE(downs.wait_for_count(1));
  CHECK(downs.items()[0].reason == down_reason::stopped);
  CHECK(downs.items()[0].detail
        == "permission_denied: uid:1000 may not monitor 'admin' on node 'b'");
  CHECK(pair.b.refused.items() == std::vector<std::string>{"uid:1000 monitor "
                                                           "admin"});
  CHECK(pair.b.watched.items().empty()); // the node was never asked
  watch_remote(pair.a_proxy, "worker.1",
               [&](const down_notice& d) { downs.push(d); },
               std::make_shared<monitor_token>());
  REQUIRE(pair.b.watched.wait_for_count(1));
  CHECK(pair.b.watched.items().front() == "worker.1");
  CHECK(pair.b.refused.items().size() == 1);
}

TEST_CASE("a peer lists only the names it may find over the link",
          "[runtime][link][security]") {
  linked_pair pair{std::make_shared<const link_access>(
    "uid:1000",
    std::vector<access_rule>{{"uid:1000", "billing.*", verbs::find | verbs::post},
                             {"uid:1000", "admin.*", verbs::post}},
    false)};
  pair.b.held = {"admin.x", "billing.a", "billing.b", "orders"};
  // Asked before the hello is done: the query waits for it.
  auto all = names_over(pair.a.system(), pair.a_proxy, "*", deadline{5s});
  REQUIRE(all);
  CHECK(*all == std::vector<std::string>{"billing.a", "billing.b"});
  auto some = names_over(pair.a.system(), pair.a_proxy, "*.b", deadline{5s});
  REQUIRE(some);
  CHECK(*some == std::vector<std::string>{"billing.b"});
  auto none = names_over(pair.a.system(), pair.a_proxy, "admin.x", deadline{5s});
  REQUIRE(none);
  CHECK(none->empty());
  // The other way, b asks a, which lets b see everything.
  pair.a.held = {"admin.x"};
  auto back = names_over(pair.b.system(), pair.b_proxy, "*", deadline{5s});
  REQUIRE(back);
  CHECK(*back == std::vector<std::string>{"admin.x"});
}

TEST_CASE("a released name reaches the peer, and a lost link tells every "
          "watcher node_down",
          "[runtime][link]") {
  linked_pair pair;
  REQUIRE(pair.b.adopted.wait_for_count(1));
  announce_release(pair.b_proxy, "billing");
  REQUIRE(pair.a.forgotten.wait_for_count(1));
  CHECK(pair.a.forgotten.items().front() == "billing@b");
  probe<down_notice> downs;
  watch_remote(pair.a_proxy, "worker",
               [&](const down_notice& d) { downs.push(d); },
               std::make_shared<monitor_token>());
  REQUIRE(pair.b.watched.wait_for_count(1));
  drain_link(pair.b_proxy); // b goes away
  REQUIRE(downs.wait_for_count(1));
  CHECK(downs.items().front().reason == down_reason::node_down);
  REQUIRE(pair.a.dropped.wait_for_count(1));
  CHECK(pair.a.dropped.items().front() == "b");
}

TEST_CASE("before the hello a link takes one hello-sized frame that is a "
          "Hello, and gives up on a silent peer",
          "[runtime][link][security]") {
  SECTION("a frame over the hello limit closes the link unread") {
    raw_peer_of raw;
    raw.to_proxy->push(std::string(hello_frame_limit + 1, 'x'));
    REQUIRE(raw.replies->closed.wait_for_count(1));
    CHECK(raw.host.adopted.items().empty());
  }
  SECTION("a first frame that is not a Hello closes the link") {
    raw_peer_of raw;
    v1::Envelope env;
    env.set_kind(v1::KIND_POST);
    env.set_target("worker");
    raw.to_proxy->push(env.SerializeAsString());
    REQUIRE(raw.replies->closed.wait_for_count(1));
    REQUIRE(eventually([&] { return !raw.host.logged.items().empty(); }));
    CHECK(raw.host.logged.items().front().find("a message before the handshake")
          != std::string::npos);
  }
  SECTION("a peer that never says hello is dropped after the handshake "
          "timeout") {
    raw_peer_of raw;
    auto began = std::chrono::steady_clock::now();
    REQUIRE(raw.replies->closed.wait_for_count(1, 5s));
    CHECK(std::chrono::steady_clock::now() - began >= 250ms);
  }
}

TEST_CASE("a peer that holds more than 65536 monitors through one link "
          "loses it",
          "[runtime][link][security]") {
  linked_pair pair;
  REQUIRE(pair.b.adopted.wait_for_count(1));
  // Each Monitor costs b a monitor entry: past the cap, b closes the link
  // (a protocol error, logged) instead of holding more.
  constexpr std::size_t cap = std::size_t{1} << 16;
  for (std::size_t i = 0; i <= cap; ++i)
    watch_remote(pair.a_proxy, "worker", [](const down_notice&) {},
                 std::make_shared<monitor_token>());
  REQUIRE(pair.b.dropped.wait_for_count(1, 30s));
  CHECK(pair.b.watched.items().size() == cap);
  REQUIRE(eventually([&] {
    for (auto& line : pair.b.logged.items())
      if (line.find("more than 65536 monitors") != std::string::npos)
        return true;
    return false;
  }));
}

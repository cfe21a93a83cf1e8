// Metrics: exact counts across real processes, the Prometheus endpoint
// (parsed here), bounded cardinality, a hostile HTTP client, and
// `courier stats --json` against node::metrics().

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "local_node.hpp"

using namespace courier;
using namespace courier::testing;
using namespace std::chrono_literals;

namespace {

// -- a small HTTP client
// -------------------------------------------------------

/// A TCP connection to "host:port" (blocking), or -1.
int connect_to(const std::string& address, bool nonblocking = false) {
  auto colon = address.rfind(':');
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port
    = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
  ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &at.sin_addr);
  int fd
    = ::socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0)
    return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&at), sizeof at) != 0
      && !(nonblocking && errno == EINPROGRESS)) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

bool send_all(int fd, std::string_view text) {
  while (!text.empty()) {
    auto n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
    if (n <= 0)
      return false;
    text.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

struct http_response {
  int status = 0;
  std::string head;
  std::string body;
};

/// Sends `request` and reads until the server closes.
http_response http_exchange(const std::string& address,
                            const std::string& request) {
  http_response out;
  int fd = connect_to(address);
  REQUIRE(fd >= 0);
  REQUIRE(send_all(fd, request));
  std::string all;
  char buf[65536];
  for (;;) {
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      break;
    all.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  auto end = all.find("\r\n\r\n");
  if (end == std::string::npos)
    return out;
  out.head = all.substr(0, end);
  out.body = all.substr(end + 4);
  if (out.head.rfind("HTTP/1.1 ", 0) == 0)
    out.status = std::stoi(out.head.substr(9, 3));
  return out;
}

http_response get(const std::string& address, const std::string& path) {
  return http_exchange(address, "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
}

// -- a parser of the Prometheus text format (0.0.4) ---------------------------

struct sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct exposition {
  std::map<std::string, std::string> types; // family -> type
  std::map<std::string, std::string> helps;
  std::vector<sample> samples;

  /// The value of the one sample `name` with `labels` among its labels.
  std::optional<double>
  value(const std::string& name,
        const std::map<std::string, std::string>& labels) const {
    std::optional<double> found;
    for (const auto& s : samples) {
      if (s.name != name)
        continue;
      bool all = std::all_of(labels.begin(), labels.end(), [&](auto& kv) {
        auto i = s.labels.find(kv.first);
        return i != s.labels.end() && i->second == kv.second;
      });
      if (all) {
        REQUIRE_FALSE(found); // one sample only
        found = s.value;
      }
    }
    return found;
  }
};

/// The family a sample belongs to: histogram samples carry a suffix.
std::string family_of(const exposition& x, const std::string& name) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    std::string_view n{name};
    std::string_view s{suffix};
    if (n.size() > s.size() && n.substr(n.size() - s.size()) == s) {
      auto base = std::string{n.substr(0, n.size() - s.size())};
      if (x.types.count(base) && x.types.at(base) == "histogram")
        return base;
    }
  }
  return name;
}

bool metric_name(std::string_view n) {
  if (n.empty() || std::isdigit(static_cast<unsigned char>(n[0])))
    return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  });
}

/// Parses the text; a line that breaks the format fails the test.
exposition parse_exposition(const std::string& text) {
  exposition x;
  std::istringstream in{text};
  std::string line;
  REQUIRE((text.empty() || text.back() == '\n'));
  while (std::getline(in, line)) {
    INFO("line: " << line);
    REQUIRE_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      auto rest = line.substr(7);
      auto sp = rest.find(' ');
      REQUIRE(sp != std::string::npos);
      auto name = rest.substr(0, sp);
      REQUIRE(metric_name(name));
      if (line[2] == 'H') {
        REQUIRE(x.helps.emplace(name, rest.substr(sp + 1)).second);
      } else {
        auto type = rest.substr(sp + 1);
        REQUIRE((type == "counter" || type == "gauge" || type == "histogram"
                 || type == "summary" || type == "untyped"));
        // TYPE comes once, before the family's samples.
        REQUIRE(x.types.emplace(name, type).second);
      }
      continue;
    }
    REQUIRE(line[0] != '#');
    sample s;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ')
      ++i;
    s.name = line.substr(0, i);
    REQUIRE(metric_name(s.name));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (line.at(i) != '}') {
        auto eq = line.find('=', i);
        REQUIRE(eq != std::string::npos);
        auto key = line.substr(i, eq - i);
        REQUIRE(metric_name(key));
        REQUIRE(line.at(eq + 1) == '"');
        std::string value;
        std::size_t j = eq + 2;
        for (; line.at(j) != '"'; ++j) {
          if (line[j] == '\\') {
            ++j;
            value.push_back(line.at(j) == 'n' ? '\n' : line.at(j));
          } else {
            value.push_back(line[j]);
          }
        }
        REQUIRE(s.labels.emplace(key, value).second);
        i = j + 1;
        if (line.at(i) == ',')
          ++i;
      }
      ++i;
    }
    REQUIRE(line.at(i) == ' ');
    auto number = line.substr(i + 1);
    if (number == "+Inf")
      s.value = std::numeric_limits<double>::infinity();
    else {
      std::size_t used = 0;
      s.value = std::stod(number, &used);
      REQUIRE(used == number.size());
    }
    // Every sample belongs to a family typed before it.
    REQUIRE(x.types.count(family_of(x, s.name)) == 1);
    x.samples.push_back(std::move(s));
  }
  return x;
}

/// Checks every histogram: buckets cumulative and ordered by le, the +Inf
/// bucket equal to _count, a _sum for each series. Returns how many series.
std::size_t check_histograms(const exposition& x) {
  std::size_t series = 0;
  for (const auto& [family, type] : x.types) {
    if (type != "histogram")
      continue;
    // Series: the labels but le.
    std::map<std::map<std::string, std::string>,
             std::vector<std::pair<double, double>>>
      buckets;
    std::map<std::map<std::string, std::string>, double> counts, sums;
    for (const auto& s : x.samples) {
      auto labels = s.labels;
      if (s.name == family + "_bucket") {
        auto le = labels.at("le");
        labels.erase("le");
        double bound = le == "+Inf" ? std::numeric_limits<double>::infinity()
                                    : std::stod(le);
        buckets[labels].push_back({bound, s.value});
      } else if (s.name == family + "_count") {
        counts[labels] = s.value;
      } else if (s.name == family + "_sum") {
        sums[labels] = s.value;
      }
    }
    for (const auto& [labels, list] : buckets) {
      INFO(family);
      ++series;
      REQUIRE(list.size() >= 2);
      for (std::size_t i = 1; i < list.size(); ++i) {
        CHECK(list[i].first > list[i - 1].first);
        CHECK(list[i].second >= list[i - 1].second);
      }
      CHECK(std::isinf(list.back().first));
      REQUIRE(counts.count(labels) == 1);
      CHECK(list.back().second == counts.at(labels));
      REQUIRE(sums.count(labels) == 1);
      CHECK(sums.at(labels) >= 0);
      if (counts.at(labels) > 0)
        CHECK(sums.at(labels) > 0);
    }
    CHECK(counts.size() == buckets.size());
  }
  return series;
}

/// Resident memory of this process, in bytes.
std::size_t resident_bytes() {
  std::ifstream statm{"/proc/self/statm"};
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

behavior echo_actor(context&) {
  return {[](const tpb::Ping& p) {
    tpb::Pong out;
    out.set_seq(p.seq());
    return out;
  }};
}

/// Runs the CLI on `dir`; returns its exit status and stdout.
std::pair<int, std::string> courier_cli(const temp_dir& dir,
                                        std::vector<std::string> args) {
  std::vector<std::string> argv{COURIER_CLI, "--dir", dir.path()};
  argv.insert(argv.end(), args.begin(), args.end());
  child_process cli{argv};
  std::string out;
  REQUIRE(cli.read_all(out));
  auto status = cli.wait_exit(std::chrono::seconds{20});
  REQUIRE(status);
  REQUIRE(WIFEXITED(*status));
  return {WEXITSTATUS(*status), out};
}

nlohmann::json stats_of(const temp_dir& dir, const std::string& node) {
  auto [status, out] = courier_cli(dir, {"--json", "stats", node});
  REQUIRE(status == 0);
  auto all = nlohmann::json::parse(out, nullptr, false);
  REQUIRE_FALSE(all.is_discarded());
  REQUIRE(all.size() == 1);
  return all.at(0);
}

/// The first element of `range` that `pred` accepts, or null.
template <class Range, class Pred>
auto first_of(const Range& range, Pred pred) -> decltype(&*range.begin()) {
  auto i = std::find_if(range.begin(), range.end(), pred);
  return i == range.end() ? nullptr : &*i;
}

const nlohmann::json* route_json(const nlohmann::json& stats,
                                 const std::string& peer) {
  return first_of(stats.at("routes"), [&](const nlohmann::json& r) {
    return r.at("peer") == peer;
  });
}

const route_metrics* route_to(const metrics_snapshot& m,
                              const std::string& peer) {
  return first_of(m.routes, [&](const auto& r) { return r.peer == peer; });
}

const actor_metrics* actor_named(const metrics_snapshot& m,
                                 const std::string& name) {
  return first_of(m.actors, [&](const auto& a) { return a.name == name; });
}

} // namespace

TEST_CASE("posts across two processes over the pipe are counted exactly on "
          "both ends, per route and per actor",
          "[metrics][pipe][integration]") {
  temp_dir dir;
  auto peer = start_test_node(dir, "peer", {"counter"});
  local_node here{dir, "here", {}, false};                 // the pipe alone
  REQUIRE(here->send<tpb::Sum>("counter", add(0, 0), 5s)); // the route is up
  auto before_here = here->metrics();
  auto before_peer = stats_of(dir, "peer");
  const auto* route = route_to(before_here, "peer");
  REQUIRE(route != nullptr);
  CHECK(route->tier == "pipe");
  CHECK(route->up);
  const auto* peer_route = route_json(before_peer, "here");
  REQUIRE(peer_route != nullptr);
  std::uint64_t peer_handled = 0;
  for (const auto& a : before_peer.at("actors"))
    if (a.at("name") == "counter")
      peer_handled = a.at("handled");
  CHECK(peer_handled == 1);

  constexpr int posts = 1000;
  for (int i = 0; i < posts; ++i)
    REQUIRE(here->post("counter", ping(i)));
  int queries = 0;
  REQUIRE(eventually([&] {
    ++queries;
    auto sum = here->send<tpb::Sum>("counter", add(0, 0), 5s);
    return sum && (*sum)->value() == posts * 1000000LL;
  }));
  auto after_here = here->metrics();
  auto after_peer = stats_of(dir, "peer");
  const auto* route_after = route_to(after_here, "peer");
  REQUIRE(route_after != nullptr);
  // Here: every post and query written once; every answer read once.
  auto out = route_after->messages_out - route->messages_out;
  CHECK(out == static_cast<std::uint64_t>(posts + queries));
  CHECK(route_after->messages_in - route->messages_in
        == static_cast<std::uint64_t>(queries));
  // One request in timing_sample is timed, per requesting thread.
  auto timed = route_after->request_rtt.count - route->request_rtt.count;
  CHECK(timed <= static_cast<std::uint64_t>(queries));
  // There: the same envelopes read, the same bytes, the counter's handler
  // ran once per message.
  const auto* peer_after = route_json(after_peer, "here");
  REQUIRE(peer_after != nullptr);
  CHECK(peer_after->at("messages_in").get<std::uint64_t>()
          - peer_route->at("messages_in").get<std::uint64_t>()
        == out);
  CHECK(peer_after->at("bytes_in").get<std::uint64_t>()
          - peer_route->at("bytes_in").get<std::uint64_t>()
        == route_after->bytes_out - route->bytes_out);
  CHECK(route_after->bytes_out - route->bytes_out > posts * 4u);
  for (const auto& a : after_peer.at("actors"))
    if (a.at("name") == "counter") {
      CHECK(a.at("handled").get<std::uint64_t>() - peer_handled
            == static_cast<std::uint64_t>(posts + queries));
      // The 1st, 9th, 17th... message of an actor is timed.
      CHECK(a.at("handling").at("count").get<std::uint64_t>()
            == (a.at("handled").get<std::uint64_t>() + 7) / 8);
    }
  // The pipe tier's totals hold the route's.
  for (const auto& t : after_here.tiers)
    if (t.tier == "pipe")
      CHECK(t.messages_out == route_after->messages_out);
}

TEST_CASE("dead letters are counted by reason and letters here per actor, "
          "exactly",
          "[metrics][runtime]") {
  quiet_node here{"counting"};
  std::atomic<int> seen{0};
  REQUIRE(here->spawn("sink", [&](context&) {
    return behavior{[&](const tpb::Ping&) { ++seen; }};
  }));
  REQUIRE(here->spawn("echo", echo_actor));
  for (int i = 0; i < 3; ++i)
    CHECK_FALSE(here->post("nobody", ping(i)));
  for (int i = 0; i < 2; ++i)
    REQUIRE(here->post("sink", add(1, 2))); // no handler for Add
  for (int i = 0; i < 50; ++i)
    REQUIRE(here->post("sink", ping(i)));
  for (int i = 0; i < 20; ++i)
    REQUIRE(here->send<tpb::Pong>("echo", ping(i), 5s));
  REQUIRE(eventually([&] { return seen == 50; }));
  REQUIRE(eventually([&] {
    return here->dead_letters(dead_letter_reason::unhandled_type) == 2;
  }));
  auto m = here->metrics();
  CHECK(m.enabled);
  CHECK(
    m.dead_letters[static_cast<std::size_t>(dead_letter_reason::no_such_name)]
    == 3);
  CHECK(
    m.dead_letters[static_cast<std::size_t>(dead_letter_reason::unhandled_type)]
    == 2);
  const auto* sink = actor_named(m, "sink");
  REQUIRE(sink != nullptr);
  CHECK(sink->handled == 50); // the two unhandled never ran a handler
  CHECK(sink->handling.count == (50 + 7) / 8); // one in timing_sample
  const auto* echo = actor_named(m, "echo");
  REQUIRE(echo != nullptr);
  CHECK(echo->handled == 20);
  CHECK(echo->handling.count == (20 + 7) / 8);
  // One in 8 requests of this thread: 2 or 3 of 20 in a row.
  CHECK(echo->request_rtt.count >= 2);
  CHECK(echo->request_rtt.count <= 3);
  CHECK(echo->request_rtt.sum_ns > 0);
  // In-process: 2 + 50 posts and 20 requests handed to mailboxes here.
  for (const auto& t : m.tiers)
    if (t.tier == "in-process")
      CHECK(t.messages_out == 72);
}

TEST_CASE("with metrics off, nothing is timed and dead letters still count",
          "[metrics][runtime]") {
  quiet_node here{"quiet", [](node_config& c) { c.metrics = false; }};
  REQUIRE(here->spawn("echo", echo_actor));
  REQUIRE(here->send<tpb::Pong>("echo", ping(1), 5s));
  CHECK_FALSE(here->post("nobody", ping(1)));
  auto m = here->metrics();
  CHECK_FALSE(m.enabled);
  CHECK(m.actors.empty());
  CHECK(m.dead_letters[0] == 1);
}

TEST_CASE("the HTTP endpoint serves the Prometheus text format, and only "
          "GET /metrics",
          "[metrics][http]") {
  quiet_node here{"scraped",
                  [](node_config& c) { c.metrics_listen = "127.0.0.1:0"; }};
  auto address = here->metrics_address();
  REQUIRE_FALSE(address.empty());
  CHECK(address.rfind("127.0.0.1:", 0) == 0);
  CHECK(address != "127.0.0.1:0");
  REQUIRE(here->spawn("echo", echo_actor));
  REQUIRE(here->spawn("weird\"name", echo_actor).code()
          == errc::invalid_argument);
  for (int i = 0; i < 25; ++i)
    REQUIRE(here->send<tpb::Pong>("echo", ping(i), 5s));
  CHECK_FALSE(here->post("nobody", ping(1)));

  auto response = get(address, "/metrics");
  REQUIRE(response.status == 200);
  CHECK(response.head.find("Content-Type: text/plain; version=0.0.4")
        != std::string::npos);
  auto x = parse_exposition(response.body);
  CHECK(check_histograms(x) >= 4);
  CHECK(x.value("courier_actor_messages_total", {{"actor", "echo"}}) == 25);
  CHECK(x.value("courier_actor_handling_seconds_count", {{"actor", "echo"}})
        == (25 + 7) / 8);
  auto requests
    = x.value("courier_actor_request_seconds_count", {{"actor", "echo"}});
  REQUIRE(requests);
  CHECK(*requests >= 3);
  CHECK(*requests <= 4);
  CHECK(x.value("courier_dead_letters_total", {{"reason", "no_such_name"}})
        == 1);
  CHECK(x.value("courier_tier_messages_out_total", {{"tier", "in-process"}})
        == 25);
  CHECK(x.types.at("courier_actor_mailbox_depth") == "gauge");
  CHECK(x.types.at("courier_refusals_total") == "counter");
  for (const auto& s : x.samples)
    CHECK(s.labels.at("node") == "scraped");
  // The same as node::metrics() renders.
  auto again = parse_exposition(to_prometheus(here->metrics()));
  CHECK(again.types == x.types);

  CHECK(get(address, "/").status == 404);
  CHECK(get(address, "/metricsx").status == 404);
  CHECK(get(address, "/metrics?x=1").status == 200);
  CHECK(http_exchange(address, "POST /metrics HTTP/1.1\r\n\r\n").status == 405);
  CHECK(http_exchange(address, "nonsense\r\n\r\n").status == 400);
}

TEST_CASE("a bad metrics address fails the node's start with a clear error",
          "[metrics][http]") {
  node_config config;
  config.join_directory = false;
  config.metrics_listen = "127.0.0.1";
  auto started = node::start(config);
  REQUIRE_FALSE(started);
  CHECK(started.code() == errc::invalid_argument);
  CHECK_THAT(started.error().message(),
             Catch::Matchers::Contains("metrics_listen"));
  config.metrics_listen = "no.such.host:80";
  CHECK(node::start(config).code() == errc::invalid_argument);
}

TEST_CASE("10,000 short-lived actor names keep the series under the cap",
          "[metrics][runtime][slow]") {
  quiet_node here{"churn",
                  [](node_config& c) { c.metrics_listen = "127.0.0.1:0"; }};
  constexpr int names = 10'000;
  std::atomic<int> handled{0};
  for (int i = 0; i < names; ++i) {
    auto name = "short.lived." + std::to_string(i);
    REQUIRE(here->spawn(name, [&](context& ctx) {
      return behavior{[&](const tpb::Ping&) {
        ++handled;
        ctx.stop();
      }};
    }));
    REQUIRE(here->post(name, ping(i)));
  }
  REQUIRE(eventually([&] { return handled == names; }, 60s));
  auto response = get(here->metrics_address(), "/metrics");
  REQUIRE(response.status == 200);
  auto x = parse_exposition(response.body);
  std::set<std::string> actors;
  std::size_t series = 0;
  for (const auto& s : x.samples)
    if (s.labels.count("actor")) {
      actors.insert(s.labels.at("actor"));
      ++series;
    }
  CHECK(actors.size() == max_actor_series + 1);
  CHECK(actors.count(other_actors) == 1);
  // 3 plain series and 2 histograms of 27 samples each per name.
  CHECK(series == actors.size() * (3 + 2 * (histogram_buckets + 2)));
  double total = 0;
  for (const auto& s : x.samples)
    if (s.name == "courier_actor_messages_total"
        && s.labels.at("actor").rfind("short.lived.", 0) == 0)
      total += s.value;
  auto other = x.value("courier_actor_messages_total", {{"actor", "other"}});
  REQUIRE(other);
  CHECK(total + *other == names);
  CHECK(response.body.size() < 2u << 20);
}

TEST_CASE("a hostile HTTP client neither hangs the node nor grows its memory",
          "[metrics][http][slow]") {
  // 1,000 client sockets and the server's in one process.
  rlimit files{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &files) == 0);
  if (files.rlim_cur < 4096 && files.rlim_max >= 4096) {
    files.rlim_cur = 4096;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &files) == 0);
  }
  quiet_node here{"besieged",
                  [](node_config& c) { c.metrics_listen = "127.0.0.1:0"; }};
  REQUIRE(here->spawn("echo", echo_actor));
  auto address = here->metrics_address();
  REQUIRE(get(address, "/metrics").status == 200);
  auto rss_before = resident_bytes();

  // Huge headers: answered 431 once the head passes its bound.
  {
    int fd = connect_to(address);
    REQUIRE(fd >= 0);
    std::string head = "GET /metrics HTTP/1.1\r\n";
    std::string filler = "X-Filler: " + std::string(1000, 'a') + "\r\n";
    bool cut = false;
    for (int i = 0; i < 1024 && !cut; ++i) // up to 1 MiB
      cut = !send_all(fd, i == 0 ? head + filler : filler);
    char buf[256];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0)
      CHECK(std::string_view(buf, static_cast<std::size_t>(n)).find("431")
            != std::string_view::npos);
    ::close(fd);
  }
  // A request that never finishes, and 1,000 connections that say nothing.
  int slow = connect_to(address);
  REQUIRE(slow >= 0);
  REQUIRE(send_all(slow, "GET /metrics HTTP/1.1\r\nHost: x\r\n"));
  std::vector<int> idle;
  for (int i = 0; i < 1000; ++i) {
    int fd = connect_to(address, true);
    if (fd >= 0)
      idle.push_back(fd);
  }
  CHECK(idle.size() > 900);
  // The node goes on working meanwhile.
  auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i)
    REQUIRE(here->send<tpb::Pong>("echo", ping(i), 2s));
  CHECK(std::chrono::steady_clock::now() - began < 2s);
  // The slow request is cut at the connection timeout.
  char buf[64];
  auto n = ::recv(slow, buf, sizeof buf, 0);
  CHECK(n <= 0);
  ::close(slow);
  for (int fd : idle)
    ::close(fd);
  // Once the flood is gone, scrapes are served again.
  http_response response;
  REQUIRE(eventually(
    [&] {
      response = get(address, "/metrics");
      return response.status == 200;
    },
    20s));
  CHECK(parse_exposition(response.body)
          .value("courier_actor_messages_total", {{"actor", "echo"}})
        == 100);
  // The stated bound: max_connections * (request + exposition), far
  // below 16 MiB.
  auto rss_after = resident_bytes();
  CHECK(rss_after < rss_before + (16u << 20));
}

TEST_CASE("courier stats --json agrees with node::metrics(), and courier top "
          "--once shows the busiest actor",
          "[metrics][cli][integration]") {
  temp_dir dir;
  local_node here{dir, "here", {}, false};
  REQUIRE(here->spawn("echo", echo_actor));
  std::atomic<bool> stop{false};
  for (int i = 0; i < 40; ++i)
    REQUIRE(here->send<tpb::Pong>("echo", ping(i), 5s));
  CHECK_FALSE(here->post("nobody", ping(1)));
  auto stats = stats_of(dir, "here");
  auto m = here->metrics();
  CHECK(stats.at("node") == "here");
  CHECK(stats.at("enabled") == true);
  for (std::size_t i = 0; i < dead_letter_reason_count; ++i)
    CHECK(stats.at("dead_letters")
            .at(std::string{to_string(static_cast<dead_letter_reason>(i))})
          == m.dead_letters[i]);
  const nlohmann::json* echo = nullptr;
  for (const auto& a : stats.at("actors"))
    if (a.at("name") == "echo")
      echo = &a;
  REQUIRE(echo != nullptr);
  const auto* mine = actor_named(m, "echo");
  REQUIRE(mine != nullptr);
  CHECK(echo->at("handled") == mine->handled);
  CHECK(echo->at("handling").at("count") == mine->handling.count);
  CHECK(echo->at("handling").at("sum_ns") == mine->handling.sum_ns);
  CHECK(echo->at("request_rtt").at("count") == mine->request_rtt.count);
  for (std::size_t i = 0; i < histogram_buckets; ++i)
    CHECK(echo->at("handling").at("buckets").at(i)
          == mine->handling.buckets[i]);
  for (const auto& t : stats.at("tiers"))
    if (t.at("tier") == "in-process")
      for (const auto& tm : m.tiers)
        if (tm.tier == "in-process")
          CHECK(t.at("messages_out") == tm.messages_out);
  CHECK(stats.at("refusals").size() == m.refusals.size());

  // top: the echo actor, busy while it samples, heads the actors.
  std::thread load{[&] {
    for (int i = 0; !stop; ++i)
      (void)here->send<tpb::Pong>("echo", ping(i), 5s);
  }};
  auto [status, screen]
    = courier_cli(dir, {"top", "here", "--once", "--interval", "300"});
  stop = true;
  load.join();
  CHECK(status == 0);
  INFO(screen);
  auto first = screen.find('\n');
  REQUIRE(first != std::string::npos);
  CHECK(screen.substr(0, first).find("ACTOR") != std::string::npos);
  auto second
    = screen.substr(first + 1, screen.find('\n', first + 1) - first - 1);
  CHECK(second.find("echo") != std::string::npos);
  CHECK(screen.find("PEER") != std::string::npos);
  // A node that is not there is a clear error.
  auto [missing, text] = courier_cli(dir, {"stats", "nosuchnode"});
  CHECK(missing == 1);
}

TEST_CASE("restarts of a supervised actor are counted per actor",
          "[metrics][runtime]") {
  quiet_node here{"supervising"};
  spawn_options options;
  options.restart = restart_policy{};
  options.restart->max_restarts = 5;
  options.restart->window = std::chrono::minutes{1};
  options.restart->initial_backoff = 1ms;
  options.restart->max_backoff = 4ms;
  REQUIRE(here->spawn(
    "fragile",
    [](context& ctx) {
      return behavior{
        [](const tpb::Ping& p) {
          tpb::Pong out;
          out.set_seq(p.seq());
          return out;
        },
        [&ctx](const tpb::Crash& c) { ctx.fail(c.reason()); },
      };
    },
    options));
  for (int i = 0; i < 3; ++i) {
    REQUIRE(here->post("fragile", tpb::Crash{}));
    // Back after each failure before the next one.
    REQUIRE(eventually([&] {
      auto m = here->metrics();
      auto* a = actor_named(m, "fragile");
      return a != nullptr && a->restarts == static_cast<std::uint64_t>(i + 1)
             && here->send("fragile", ping(i), 1s).has_value();
    }));
  }
  auto x = parse_exposition(to_prometheus(here->metrics()));
  CHECK(x.value("courier_actor_restarts_total", {{"actor", "fragile"}}) == 3);
}

TEST_CASE("refusals by the rules are counted by verb, exactly",
          "[metrics][security][integration]") {
  if (::geteuid() != 0)
    return; // needs root to run the guest as another user
  temp_dir dir;
  local_node here{
    dir, "here", [](node_config& config) {
      config.rules = {{"uid:65534", "billing.*", verbs::post | verbs::find}};
    }};
  std::atomic<int> reached{0};
  REQUIRE(here->spawn("admin.x", [&](context&) {
    return behavior{[&](const tpb::Ping&) { ++reached; }};
  }));
  std::vector<std::string> args{
    "setpriv", "--reuid=65534",   "--regid=65534", "--clear-groups",
    "--",      COURIER_TEST_NODE, "--dir",         dir.path(),
    "--name",  "guest",           "--try",         "post:admin.x:50"};
  child_process guest{args};
  REQUIRE(guest.line_containing("tried post admin.x:", 60s));
  REQUIRE(eventually([&] { return here->refusals() >= 50; }, 30s));
  auto m = here->metrics();
  for (const auto& r : m.refusals) {
    INFO(r.verb);
    CHECK(r.reason == "rules");
    CHECK(r.count == (r.verb == "post" ? 50u : 0u));
  }
  CHECK(reached == 0);
  auto x = parse_exposition(to_prometheus(m));
  CHECK(x.value("courier_refusals_total", {{"verb", "post"}}) == 50);
  CHECK(x.value("courier_refusals_total", {{"verb", "send"}}) == 0);
}

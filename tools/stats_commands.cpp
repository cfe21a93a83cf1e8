// Subcommands that show what nodes count (docs/operations.md, "Metrics"):
// stats prints one snapshot per node, top redraws the busiest actors and
// routes every interval. Both ask each node's system actor
// (courier.node.<name>) with a MetricsQuery.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "courier/v1/control.pb.h"

namespace courier::cli {

namespace {

using json = nlohmann::ordered_json;

json histogram_json(const v1::Histogram& h) {
  return {{"buckets", json(std::vector<std::uint64_t>(h.buckets().begin(),
                                                      h.buckets().end()))},
          {"count", h.count()},
          {"sum_ns", h.sum_ns()}};
}

/// The quantile `q` of a histogram as its bucket's upper bound, in
/// seconds; 0 when empty, infinity past the last bound.
double quantile(const v1::Histogram& h, double q) {
  if (h.count() == 0)
    return 0;
  auto rank = static_cast<std::uint64_t>(q * static_cast<double>(h.count()));
  std::uint64_t seen = 0;
  for (int i = 0; i < h.buckets_size(); ++i) {
    seen += h.buckets(i);
    if (seen > rank || seen == h.count())
      return histogram_snapshot::upper_bound(static_cast<std::size_t>(i));
  }
  return histogram_snapshot::upper_bound(histogram_buckets - 1);
}

std::string duration_text(double seconds) {
  char buf[32];
  if (seconds == 0)
    return "-";
  if (seconds > 1e9)
    std::snprintf(buf, sizeof buf, ">8.6s");
  else if (seconds < 1e-3)
    std::snprintf(buf, sizeof buf, "%.0fus", seconds * 1e6);
  else if (seconds < 1)
    std::snprintf(buf, sizeof buf, "%.1fms", seconds * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.2fs", seconds);
  return buf;
}

json metrics_json(const v1::MetricsReport& report) {
  json tiers = json::array();
  for (const auto& t : report.tiers())
    tiers.push_back({{"tier", t.tier()},
                     {"messages_out", t.messages_out()},
                     {"messages_in", t.messages_in()},
                     {"bytes_out", t.bytes_out()},
                     {"bytes_in", t.bytes_in()}});
  json routes = json::array();
  for (const auto& r : report.routes())
    routes.push_back({{"peer", r.peer()},
                      {"tier", r.tier()},
                      {"up", r.up()},
                      {"messages_out", r.messages_out()},
                      {"messages_in", r.messages_in()},
                      {"bytes_out", r.bytes_out()},
                      {"bytes_in", r.bytes_in()},
                      {"queued_bytes", r.queued_bytes()},
                      {"request_rtt", histogram_json(r.request_rtt())}});
  json actors = json::array();
  for (const auto& a : report.actors())
    actors.push_back({{"name", a.name()},
                      {"handled", a.handled()},
                      {"restarts", a.restarts()},
                      {"mailbox_depth", a.mailbox_depth()},
                      {"handling", histogram_json(a.handling())},
                      {"request_rtt", histogram_json(a.request_rtt())}});
  json dead = json::object();
  for (int i = 0; i < report.dead_letters_size(); ++i)
    dead[std::string{to_string(static_cast<dead_letter_reason>(i))}]
      = report.dead_letters(i);
  json refusals = json::array();
  for (const auto& r : report.refusals())
    refusals.push_back(
      {{"verb", r.verb()}, {"reason", r.reason()}, {"count", r.count()}});
  json durable = json::array();
  for (const auto& q : report.durable_queues())
    durable.push_back({{"queue", q.queue()},
                       {"depth", q.depth()},
                       {"in_flight", q.in_flight()},
                       {"bytes", q.bytes()},
                       {"oldest_age_seconds", q.oldest_age_seconds()}});
  return {{"node", report.node()},
          {"enabled", report.enabled()},
          {"metrics_address", report.metrics_address()},
          {"tiers", tiers},
          {"routes", routes},
          {"actors", actors},
          {"dead_letters", dead},
          {"refusals", refusals},
          {"durable_queues", durable},
          {"durable_dead_letters", report.durable_dead_letters()}};
}

std::string metrics_text(const v1::MetricsReport& report) {
  std::ostringstream out;
  out << "node " << report.node() << " (metrics "
      << (report.enabled() ? "on" : "off");
  if (!report.metrics_address().empty())
    out << ", http://" << report.metrics_address() << "/metrics";
  out << ")\n";
  for (const auto& t : report.tiers())
    out << "  tier " << t.tier() << "  out " << t.messages_out() << " in "
        << t.messages_in() << "  bytes out " << t.bytes_out() << " in "
        << t.bytes_in() << "\n";
  for (const auto& r : report.routes())
    out << "  route " << r.peer() << " " << r.tier() << " "
        << (r.up() ? "up" : "down") << "  out " << r.messages_out() << " in "
        << r.messages_in() << "  bytes out " << r.bytes_out() << " in "
        << r.bytes_in() << "  queued " << r.queued_bytes() << "  rtt p50 "
        << duration_text(quantile(r.request_rtt(), 0.5)) << " p99 "
        << duration_text(quantile(r.request_rtt(), 0.99)) << "\n";
  for (const auto& a : report.actors())
    if (a.handled() > 0 || a.restarts() > 0 || a.mailbox_depth() > 0)
      out << "  actor " << a.name() << "  handled " << a.handled()
          << "  restarts " << a.restarts() << "  mailbox " << a.mailbox_depth()
          << "  handling p50 " << duration_text(quantile(a.handling(), 0.5))
          << " p99 " << duration_text(quantile(a.handling(), 0.99)) << "\n";
  out << "  dead letters";
  for (int i = 0; i < report.dead_letters_size(); ++i)
    out << " " << to_string(static_cast<dead_letter_reason>(i)) << " "
        << report.dead_letters(i);
  out << "\n  refusals";
  for (const auto& r : report.refusals())
    out << " " << r.verb() << " " << r.count();
  out << "\n";
  for (const auto& q : report.durable_queues())
    out << "  durable " << q.queue() << "  depth " << q.depth()
        << "  in flight " << q.in_flight() << "  bytes " << q.bytes()
        << "  oldest " << duration_text(q.oldest_age_seconds()) << "\n";
  if (report.durable_dead_letters() > 0)
    out << "  durable dead letters " << report.durable_dead_letters() << "\n";
  return out.str();
}

expected<v1::MetricsReport> ask_metrics(node& self, const std::string& peer,
                                        std::chrono::milliseconds timeout) {
  auto report = self.send<v1::MetricsReport>("courier.node." + peer,
                                             v1::MetricsQuery{}, timeout);
  if (!report)
    return std::move(report).error();
  return **report;
}

} // namespace

command stats_command(CLI::App& sub) {
  auto only = std::make_shared<std::string>();
  sub.add_option("NODE", *only, "the node to ask; all of them without it");
  auto timeout_ms = add_timeout(sub, "how long each node may take (ms)");
  return [only, timeout_ms](node& self, const global_options& global) {
    json all = json::array();
    int status = exit_ok;
    for (const auto& peer : nodes_to_ask(self, *only)) {
      auto report
        = ask_metrics(self, peer, std::chrono::milliseconds{*timeout_ms});
      if (!report) {
        std::cerr << "courier: " << peer << ": " << report.error().to_string()
                  << "\n";
        status = exit_failed;
        continue;
      }
      if (global.json)
        all.push_back(metrics_json(*report));
      else
        std::cout << metrics_text(*report);
    }
    if (global.json)
      std::cout << all.dump() << "\n";
    return status;
  };
}

namespace {

/// One line of `top`: an actor or a route, with its rate over the interval.
struct top_line {
  double rate = 0;
  std::string text;
};

std::string fixed(double x, int decimals) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, x);
  return buf;
}

/// The screen of `top` from two samples `seconds` apart, busiest first.
std::string top_screen(const std::map<std::string, v1::MetricsReport>& before,
                       const std::map<std::string, v1::MetricsReport>& now,
                       double seconds, std::size_t rows) {
  std::vector<top_line> actors, routes;
  for (const auto& [node_name, report] : now) {
    auto old = before.find(node_name);
    for (const auto& a : report.actors()) {
      std::uint64_t was = 0;
      if (old != before.end())
        for (const auto& b : old->second.actors())
          if (b.name() == a.name())
            was = b.handled();
      double rate
        = static_cast<double>(a.handled() - std::min(was, a.handled()))
          / seconds;
      if (a.handled() == 0 && a.mailbox_depth() == 0)
        continue;
      char buf[200];
      std::snprintf(buf, sizeof buf, "%-16.16s %-24.24s %10s %10s %10s %8llu",
                    node_name.c_str(), a.name().c_str(), fixed(rate, 1).c_str(),
                    duration_text(quantile(a.handling(), 0.5)).c_str(),
                    duration_text(quantile(a.handling(), 0.99)).c_str(),
                    static_cast<unsigned long long>(a.mailbox_depth()));
      actors.push_back({rate, buf});
    }
    for (const auto& r : report.routes()) {
      std::uint64_t was = 0;
      if (old != before.end())
        for (const auto& b : old->second.routes())
          if (b.peer() == r.peer() && b.tier() == r.tier())
            was = b.messages_out() + b.messages_in();
      auto total = r.messages_out() + r.messages_in();
      double rate = static_cast<double>(total - std::min(was, total)) / seconds;
      char buf[200];
      std::snprintf(buf, sizeof buf,
                    "%-16.16s %-16.16s %-6.6s %-4s %10s %10s %10s %10llu",
                    node_name.c_str(), r.peer().c_str(), r.tier().c_str(),
                    r.up() ? "up" : "down", fixed(rate, 1).c_str(),
                    duration_text(quantile(r.request_rtt(), 0.5)).c_str(),
                    duration_text(quantile(r.request_rtt(), 0.99)).c_str(),
                    static_cast<unsigned long long>(r.queued_bytes()));
      routes.push_back({rate, buf});
    }
  }
  auto busiest = [](const top_line& x, const top_line& y) {
    return x.rate > y.rate || (x.rate == y.rate && x.text < y.text);
  };
  std::sort(actors.begin(), actors.end(), busiest);
  std::sort(routes.begin(), routes.end(), busiest);
  std::ostringstream out;
  char head[200];
  std::snprintf(head, sizeof head, "%-16s %-24s %10s %10s %10s %8s", "NODE",
                "ACTOR", "MSG/S", "P50", "P99", "MAILBOX");
  out << head << "\n";
  for (std::size_t i = 0; i < actors.size() && i < rows; ++i)
    out << actors[i].text << "\n";
  std::snprintf(head, sizeof head, "%-16s %-16s %-6s %-4s %10s %10s %10s %10s",
                "NODE", "PEER", "TIER", "LINK", "MSG/S", "RTT P50", "RTT P99",
                "QUEUED");
  out << "\n" << head << "\n";
  for (std::size_t i = 0; i < routes.size() && i < rows; ++i)
    out << routes[i].text << "\n";
  return out.str();
}

} // namespace

command top_command(CLI::App& sub) {
  struct options {
    std::string only;
    long interval_ms = 1000;
    std::size_t rows = 20;
    bool once = false;
  };
  auto opts = std::make_shared<options>();
  sub.add_option("NODE", opts->only,
                 "the node to watch; all of them without it");
  sub.add_option("--interval", opts->interval_ms, "time between screens (ms)")
    ->check(CLI::Range(10L, 3'600'000L))
    ->capture_default_str();
  sub.add_option("--rows", opts->rows, "lines per table")
    ->check(CLI::Range(std::size_t{1}, std::size_t{1000}))
    ->capture_default_str();
  sub.add_flag("--once", opts->once,
               "print one screen (rates over one interval) without redrawing");
  return [opts](node& self, const global_options&) {
    auto interval = std::chrono::milliseconds{opts->interval_ms};
    auto timeout = std::max(interval, std::chrono::milliseconds{1000});
    auto sample = [&] {
      std::map<std::string, v1::MetricsReport> out;
      for (const auto& peer : nodes_to_ask(self, opts->only))
        if (auto report = ask_metrics(self, peer, timeout))
          out.emplace(peer, std::move(*report));
      return std::make_pair(std::chrono::steady_clock::now(), std::move(out));
    };
    auto before = sample();
    for (;;) {
      std::this_thread::sleep_until(before.first + interval);
      auto now = sample();
      std::chrono::duration<double> elapsed = now.first - before.first;
      auto screen
        = top_screen(before.second, now.second, elapsed.count(), opts->rows);
      if (opts->once) {
        std::cout << screen << std::flush;
        return exit_ok;
      }
      // Home, clear the screen, draw.
      std::cout << "\x1b[H\x1b[2J" << screen << std::flush;
      before = std::move(now);
    }
  };
}

} // namespace courier::cli

// node_impl::snapshot_metrics and the Prometheus text exposition
// (courier/metrics.hpp; docs/operations.md lists the metrics).

#include <algorithm>
#include <cstdio>

#include "access.hpp"
#include "node_impl.hpp"

namespace courier {

namespace {

/// Escapes a label value: backslash, double quote and newline.
void append_label(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\' || c == '"')
      out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
}

void append_number(std::string& out, double x) {
  char buf[32];
  auto n = std::snprintf(buf, sizeof buf, "%.9g", x);
  out.append(buf, static_cast<std::size_t>(n));
}

class exposition {
public:
  explicit exposition(std::string node) : node_(std::move(node)) {}

  /// Starts a metric family: its HELP and TYPE lines.
  void family(std::string_view name, std::string_view type,
              std::string_view help) {
    out_.append("# HELP ").append(name).append(" ").append(help);
    out_.append("\n# TYPE ").append(name).append(" ").append(type);
    out_.push_back('\n');
  }

  /// One sample; `labels` are (name, value) pairs after node="...".
  void sample(
    std::string_view name,
    std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
    double value, std::string_view le = {}) {
    out_.append(name).append("{node=\"");
    append_label(out_, node_);
    out_.push_back('"');
    for (const auto& [key, text] : labels) {
      out_.append(",").append(key).append("=\"");
      append_label(out_, text);
      out_.push_back('"');
    }
    if (!le.empty())
      out_.append(",le=\"").append(le).append("\"");
    out_.append("} ");
    append_number(out_, value);
    out_.push_back('\n');
  }

  /// The _bucket, _sum and _count samples of a histogram.
  void histogram(
    std::string_view name,
    std::initializer_list<std::pair<std::string_view, std::string_view>> labels,
    const histogram_snapshot& h) {
    std::string bucket{name};
    bucket += "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < histogram_buckets; ++i) {
      cumulative += h.buckets[i];
      std::string le;
      if (i + 1 == histogram_buckets) {
        le = "+Inf";
      } else {
        append_number(le, histogram_snapshot::upper_bound(i));
      }
      sample(bucket, labels, static_cast<double>(cumulative), le);
    }
    sample(std::string{name} + "_sum", labels,
           static_cast<double>(h.sum_ns) * 1e-9);
    sample(std::string{name} + "_count", labels, static_cast<double>(h.count));
  }

  std::string take() {
    return std::move(out_);
  }

private:
  std::string node_;
  std::string out_;
};

/// A family of one value per tier, route or actor: its name, type, help,
/// and the field it shows.
template <class Row, class Field>
struct column {
  const char* name;
  const char* type;
  const char* help;
  Field Row::*field;
};

template <class Row>
using counter_column = column<Row, std::uint64_t>;

template <class Row>
using histogram_column = column<Row, histogram_snapshot>;

constexpr counter_column<tier_metrics> tier_columns[] = {
  {"courier_tier_messages_out_total", "counter",
   "Letters sent per tier (in-process: handed to a mailbox here).",
   &tier_metrics::messages_out},
  {"courier_tier_messages_in_total", "counter",
   "Posts, requests and answers received per tier (in-process: letters "
   "handed to a mailbox here).",
   &tier_metrics::messages_in},
  {"courier_tier_bytes_out_total", "counter",
   "Frame bytes of the messages sent per tier.", &tier_metrics::bytes_out},
  {"courier_tier_bytes_in_total", "counter",
   "Frame bytes of the messages received per tier.", &tier_metrics::bytes_in},
};

constexpr counter_column<route_metrics> route_columns[] = {
  {"courier_route_messages_out_total", "counter",
   "Posts and requests written to the link.", &route_metrics::messages_out},
  {"courier_route_messages_in_total", "counter",
   "Posts, requests and answers read from the link.",
   &route_metrics::messages_in},
  {"courier_route_bytes_out_total", "counter",
   "Frame bytes of the messages written to the link.",
   &route_metrics::bytes_out},
  {"courier_route_bytes_in_total", "counter",
   "Frame bytes of the messages read from the link.", &route_metrics::bytes_in},
  {"courier_route_queued_bytes", "gauge",
   "Bytes posted to the peer and not yet written to the link.",
   &route_metrics::queued_bytes},
};

constexpr counter_column<actor_metrics> actor_columns[] = {
  {"courier_actor_messages_total", "counter",
   "Messages handled, per actor name (names past the cap: 'other').",
   &actor_metrics::handled},
  {"courier_actor_restarts_total", "counter",
   "Restarts by the actor's supervisor.", &actor_metrics::restarts},
  {"courier_actor_mailbox_depth", "gauge",
   "Posts waiting in the actor's mailbox.", &actor_metrics::mailbox_depth},
};

constexpr histogram_column<actor_metrics> actor_histograms[] = {
  {"courier_actor_handling_seconds", "histogram",
   "How long the actor's handlers ran (one message in 8).",
   &actor_metrics::handling},
  {"courier_actor_request_seconds", "histogram",
   "Requests to the actor from this node, sent to answered (one in 8).",
   &actor_metrics::request_rtt},
};

} // namespace

std::string to_prometheus(const metrics_snapshot& m) {
  exposition x{m.node};
  auto n = [](std::uint64_t v) { return static_cast<double>(v); };
  for (const auto& c : tier_columns) {
    x.family(c.name, c.type, c.help);
    for (const auto& t : m.tiers)
      x.sample(c.name, {{"tier", t.tier}}, n(t.*c.field));
  }
  x.family("courier_route_up", "gauge",
           "1 while the link to the peer node on this tier is open.");
  for (const auto& r : m.routes)
    x.sample("courier_route_up", {{"peer", r.peer}, {"tier", r.tier}},
             r.up ? 1 : 0);
  for (const auto& c : route_columns) {
    x.family(c.name, c.type, c.help);
    for (const auto& r : m.routes)
      x.sample(c.name, {{"peer", r.peer}, {"tier", r.tier}}, n(r.*c.field));
  }
  x.family("courier_route_request_seconds", "histogram",
           "Requests over the link, from written to answered (one in 8).");
  for (const auto& r : m.routes)
    x.histogram("courier_route_request_seconds",
                {{"peer", r.peer}, {"tier", r.tier}}, r.request_rtt);
  for (const auto& c : actor_columns) {
    x.family(c.name, c.type, c.help);
    for (const auto& a : m.actors)
      x.sample(c.name, {{"actor", a.name}}, n(a.*c.field));
  }
  for (const auto& c : actor_histograms) {
    x.family(c.name, c.type, c.help);
    for (const auto& a : m.actors)
      x.histogram(c.name, {{"actor", a.name}}, a.*c.field);
  }
  x.family("courier_dead_letters_total", "counter",
           "Messages that reached nobody, by reason.");
  for (std::size_t i = 0; i < dead_letter_reason_count; ++i) {
    auto reason = to_string(static_cast<dead_letter_reason>(i));
    x.sample("courier_dead_letters_total", {{"reason", reason}},
             n(m.dead_letters[i]));
  }
  if (!m.durable_queues.empty() || m.durable_dead_letters != 0) {
    x.family("courier_durable_queue_depth", "gauge",
             "Durable messages waiting in a queue or being handled.");
    for (const auto& q : m.durable_queues)
      x.sample("courier_durable_queue_depth", {{"queue", q.queue}},
               n(q.depth));
    x.family("courier_durable_queue_in_flight", "gauge",
             "Durable messages of a queue being forwarded or handled.");
    for (const auto& q : m.durable_queues)
      x.sample("courier_durable_queue_in_flight", {{"queue", q.queue}},
               n(q.in_flight));
    x.family("courier_durable_queue_bytes", "gauge",
             "Payload bytes of a durable queue.");
    for (const auto& q : m.durable_queues)
      x.sample("courier_durable_queue_bytes", {{"queue", q.queue}},
               n(q.bytes));
    x.family("courier_durable_queue_oldest_age_seconds", "gauge",
             "Age of the oldest message of a durable queue.");
    for (const auto& q : m.durable_queues)
      x.sample("courier_durable_queue_oldest_age_seconds", {{"queue", q.queue}},
               q.oldest_age_seconds);
    x.family("courier_durable_dead_letters", "gauge",
             "Durable dead letters kept in the node's store.");
    x.sample("courier_durable_dead_letters", {}, n(m.durable_dead_letters));
  }
  x.family("courier_refusals_total", "counter",
           "Requests from other nodes the rules refused, by verb.");
  for (const auto& r : m.refusals)
    x.sample("courier_refusals_total", {{"verb", r.verb}, {"reason", r.reason}},
             n(r.count));
  return x.take();
}

} // namespace courier

namespace courier::detail {

namespace {

void fill(v1::Histogram& out, const histogram_snapshot& h) {
  for (auto n : h.buckets)
    out.add_buckets(n);
  out.set_count(h.count);
  out.set_sum_ns(h.sum_ns);
}

} // namespace

v1::MetricsReport to_report(const metrics_snapshot& m) {
  v1::MetricsReport out;
  out.set_node(m.node);
  out.set_enabled(m.enabled);
  for (const auto& t : m.tiers) {
    auto* x = out.add_tiers();
    x->set_tier(t.tier);
    x->set_messages_out(t.messages_out);
    x->set_messages_in(t.messages_in);
    x->set_bytes_out(t.bytes_out);
    x->set_bytes_in(t.bytes_in);
  }
  for (const auto& r : m.routes) {
    auto* x = out.add_routes();
    x->set_peer(r.peer);
    x->set_tier(r.tier);
    x->set_up(r.up);
    x->set_messages_out(r.messages_out);
    x->set_messages_in(r.messages_in);
    x->set_bytes_out(r.bytes_out);
    x->set_bytes_in(r.bytes_in);
    x->set_queued_bytes(r.queued_bytes);
    fill(*x->mutable_request_rtt(), r.request_rtt);
  }
  for (const auto& a : m.actors) {
    auto* x = out.add_actors();
    x->set_name(a.name);
    x->set_handled(a.handled);
    x->set_restarts(a.restarts);
    x->set_mailbox_depth(a.mailbox_depth);
    fill(*x->mutable_handling(), a.handling);
    fill(*x->mutable_request_rtt(), a.request_rtt);
  }
  for (auto n : m.dead_letters)
    out.add_dead_letters(n);
  for (const auto& r : m.refusals) {
    auto* x = out.add_refusals();
    x->set_verb(r.verb);
    x->set_reason(r.reason);
    x->set_count(r.count);
  }
  for (const auto& q : m.durable_queues) {
    auto* x = out.add_durable_queues();
    x->set_queue(q.queue);
    x->set_depth(q.depth);
    x->set_in_flight(q.in_flight);
    x->set_bytes(q.bytes);
    x->set_oldest_age_seconds(q.oldest_age_seconds);
  }
  out.set_durable_dead_letters(m.durable_dead_letters);
  return out;
}

metrics_snapshot node_impl::snapshot_metrics() const {
  metrics_snapshot out;
  out.node = config_.name;
  out.enabled = metrics_.enabled();
  metrics_.add_to(out);
  {
    // Mailbox depths: the posts counted into each live actor's mailbox.
    std::shared_lock guard{mu_};
    for (const auto& [name, slot] : names_)
      if (slot->stats != nullptr && slot->backlog)
        if (auto* a = metrics_registry::find(out, slot->stats->name))
          a->mailbox_depth
            += slot->backlog->bytes.load(std::memory_order_relaxed);
  }
  for (const auto& link : peers_->links()) {
    auto route = metrics_registry::route_of(*link);
    tier_metrics* tier = nullptr;
    for (auto& t : out.tiers)
      if (t.tier == route.tier)
        tier = &t;
    if (tier == nullptr)
      tier = &out.tiers.emplace_back(tier_metrics{route.tier, 0, 0, 0, 0});
    tier->messages_out += route.messages_out;
    tier->messages_in += route.messages_in;
    tier->bytes_out += route.bytes_out;
    tier->bytes_in += route.bytes_in;
    out.routes.push_back(std::move(route));
  }
  metrics_.add_gone_routes(out);
  std::sort(out.tiers.begin(), out.tiers.end(),
            [](const auto& x, const auto& y) { return x.tier < y.tier; });
  std::sort(out.routes.begin(), out.routes.end(),
            [](const auto& x, const auto& y) {
              return std::tie(x.peer, x.tier) < std::tie(y.peer, y.tier);
            });
  for (std::size_t i = 0; i < dead_letter_reason_count; ++i)
    out.dead_letters[i] = dead_counts_[i].load(std::memory_order_relaxed);
  for (auto verb : {verbs::broadcast, verbs::find, verbs::monitor, verbs::post,
                    verbs::send})
    out.refusals.push_back(
      {std::string{verb_name(verb)}, "rules", refusals_.of(verb)});
  if (auto* durable = durable_ready_.load(std::memory_order_acquire))
    durable->add_metrics(out);
  return out;
}

} // namespace courier::detail

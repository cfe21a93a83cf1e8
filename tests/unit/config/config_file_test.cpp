// courier::config: a node's configuration from a TOML file.

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "cert.hpp"
#include "courier/config/config_file.hpp"
#include "process.hpp"
#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;
namespace cert = courier::cert;
namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& path, std::string_view text) {
  std::ofstream out{path};
  out << text;
  REQUIRE(out.good());
}

/// The error of parsing `toml`, which must fail.
error parse_error_of(std::string_view toml) {
  auto parsed = parse_node_settings(toml);
  REQUIRE_FALSE(parsed);
  return parsed.error();
}

} // namespace

TEST_CASE("a full configuration file round-trips into node_config field by "
          "field",
          "[config][unit]") {
  temp_dir dir;
  fs::create_directories(dir.path() + "/etc/certs");
  for (auto file : {"billing.pem", "billing.key", "ca.pem"})
    write_file(dir.path() + "/etc/certs/" + file, "placeholder");
  auto file = dir.path() + "/etc/billing.toml";
  write_file(file, R"(# Every key of docs/configuration.md.
name = "billing"
join_directory = false
directory = "/run/courier-test"
metrics = false
metrics_listen = "127.0.0.1:0"
preferred_tiers = [
  { nodes = "db-*", tier = "pipe" },
  { nodes = "cache-?", tier = "shm" },
]
max_mailbox = 5000
allowed_uids = [1000, 1001]
allowed_gids = [100]
handshake_timeout = "1500ms"
recursion_limit = 64
worker_threads = 3
scheduler = "latency"
idle_spin = "150us"
log_level = "info"
log_format = "json"
trace = true

[limits]
max_frame = "1MiB"
max_queued = 8388608
spare_buffers = "4MiB"

[tiers.shm]
[tiers.pipe]
[tiers.tcp]
listen = "0.0.0.0:7000"
advertise = "10.0.0.7:7000"
allow_plaintext = true
heartbeat = "250ms"
unreachable_after = "2s"
max_handshaking = 16
handshake_timeout = "3s"

[tiers.tcp.tls]
certificate = "certs/billing.pem"
private_key = "certs/billing.key"
ca = "/ABSOLUTE/etc/certs/ca.pem"
)");
  // An absolute path stays as it is.
  std::string text;
  {
    std::ifstream in{file};
    text.assign(std::istreambuf_iterator<char>{in}, {});
  }
  text.replace(text.find("/ABSOLUTE"), 9, dir.path());
  write_file(file, text);

  auto settings = read_node_settings(file);
  INFO((settings ? "" : settings.error().to_string()));
  REQUIRE(settings);
  const auto& node = settings->node;
  CHECK(settings->source == file);
  CHECK(node.name == "billing");
  CHECK(node.join_directory == false);
  CHECK(node.directory == "/run/courier-test");
  CHECK(node.metrics == false);
  CHECK(node.metrics_listen == "127.0.0.1:0");
  using tier_pair = std::pair<std::string, std::string>;
  CHECK(node.preferred_tiers
        == std::vector<tier_pair>{{"db-*", "pipe"}, {"cache-?", "shm"}});
  CHECK(node.max_mailbox == 5000);
  CHECK(node.allowed_uids == std::vector<unsigned>{1000, 1001});
  CHECK(node.allowed_gids == std::vector<unsigned>{100});
  CHECK(node.handshake_timeout == 1500ms);
  CHECK(node.recursion_limit == 64);
  CHECK(node.worker_threads == 3);
  CHECK(node.scheduler == scheduler_policy::latency);
  CHECK(node.idle_spin == 150us);
  CHECK(node.limits.max_frame == 1u << 20);
  CHECK(node.limits.max_queued == 8u << 20);
  CHECK(node.limits.spare_buffers == 4u << 20);
  CHECK(settings->log_threshold == log_level::info);
  CHECK(node.log_format == log_format::json);
  CHECK(node.trace);
  CHECK(settings->tiers == std::vector<std::string>{"shm", "pipe", "tcp"});
  REQUIRE(settings->tcp);
  const auto& tcp = *settings->tcp;
  CHECK(tcp.listen == "0.0.0.0:7000");
  CHECK(tcp.advertise == "10.0.0.7:7000");
  CHECK(tcp.allow_plaintext == true);
  CHECK(tcp.heartbeat == 250ms);
  CHECK(tcp.unreachable_after == 2s);
  CHECK(tcp.max_handshaking == 16);
  CHECK(tcp.handshake_timeout == 3s);
  REQUIRE(tcp.tls);
  // Relative paths are the file's folder's.
  CHECK(fs::equivalent(tcp.tls->certificate,
                       dir.path() + "/etc/certs/billing.pem"));
  CHECK(fs::path{tcp.tls->certificate}.is_absolute());
  CHECK(fs::equivalent(tcp.tls->private_key,
                       dir.path() + "/etc/certs/billing.key"));
  CHECK(tcp.tls->ca == dir.path() + "/etc/certs/ca.pem");

  // And into a node_config: one transport per tier, in registration order,
  // when this build has them all.
  auto tiers = buildable_tiers();
  if (std::find(tiers.begin(), tiers.end(), "tcp") != tiers.end()) {
    auto config = make_node_config(*settings);
    REQUIRE(config);
    std::vector<std::string> names;
    for (const auto& [name, factory] : config->transports) {
      names.push_back(name);
      CHECK(factory);
    }
    CHECK(names == std::vector<std::string>{"shm", "pipe", "tcp"});
    CHECK(config->log); // log_level set one
    CHECK(config->name == "billing");
    CHECK(config->limits.max_frame == 1u << 20);
  }
}

TEST_CASE("an empty configuration keeps node_config's defaults",
          "[config][unit]") {
  auto settings = parse_node_settings("# nothing\n");
  REQUIRE(settings);
  const node_config defaults;
  const auto& node = settings->node;
  CHECK(node.name == defaults.name);
  CHECK(node.join_directory == defaults.join_directory);
  CHECK(node.directory == defaults.directory);
  CHECK(node.preferred_tiers.empty());
  CHECK(node.max_mailbox == defaults.max_mailbox);
  CHECK(node.allowed_uids.empty());
  CHECK(node.allowed_gids.empty());
  CHECK(node.handshake_timeout == defaults.handshake_timeout);
  CHECK(node.recursion_limit == defaults.recursion_limit);
  CHECK(node.worker_threads == defaults.worker_threads);
  CHECK(node.scheduler == defaults.scheduler);
  CHECK(node.idle_spin == defaults.idle_spin);
  CHECK(node.log_format == log_format::text);
  CHECK_FALSE(node.trace);
  CHECK(node.limits.max_frame == defaults.limits.max_frame);
  CHECK(node.limits.max_queued == defaults.limits.max_queued);
  CHECK(node.limits.spare_buffers == defaults.limits.spare_buffers);
  CHECK_FALSE(settings->log_threshold);
  CHECK(settings->tiers.empty());
  CHECK_FALSE(settings->tcp);
  auto config = make_node_config(std::move(*settings));
  REQUIRE(config);
  CHECK(config->transports.empty());
  CHECK_FALSE(config->log);

  // [tiers.tcp] without settings takes tcp::options' defaults.
  auto bare_tcp = parse_node_settings("[tiers.tcp]\n");
  REQUIRE(bare_tcp);
  REQUIRE(bare_tcp->tcp);
  const tcp::options tcp_defaults;
  CHECK(bare_tcp->tcp->listen == tcp_defaults.listen);
  CHECK(bare_tcp->tcp->heartbeat == tcp_defaults.heartbeat);
  CHECK(bare_tcp->tcp->unreachable_after == tcp_defaults.unreachable_after);
  CHECK_FALSE(bare_tcp->tcp->tls);
}

TEST_CASE("each kind of mistake in a configuration names the line, column "
          "and key",
          "[config][unit]") {
  struct mistake {
    const char* toml;
    const char* message; ///< the start of the error's text
  };
  const mistake mistakes[] = {
    // Unknown keys, at the key.
    {"name = \"a\"\nnmae = \"b\"\n", "<string>:2:1: nmae: unknown key"},
    {"[limits]\nmax_frames = 1\n", "<string>:2:1: limits.max_frames: unknown "
                                   "key"},
    {"[tiers.tcp]\nlisten = \"127.0.0.1:0\"\n  lisen = \"x\"\n",
     "<string>:3:3: tiers.tcp.lisen: unknown key"},
    {"[tiers.shm]\nspin = \"1us\"\n",
     "<string>:2:1: tiers.shm.spin: unknown key: the shm tier has no "
     "settings"},
    {"[tiers.tcp.tls]\ncert = \"x\"\n",
     "<string>:2:1: tiers.tcp.tls.cert: unknown key"},
    {"preferred_tiers = [{ nodes = \"a\", tier = \"pipe\", x = 1 }]\n"
     "[tiers.pipe]\n",
     "<string>:1:50: preferred_tiers.x: unknown key"},
    {"[[rules]]\nprincipal = \"uid:7\"\nverbs = \"post\"\nname = \"x\"\n",
     "<string>:4:1: rules.name: unknown key"},
    {"[[rules]]\nprincipal = \"uid:7\"\nverbs = \"shout\"\n",
     "<string>:3:9: rules.verbs: "},
    {"[[rules]]\nprincipal = \"uid:7\"\n",
     "<string>:1:1: rules: rules need a 'principal' and 'verbs'"},
    // Wrong types, at the value.
    {"join_directory = \"yes\"\n",
     "<string>:1:18: join_directory: expects a boolean (true or false), not "
     "a string"},
    {"\n\nhandshake_timeout = 2000\n",
     "<string>:3:21: handshake_timeout: expects a duration as a string with "
     "a unit"},
    {"allowed_uids = [1000, \"root\"]\n",
     "<string>:1:23: allowed_uids: expects an integer, not a string"},
    {"worker_threads = 2.5\n",
     "<string>:1:18: worker_threads: expects an integer, not a "
     "floating-point number"},
    {"limits = 5\n", "<string>:1:10: limits: expects a table, not an "
                     "integer"},
    {"tiers = [\"shm\"]\n", "<string>:1:9: tiers: expects a table, not an "
                            "array"},
    {"[limits]\nmax_frame = true\n",
     "<string>:2:13: limits.max_frame: expects a size"},
    // Bad values, at the value.
    {"idle_spin = \"-5us\"\n", "<string>:1:13: idle_spin: '-5us' is negative"},
    {"[tiers.tcp]\nheartbeat = \"-1s\"\n",
     "<string>:2:13: tiers.tcp.heartbeat: '-1s' is negative"},
    {"handshake_timeout = \"2 s\"\n",
     "<string>:1:21: handshake_timeout: '2 s' has no known unit"},
    {"handshake_timeout = \"0ms\"\n",
     "<string>:1:21: handshake_timeout: '0ms' is too short: at least 1ms"},
    {"handshake_timeout = \"1500us\"\n",
     "<string>:1:21: handshake_timeout: '1500us' is not a whole number of "
     "milliseconds"},
    {"scheduler = \"fastest\"\n",
     "<string>:1:13: scheduler: 'fastest' is not one of automatic, "
     "work_stealing, sharing, latency"},
    {"log_level = \"loud\"\n", "<string>:1:13: log_level: 'loud' is not one "
                               "of debug, info, warning, error"},
    {"worker_threads = -1\n",
     "<string>:1:18: worker_threads: -1 is out of range: from 0 to 1024"},
    {"allowed_gids = [-3]\n",
     "<string>:1:17: allowed_gids: -3 is out of range"},
    {"name = \".hidden\"\n", "<string>:1:8: name: '.hidden' is not a node "
                             "name"},
    {"[limits]\nmax_frame = \"4MB\"\n",
     "<string>:2:13: limits.max_frame: '4MB' has no known unit"},
    {"[limits]\nmax_frame = \"1MiB\"\nmax_queued = \"1MiB\"\n",
     "<string>:1:1: limits.max_queued: 1048576 bytes is less than twice "
     "max_frame (2097152)"},
    {"[tiers.tcp]\nlisten = \"localhost\"\n",
     "<string>:2:10: tiers.tcp.listen: 'localhost' is not host:port (no "
     "port)"},
    {"[tiers.tcp]\nadvertise = \"10.0.0.1:0\"\n",
     "<string>:2:13: tiers.tcp.advertise: '10.0.0.1:0' is not host:port "
     "(other nodes cannot dial port 0)"},
    {"[tiers.tcp]\nlisten = \"::1:7000\"\n",
     "<string>:2:10: tiers.tcp.listen: '::1:7000' is not host:port (an IPv6 "
     "host goes in brackets)"},
    {"[tiers.tcp]\nheartbeat = \"3s\"\nunreachable_after = \"3s\"\n",
     "<string>:1:1: tiers.tcp.unreachable_after: 3000ms is not longer than "
     "heartbeat (3000ms)"},
    {"[tiers.tcp]\nmax_handshaking = 0\n",
     "<string>:2:19: tiers.tcp.max_handshaking: 0 is out of range"},
    {"[tiers.tcp.tls]\ncertificate = \"/nonexistent/n.pem\"\n",
     "<string>:2:15: tiers.tcp.tls.certificate: '/nonexistent/n.pem' is not "
     "a file"},
    // Unknown tiers, at the tier's name.
    {"[tiers.smoke]\n", "<string>:1:8: tiers.smoke: not a known tier (shm, "
                        "pipe, tcp, grpc)"},
    {"[tiers.grpc]\nmax_handshaking = 4\n",
     "<string>:2:1: tiers.grpc.max_handshaking: unknown key"},
    {"[tiers.grpc]\nheartbeat = \"5s\"\n",
     "<string>:1:1: tiers.grpc.unreachable_after: 3000ms is not longer than "
     "heartbeat (5000ms): every quiet link would be cut"},
    {"[tiers.pipe]\n\npreferred_tiers = []\n[tiers.carrier-pigeon]\n",
     "<string>:4:8: tiers.carrier-pigeon: not a known tier"},
    {"preferred_tiers = [{ nodes = \"db-*\", tier = \"shm\" }]\n"
     "[tiers.pipe]\n",
     "<string>:1:45: preferred_tiers.tier: 'shm' is not a tier of this "
     "node; add [tiers.shm]"},
    {"preferred_tiers = [{ nodes = \"db-*\", tier = \"smoke\" }]\n",
     "<string>:1:45: preferred_tiers.tier: 'smoke' is not a known tier"},
    {"preferred_tiers = [{ nodes = \"db/*\", tier = \"pipe\" }]\n",
     "<string>:1:30: preferred_tiers.nodes: 'db/*' is not a pattern"},
    {"preferred_tiers = [{ tier = \"pipe\" }]\n[tiers.pipe]\n",
     "<string>:1:20: preferred_tiers: entries need both 'nodes' and 'tier'"},
    // TOML itself.
    {"name = \"a\"\nname = \"b\"\n", "<string>:2:"},
    {"\n\nallowed_uids = [1,\n", "<string>:3:"},
    {"name = 'unterminated\n", "<string>:1:"},
  };
  for (const auto& m : mistakes) {
    INFO(m.toml);
    auto err = parse_error_of(m.toml);
    CHECK(err.code() == errc::invalid_argument);
    CHECK_THAT(err.message(), Catch::StartsWith(m.message));
  }
  // A half-made TLS setup names what is missing.
  temp_dir dir;
  write_file(dir.path() + "/n.pem", "placeholder");
  auto half = parse_error_of("[tiers.tcp.tls]\ncertificate = \"" + dir.path()
                             + "/n.pem\"\n");
  CHECK_THAT(half.message(),
             Catch::StartsWith("<string>:1:1: tiers.tcp.tls: 'private_key' "
                               "is missing"));
}

TEST_CASE("a configuration file's errors name the file, and a missing file is "
          "not_found",
          "[config][unit]") {
  temp_dir dir;
  auto file = dir.path() + "/node.toml";
  write_file(file, "name = \"ok\"\n\n  scheduler = \"none\"\n");
  auto bad = load_node_config(file);
  REQUIRE_FALSE(bad);
  CHECK(bad.code() == errc::invalid_argument);
  CHECK_THAT(bad.error().message(),
             Catch::StartsWith(file + ":3:15: scheduler: 'none'"));
  auto missing = load_node_config(dir.path() + "/absent.toml");
  REQUIRE_FALSE(missing);
  CHECK(missing.code() == errc::not_found);
  CHECK_THAT(missing.error().message(), Catch::Contains("absent.toml"));
  auto folder = load_node_config(dir.path());
  CHECK(folder.code() == errc::invalid_argument);
  auto named = load_node_config_from_string("name = 1\n", "inline.toml");
  REQUIRE_FALSE(named);
  CHECK_THAT(named.error().message(), Catch::StartsWith("inline.toml:1:8: "));
}

TEST_CASE("a node started from a configuration file spawns and posts to "
          "itself",
          "[config][unit]") {
  temp_dir dir;
  auto file = dir.path() + "/node.toml";
  auto tiers = buildable_tiers();
  bool with_tcp = std::find(tiers.begin(), tiers.end(), "tcp") != tiers.end();
  std::string toml = "name = \"from-file\"\n"
                     "directory = \""
                     + dir.path()
                     + "\"\n"
                       "worker_threads = 2\n"
                       "scheduler = \"sharing\"\n"
                       "max_mailbox = 100\n"
                       "log_level = \"error\"\n"
                       "[tiers.shm]\n"
                       "[tiers.pipe]\n";
  if (with_tcp)
    toml += "[tiers.tcp]\nlisten = \"127.0.0.1:0\"\n";
  write_file(file, toml);
  auto config = load_node_config(file);
  INFO((config ? "" : config.error().to_string()));
  REQUIRE(config);
  auto started = node::start(std::move(*config));
  INFO((started ? "" : started.error().to_string()));
  REQUIRE(started);
  auto& self = *started;
  CHECK(self.name() == "from-file");

  auto pings = std::make_shared<probe<std::int64_t>>();
  REQUIRE(self.spawn("counter", [pings](context&) {
    return behavior{
      [pings](const tpb::Ping& ping) { pings->push(ping.seq()); }};
  }));
  for (int i = 0; i < 3; ++i) {
    tpb::Ping ping;
    ping.set_seq(i);
    REQUIRE(self.post("counter", ping));
  }
  REQUIRE(pings->wait_for_count(3));
  CHECK(pings->items() == std::vector<std::int64_t>{0, 1, 2});

  // The node joined the file's directory with the file's tiers.
  auto nodes = self.nodes();
  auto me = std::find_if(nodes.begin(), nodes.end(), [](const node_info& n) {
    return n.name == "from-file";
  });
  REQUIRE(me != nodes.end());
  auto expected_tiers = std::vector<std::string>{"shm", "pipe"};
  if (with_tcp)
    expected_tiers.push_back("tcp");
  CHECK(me->tiers == expected_tiers);
  // max_mailbox = 100 from the file: with the actor held up, posts fill
  // its mailbox, and the one beyond it is refused.
  std::promise<void> release;
  auto gate = release.get_future().share();
  REQUIRE(self.spawn("sloth", [gate](context&) {
    return behavior{[gate](const tpb::Ping&) { gate.wait(); }};
  }));
  int accepted = 0;
  error refusal{errc::ok};
  for (; accepted < 1000; ++accepted) {
    auto posted = self.post("sloth", tpb::Ping{});
    if (!posted) {
      refusal = posted.error();
      break;
    }
  }
  release.set_value();
  CHECK(refusal.code() == errc::resource_exhausted);
  CHECK(accepted >= 100);
  CHECK(accepted <= 101); // one may already be in the handler
}

TEST_CASE("two nodes started from configuration files talk over mutual TLS "
          "with certificates from courier cert",
          "[config][unit][tcp]") {
  auto buildable = buildable_tiers();
  if (std::find(buildable.begin(), buildable.end(), "tcp") == buildable.end()) {
    WARN("this build has no tcp tier; nothing to try");
    return;
  }
  temp_dir dir;
  auto certs = dir.path() + "/certs";
  cert::ca_request ca;
  ca.out = certs;
  REQUIRE(cert::make_ca(ca));
  for (auto name : {"tls-a", "tls-b"}) {
    cert::node_request request;
    request.name = name;
    request.ca = certs;
    request.out = certs;
    REQUIRE(cert::make_node_certificate(request));
  }
  // Only the tcp tier: the route between them cannot take another.
  auto file_for = [&](const std::string& name) {
    auto path = dir.path() + "/" + name + ".toml";
    write_file(path, "name = \"" + name + "\"\ndirectory = \"" + dir.path()
                       + "\"\n[tiers.tcp]\nlisten = \"127.0.0.1:0\"\n"
                         "[tiers.tcp.tls]\ncertificate = \"certs/"
                       + name + ".pem\"\nprivate_key = \"certs/" + name
                       + ".key\"\nca = \"certs/ca.pem\"\n");
    return path;
  };
  auto config_a = load_node_config(file_for("tls-a"));
  auto config_b = load_node_config(file_for("tls-b"));
  REQUIRE(config_a);
  REQUIRE(config_b);
  // Certificate peers may do only what rules allow (docs/security.md).
  config_a->rules = {{"cert:CN=tls-*", "*", verbs::all}};
  config_b->rules = config_a->rules;
  auto a = node::start(std::move(*config_a));
  INFO((a ? "" : a.error().to_string()));
  REQUIRE(a);
  auto b = node::start(std::move(*config_b));
  INFO((b ? "" : b.error().to_string()));
  REQUIRE(b);
  REQUIRE(a->spawn("adder", [](context&) {
    return behavior{[](const tpb::Add& add) {
      tpb::Sum sum;
      sum.set_value(add.a() + add.b());
      return sum;
    }};
  }));
  tpb::Add add;
  add.set_a(40);
  add.set_b(2);
  auto sum = b->send<tpb::Sum>("adder", add, 10s);
  INFO((sum ? "" : sum.error().to_string()));
  REQUIRE(sum);
  CHECK((*sum)->value() == 42);
  auto routes = b->routes();
  REQUIRE(routes.size() == 1);
  CHECK(routes[0].peer == "tls-a");
  CHECK(routes[0].tier == "tcp");
}

TEST_CASE("the example file of docs/configuration.md loads",
          "[config][unit][docs]") {
  std::ifstream in{std::string{COURIER_SOURCE_DIR} + "/docs/configuration.md"};
  REQUIRE(in);
  std::string doc{std::istreambuf_iterator<char>{in}, {}};
  auto section = doc.find("## An example");
  REQUIRE(section != std::string::npos);
  auto start = doc.find("```toml\n", section);
  REQUIRE(start != std::string::npos);
  start += 8;
  auto end = doc.find("```", start);
  REQUIRE(end != std::string::npos);
  auto example = doc.substr(start, end - start);

  // Its TLS files, relative to where the file would be.
  temp_dir dir;
  fs::create_directories(dir.path() + "/certs");
  fs::create_directories(dir.path() + "/ca");
  for (auto file : {"certs/billing.pem", "certs/billing.key", "ca/ca.pem"})
    write_file(dir.path() + "/" + file, "placeholder");
  auto settings = parse_node_settings(example, "configuration.md", dir.path());
  INFO((settings ? "" : settings.error().to_string()));
  REQUIRE(settings);
  CHECK(settings->node.name == "billing");
  CHECK(settings->node.max_mailbox == 100000);
  CHECK(settings->tiers == std::vector<std::string>{"shm", "pipe", "tcp"});
  REQUIRE(settings->tcp);
  REQUIRE(settings->tcp->tls);
  CHECK(settings->tcp->tls->ca == dir.path() + "/ca/ca.pem");
}

TEST_CASE("authorization rules come from [[rules]] tables", "[config][unit]") {
  auto config = load_node_config_from_string(
    "[[rules]]\nprincipal = \"cert:CN=billing*\"\nnames = \"billing.*\"\n"
    "verbs = \"post,send\"\n[[rules]]\nprincipal = \"anonymous\"\n"
    "verbs = \"find\"\n");
  REQUIRE(config);
  REQUIRE(config->rules.size() == 2);
  CHECK(config->rules[0].principal == "cert:CN=billing*");
  CHECK(config->rules[0].names == "billing.*");
  CHECK(config->rules[0].allowed == (verbs::post | verbs::send));
  CHECK(config->rules[1].names == "*");
  CHECK(config->rules[1].allowed == verbs::find);
}

TEST_CASE("static seeds come from 'seeds', and a bad one names its line",
          "[config][unit]") {
  auto config = load_node_config_from_string(
    "seeds = [\"beta@tls://10.0.0.2:7000\", \"gamma@tcp://127.0.0.1:7001\"]\n"
    "seed_cache_ttl = \"500ms\"\n");
  REQUIRE(config);
  REQUIRE(config->seeds.size() == 2);
  CHECK(config->seeds[0].node == "beta");
  CHECK(config->seeds[0].address == "tls://10.0.0.2:7000");
  CHECK(config->seeds[1].node == "gamma");
  CHECK(config->seed_cache_ttl == 500ms);

  auto bad = parse_error_of("name = \"x\"\nseeds = [\n  \"beta@10.0.0.2:7000\",\n]\n");
  CHECK(bad.code() == errc::invalid_argument);
  CHECK(bad.message().find("<string>:3:3: seeds: ") == 0);
  CHECK(bad.message().find("tls://host:port") != std::string::npos);
  CHECK(parse_error_of("seeds = \"beta@tls://h:1\"\n").message().find("array")
        != std::string::npos);
}

TEST_CASE("[tiers.grpc] takes the TCP tier's keys and registers the gRPC "
          "tier",
          "[config]") {
  auto settings = parse_node_settings("[tiers.tcp]\n"
                                      "[tiers.grpc]\n"
                                      "listen = \"127.0.0.1:7100\"\n"
                                      "advertise = \"10.0.0.7:7100\"\n"
                                      "allow_plaintext = true\n"
                                      "heartbeat = \"100ms\"\n"
                                      "unreachable_after = \"1s\"\n"
                                      "handshake_timeout = \"500ms\"\n");
  REQUIRE(settings);
  REQUIRE(settings->grpc);
  CHECK(settings->grpc->listen == "127.0.0.1:7100");
  CHECK(settings->grpc->advertise == "10.0.0.7:7100");
  CHECK(settings->grpc->allow_plaintext);
  CHECK(settings->grpc->heartbeat == 100ms);
  CHECK(settings->grpc->unreachable_after == 1s);
  CHECK(settings->grpc->handshake_timeout == 500ms);
  CHECK_FALSE(settings->grpc->tls);
  CHECK(settings->tiers == std::vector<std::string>{"tcp", "grpc"});
  auto tiers = buildable_tiers();
  REQUIRE(std::find(tiers.begin(), tiers.end(), "grpc") != tiers.end());
  auto config = make_node_config(*settings);
  REQUIRE(config);
  REQUIRE(config->transports.size() == 2);
  CHECK(config->transports[1].first == "grpc");
}

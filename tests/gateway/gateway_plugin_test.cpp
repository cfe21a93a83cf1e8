// The gateway as a node's plug-in (node_config::plugins, [gateway] in a
// configuration file), on a local socket whose callers are who the kernel
// says, and the PostStream verb; called by gRPC's own C++ client.

#include <filesystem>
#include <fstream>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <google/protobuf/any.pb.h>
#include <grpcpp/grpcpp.h>

#include "courier/config/config_file.hpp"
#include "courier/gateway/gateway.hpp"
#include "courier/v1/gateway.grpc.pb.h"
#include "process.hpp"
#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;
namespace gw = courier::v1;

namespace {

void spawn_echo(node& host) {
  REQUIRE(host.spawn("echo", [](context&) {
    return behavior{[](const tpb::Ping& p) {
      tpb::Pong out;
      out.set_seq(p.seq());
      return out;
    }};
  }));
}

google::protobuf::Any ping_any(std::int64_t seq) {
  tpb::Ping p;
  p.set_seq(seq);
  google::protobuf::Any out;
  out.PackFrom(p);
  return out;
}

/// A Send of a Ping to `name` through the gateway at `address`.
grpc::Status send_ping(const std::string& address, const std::string& name) {
  auto stub = gw::Gateway::NewStub(
    grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  gw::SendRequest request;
  request.set_name(name);
  *request.mutable_message() = ping_any(7);
  gw::SendReply reply;
  return stub->Send(&ctx, request, &reply);
}

/// A process listens on a unix socket at `path` (bound and listening);
/// closed with the object.
struct socket_squatter {
  explicit socket_squatter(const std::string& path) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&address),
                   sizeof address)
            == 0);
    REQUIRE(::listen(fd, 4) == 0);
  }
  ~socket_squatter() {
    ::close(fd);
  }
  int fd = -1;
};

} // namespace

TEST_CASE("a node runs the gateway as its plug-in, and says where it serves",
          "[gateway]") {
  quiet_node host{"plugged", [](node_config& config) {
                    config.plugins.emplace_back("gateway",
                                                gateway::plugin({}));
                  }};
  spawn_echo(*host);
  auto address = host->plugin_address("gateway");
  REQUIRE(address);
  CHECK_THAT(*address, Catch::StartsWith("127.0.0.1:"));
  CHECK(*address != "127.0.0.1:0");
  CHECK(send_ping(*address, "echo").ok());
  CHECK(logged(*host.lines, "the gateway serves gRPC on " + *address));
  auto none = host->plugin_address("metrics");
  REQUIRE_FALSE(none);
  CHECK(none.code() == errc::not_found);
}

TEST_CASE("a node whose plug-in cannot start does not start", "[gateway]") {
  temp_dir dir;
  std::ofstream{dir.path() + "/taken"} << "not a socket";
  node_config config;
  config.name = "unplugged";
  config.join_directory = false;
  gateway::options settings;
  settings.listen = "unix:" + dir.path() + "/taken";
  config.plugins.emplace_back("gateway", gateway::plugin(settings));
  auto started = node::start(std::move(config));
  REQUIRE_FALSE(started);
  CHECK(started.code() == errc::already_exists);
  CHECK_THAT(started.error().message(),
             Catch::Contains("the plug-in 'gateway'")
               && Catch::Contains("is not a socket"));
}

TEST_CASE("a configuration file's [gateway] serves a local socket whose "
          "callers are their uid to the gateway's rules",
          "[gateway]") {
  temp_dir dir;
  auto socket = dir.path() + "/gw.sock";
  auto uid = std::to_string(::getuid());
  auto toml = "name = \"filed\"\n"
              "join_directory = false\n"
              "[gateway]\n"
              "listen = \"unix:"
              + socket
              + "\"\n"
                "socket_mode = 0o660\n"
                "max_message = \"1MiB\"\n"
                "default_deadline = \"5s\"\n"
                "[gateway.keepalive]\n"
                "time = \"20s\"\n"
                "[[gateway.rules]]\n"
                "principal = \"uid:"
              + uid
              + "\"\n"
                "names = \"echo\"\n"
                "verbs = \"send\"\n";
  auto config = load_node_config_from_string(toml, "filed.toml");
  INFO((config ? std::string{} : config.error().to_string()));
  REQUIRE(config);
  auto started = node::start(std::move(*config));
  REQUIRE(started);
  spawn_echo(*started);
  REQUIRE(started->plugin_address("gateway"));
  CHECK(*started->plugin_address("gateway") == "unix:" + socket);
  struct stat st {};
  REQUIRE(::stat(socket.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0660);

  // The rule names this process's uid: Send to echo, and nothing else.
  CHECK(send_ping("unix:" + socket, "echo").ok());
  auto refused = send_ping("unix:" + socket, "other");
  CHECK(refused.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK_THAT(refused.error_message(),
             Catch::Contains("uid:" + uid + " may not send to 'other'"));

  // The node stops its plug-in: the socket goes with it.
  started = error{errc::aborted, "stopped"};
  CHECK_FALSE(std::filesystem::exists(socket));
}

TEST_CASE("the gateway serves plaintext only on the loopback or a local "
          "socket, unless told the network is trusted",
          "[gateway]") {
  quiet_node host{"plain"};
  gateway::options settings;
  settings.listen = "0.0.0.0:0";
  auto refused = gateway::server::start(*host, settings);
  REQUIRE_FALSE(refused);
  CHECK(refused.code() == errc::invalid_argument);
  CHECK_THAT(refused.error().message(),
             Catch::Contains("would serve plaintext on 0.0.0.0:0"));
  settings.allow_plaintext = true;
  auto allowed = gateway::server::start(*host, settings);
  REQUIRE(allowed);
  CHECK((*allowed)->port() > 0);
  for (auto loopback : {"127.0.0.1:0", "localhost:0"}) {
    settings.allow_plaintext = false;
    settings.listen = loopback;
    auto local = gateway::server::start(*host, settings);
    INFO(loopback);
    CHECK(local);
  }
}

TEST_CASE("a gateway that cannot start leaves no actor of its own behind",
          "[gateway]") {
  temp_dir dir;
  quiet_node host{"leftover"};
  gateway::options settings;
  settings.tls = gateway::tls_files{dir.path() + "/none.pem",
                                    dir.path() + "/none.key",
                                    dir.path() + "/ca.pem"};
  auto unreadable = gateway::server::start(*host, settings);
  REQUIRE_FALSE(unreadable);
  CHECK(unreadable.code() == errc::invalid_argument);
  std::ofstream{dir.path() + "/taken"} << "not a socket";
  settings = {};
  settings.listen = "unix:" + dir.path() + "/taken";
  auto taken = gateway::server::start(*host, settings);
  REQUIRE_FALSE(taken);
  CHECK(taken.code() == errc::already_exists);
  CHECK(eventually([&] { return host->names("courier.gateway.*").empty(); }));
}

TEST_CASE("a configuration file's [gateway] is checked key by key",
          "[gateway]") {
  auto error_of = [](const std::string& toml) {
    auto parsed = parse_node_settings(toml, "bad.toml");
    REQUIRE_FALSE(parsed);
    CHECK(parsed.code() == errc::invalid_argument);
    return parsed.error().message();
  };
  CHECK_THAT(error_of("[gateway]\nlisten = 7\n"),
             Catch::StartsWith("bad.toml:2:") && Catch::Contains("gateway.listen"));
  CHECK_THAT(error_of("[gateway]\nsocket_mode = 0o1777\n"),
             Catch::Contains("gateway.socket_mode"));
  CHECK_THAT(error_of("[gateway]\nmax_message = 12\n"),
             Catch::Contains("gateway.max_message"));
  CHECK_THAT(error_of("[gateway]\nlistens = \"127.0.0.1:0\"\n"),
             Catch::Contains("gateway.listens") && Catch::Contains("unknown key"));
  CHECK_THAT(error_of("[gateway]\nlisten = \"unix:\"\n"),
             Catch::Contains("names no socket"));
  CHECK_THAT(error_of("[gateway.keepalive]\nmax_ping_strikes = -1\n"),
             Catch::Contains("gateway.keepalive.max_ping_strikes"));
  CHECK_THAT(error_of("[[gateway.rules]]\nprincipal = \"uid:1\"\n"),
             Catch::Contains("gateway.rules"));
  auto parsed = parse_node_settings(
    "[gateway]\nlisten = \"127.0.0.1:0\"\n"
    "services = { \"shop.Orders\" = \"orders\" }\n");
  REQUIRE(parsed);
  REQUIRE(parsed->gateway);
  CHECK(parsed->gateway->services.at("shop.Orders") == "orders");
  CHECK_FALSE(parsed->gateway->rules);
}

TEST_CASE("the gateway's local socket replaces a stale socket, not a live "
          "one, and lets other users in only with rules",
          "[gateway]") {
  temp_dir dir;
  quiet_node host{"local"};
  spawn_echo(*host);
  auto path = dir.path() + "/gw.sock";
  gateway::options settings;
  settings.listen = "unix:" + path;

  { // A socket file nobody listens on: what a killed gateway leaves.
    socket_squatter killed{path};
  }
  REQUIRE(std::filesystem::exists(path));
  {
    auto served = gateway::server::start(*host, settings);
    REQUIRE(served);
    CHECK((*served)->port() == 0);
    CHECK((*served)->address() == "unix:" + path);
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    // No rules: the caller acts as the node.
    CHECK(send_ping("unix:" + path, "echo").ok());

    // A second gateway on a live socket is refused, and leaves it alone.
    auto second = gateway::server::start(*host, settings);
    REQUIRE_FALSE(second);
    CHECK(second.code() == errc::already_exists);
    CHECK(send_ping("unix:" + path, "echo").ok());
  }
  CHECK_FALSE(std::filesystem::exists(path));

  settings.socket_mode = 0666;
  auto open_to_all = gateway::server::start(*host, settings);
  REQUIRE_FALSE(open_to_all);
  CHECK(open_to_all.code() == errc::invalid_argument);
  CHECK_THAT(open_to_all.error().message(), Catch::Contains("needs rules"));

  settings.socket_mode = 0600;
  settings.listen = "unix:" + dir.path() + "/no/such/folder/gw.sock";
  auto nowhere = gateway::server::start(*host, settings);
  REQUIRE_FALSE(nowhere);
  CHECK(nowhere.code() == errc::invalid_argument);
}

TEST_CASE("PostStream takes many posts in one call, in order, and ends at "
          "the first refused with the count before it",
          "[gateway]") {
  quiet_node host{"streamed"};
  struct tally {
    std::mutex mu;
    std::vector<std::int64_t> seen;
  };
  auto got = std::make_shared<tally>();
  REQUIRE(host->spawn("sink", [got](context&) {
    return behavior{[got](const tpb::Ping& p) {
      std::lock_guard guard{got->mu};
      got->seen.push_back(p.seq());
    }};
  }));
  gateway::options settings;
  settings.rules = std::vector<access_rule>{{"anonymous", "sink", verbs::post}};
  auto served = gateway::server::start(*host, settings);
  REQUIRE(served);
  auto stub = gw::Gateway::NewStub(grpc::CreateChannel(
    (*served)->address(), grpc::InsecureChannelCredentials()));

  auto stream = [&](const std::vector<std::string>& names,
                    gw::PostStreamReply& reply, grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    auto writer = stub->PostStream(&ctx, &reply);
    std::int64_t seq = 0;
    for (const auto& name : names) {
      gw::PostRequest request;
      request.set_name(name);
      *request.mutable_message() = ping_any(seq++);
      if (!writer->Write(request))
        break; // the gateway ended the call
    }
    writer->WritesDone();
    return writer->Finish();
  };

  std::vector<std::string> names(1000, "sink");
  gw::PostStreamReply reply;
  grpc::ClientContext ctx;
  REQUIRE(stream(names, reply, ctx).ok());
  CHECK(reply.posted() == 1000);
  REQUIRE(eventually([&] {
    std::lock_guard guard{got->mu};
    return got->seen.size() == 1000;
  }));
  {
    std::lock_guard guard{got->mu};
    for (std::size_t i = 0; i < got->seen.size(); ++i)
      REQUIRE(got->seen[i] == static_cast<std::int64_t>(i));
  }

  // The rules refuse "secret": the call ends there, 5 posted before it.
  std::vector<std::string> broken(5, "sink");
  broken.push_back("secret");
  broken.push_back("sink");
  gw::PostStreamReply partial;
  grpc::ClientContext refused_ctx;
  auto status = stream(broken, partial, refused_ctx);
  CHECK(status.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK_THAT(status.error_message(), Catch::Contains("after 5 posted"));
  auto trailer = refused_ctx.GetServerTrailingMetadata().find("courier-posted");
  REQUIRE(trailer != refused_ctx.GetServerTrailingMetadata().end());
  CHECK(std::string(trailer->second.data(), trailer->second.size()) == "5");
  CHECK((*served)->refusals() == 1);
}

// The gRPC gateway, called by a real gRPC client (the stub gRPC generates
// for C++) over a real socket: every verb, the error codes, deadlines,
// cancellation and bad input.

#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include <google/protobuf/any.pb.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "courier/gateway/gateway.hpp"
#include "courier/v1/gateway.grpc.pb.h"
#include "courier_test/v1/calculator.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "local_node.hpp"
#include "published.hpp"
#include "tcp_support.hpp"
#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;
namespace gw = courier::v1;

namespace {

/// A node with "echo" (Ping -> Pong), "adder" (Add -> Sum), "sloth" (holds
/// every request), "quitter" (Quit stops it), and a gateway in front.
struct served {
  served() {
    REQUIRE(host->spawn("echo", [](context&) {
      return behavior{[](const tpb::Ping& p) {
        tpb::Pong out;
        out.set_seq(p.seq());
        return out;
      }};
    }));
    REQUIRE(host->spawn("adder", [](context&) {
      return behavior{[](const tpb::Add& a) {
        tpb::Sum out;
        out.set_value(a.a() + a.b());
        return out;
      }};
    }));
    REQUIRE(host->spawn("sloth", [](context&) {
      return behavior{[](const tpb::Hold&, context& ctx) {
        // Kept, never answered: the caller's deadline decides.
        static std::mutex mu;
        static std::vector<responder> parked;
        std::lock_guard guard{mu};
        parked.push_back(ctx.take_reply());
      }};
    }));
    REQUIRE(host->spawn("quitter", [](context&) {
      return behavior{[](const tpb::Quit&, context& ctx) { ctx.stop(); }};
    }));
    auto started = gateway::server::start(*host);
    REQUIRE(started);
    server = std::move(*started);
    channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()),
                                  grpc::InsecureChannelCredentials());
    stub = gw::Gateway::NewStub(channel);
  }

  quiet_node host{"gateway-host"};
  std::unique_ptr<gateway::server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<gw::Gateway::Stub> stub;
};

template <class T>
google::protobuf::Any any_of(const T& msg) {
  google::protobuf::Any out;
  out.PackFrom(msg);
  return out;
}

/// A field of /proc/self/status ("Threads:", "VmRSS:"), as a number.
long self_status(const std::string& field) {
  std::ifstream status{"/proc/self/status"};
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(field, 0) == 0)
      return std::stol(line.substr(field.size()));
  return -1;
}

void with_deadline(grpc::ClientContext& ctx, std::chrono::milliseconds left) {
  ctx.set_deadline(std::chrono::system_clock::now() + left);
}

/// A unary call by path with raw bytes, as a client without the .proto
/// makes it; waits for the outcome (5 s deadline).
struct unary_outcome {
  grpc::Status status;
  std::string reply;
};

unary_outcome call_unary(const std::shared_ptr<grpc::Channel>& channel,
                         const std::string& path, const std::string& bytes) {
  grpc::GenericStub generic{channel};
  grpc::ClientContext ctx;
  with_deadline(ctx, 5s);
  grpc::Slice slice{bytes};
  grpc::ByteBuffer request{&slice, 1};
  grpc::ByteBuffer reply;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&ctx, path, grpc::StubOptions{}, &request, &reply,
                    [&](grpc::Status status) { done.set_value(status); });
  unary_outcome out{done.get_future().get(), {}};
  std::vector<grpc::Slice> parts;
  if (out.status.ok() && reply.Dump(&parts).ok())
    for (const auto& part : parts)
      out.reply.append(reinterpret_cast<const char*>(part.begin()),
                       part.size());
  return out;
}

namespace rf = grpc::reflection::v1alpha;

/// One reflection request on a stream of its own, and its answer.
rf::ServerReflectionResponse
reflect(const std::shared_ptr<grpc::Channel>& channel,
        const rf::ServerReflectionRequest& request) {
  auto stub = rf::ServerReflection::NewStub(channel);
  grpc::ClientContext ctx;
  with_deadline(ctx, 5s);
  auto stream = stub->ServerReflectionInfo(&ctx);
  rf::ServerReflectionResponse response;
  REQUIRE(stream->Write(request));
  REQUIRE(stream->WritesDone());
  REQUIRE(stream->Read(&response));
  REQUIRE(stream->Finish().ok());
  return response;
}

std::vector<std::string> listed(const std::shared_ptr<grpc::Channel>& channel) {
  rf::ServerReflectionRequest request;
  request.set_list_services("*");
  auto response = reflect(channel, request);
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service())
    names.push_back(service.name());
  return names;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

grpc::health::v1::HealthCheckResponse::ServingStatus
health_of(const std::shared_ptr<grpc::Channel>& channel,
          const std::string& service) {
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  with_deadline(ctx, 5s);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  auto called = health->Check(&ctx, request, &response);
  return called.ok() ? response.status()
                     : grpc::health::v1::HealthCheckResponse::SERVICE_UNKNOWN;
}

std::shared_ptr<grpc::Channel> channel_to(const gateway::server& server) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(server.port()),
                             grpc::InsecureChannelCredentials());
}

} // namespace

TEST_CASE("the gateway sends, posts, finds, lists and broadcasts",
          "[gateway]") {
  served s;
  {
    grpc::ClientContext ctx;
    with_deadline(ctx, 5s);
    gw::SendRequest request;
    request.set_name("adder");
    *request.mutable_message() = any_of(add(40, 2));
    gw::SendReply reply;
    auto status = s.stub->Send(&ctx, request, &reply);
    REQUIRE(status.ok());
    tpb::Sum sum;
    REQUIRE(reply.reply().UnpackTo(&sum));
    CHECK(sum.value() == 42);
    CHECK(reply.reply().type_url()
          == "type.googleapis.com/courier_test.v1.Sum");
  }
  {
    grpc::ClientContext ctx;
    gw::PostRequest request;
    request.set_name("echo");
    *request.mutable_message() = any_of(ping(3));
    gw::PostReply reply;
    CHECK(s.stub->Post(&ctx, request, &reply).ok());
  }
  {
    grpc::ClientContext ctx;
    gw::FindRequest request;
    request.set_name("echo");
    gw::FindReply reply;
    REQUIRE(s.stub->Find(&ctx, request, &reply).ok());
    CHECK(reply.node() == "gateway-host");
  }
  {
    grpc::ClientContext ctx;
    gw::NamesRequest request;
    request.set_pattern("*");
    gw::NamesReply reply;
    REQUIRE(s.stub->Names(&ctx, request, &reply).ok());
    std::vector<std::string> names;
    for (const auto& entry : reply.names())
      names.push_back(entry.actor());
    // The gateway's own actor is not listed.
    for (auto expected : {"adder", "echo", "quitter", "sloth"})
      CHECK(std::find(names.begin(), names.end(), expected) != names.end());
    for (const auto& name : names)
      CHECK(name.rfind("courier.gateway.", 0) != 0);
  }
  {
    grpc::ClientContext ctx;
    with_deadline(ctx, 2s);
    gw::BroadcastRequest request;
    request.set_pattern("*e*"); // echo answers; adder fails (no handler);
                                // sloth never answers
    *request.mutable_message() = any_of(ping(9));
    gw::BroadcastReply reply;
    REQUIRE(s.stub->Broadcast(&ctx, request, &reply).ok());
    REQUIRE(reply.replied_size() == 1);
    CHECK(reply.replied(0).name() == "echo");
    tpb::Pong pong;
    REQUIRE(reply.replied(0).reply().UnpackTo(&pong));
    CHECK(pong.seq() == 9);
    bool adder_failed = false;
    for (const auto& failed : reply.failed())
      if (failed.name() == "adder")
        adder_failed
          = failed.code() == static_cast<unsigned>(errc::unimplemented);
    CHECK(adder_failed);
  }
}

TEST_CASE("the gateway's errors are Courier's codes with their text",
          "[gateway]") {
  served s;
  auto send = [&](const std::string& name, const google::protobuf::Any& msg,
                  std::chrono::milliseconds left = 5s) {
    grpc::ClientContext ctx;
    with_deadline(ctx, left);
    gw::SendRequest request;
    request.set_name(name);
    *request.mutable_message() = msg;
    gw::SendReply reply;
    return s.stub->Send(&ctx, request, &reply);
  };
  auto nobody = send("nobody", any_of(ping(1)));
  CHECK(nobody.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK_THAT(nobody.error_message(), Catch::Contains("nobody"));
  CHECK(send("bad name!", any_of(ping(1))).error_code()
        == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(send("echo", any_of(add(1, 2))).error_code()
        == grpc::StatusCode::UNIMPLEMENTED);

  google::protobuf::Any unknown;
  unknown.set_type_url("type.googleapis.com/no.such.Type");
  CHECK(send("echo", unknown).error_code() == grpc::StatusCode::NOT_FOUND);
  google::protobuf::Any garbage;
  garbage.set_type_url("type.googleapis.com/courier_test.v1.Ping");
  garbage.set_value("\xff\xff\xff\xff not protobuf");
  auto bad = send("echo", garbage);
  CHECK(bad.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(bad.error_message(), Catch::Contains("not a valid"));
  google::protobuf::Any untyped;
  CHECK(send("echo", untyped).error_code()
        == grpc::StatusCode::INVALID_ARGUMENT);

  // The call's deadline is the request's: a request nobody answers ends
  // within it and 50 ms.
  auto began = std::chrono::steady_clock::now();
  auto slow = send("sloth", any_of(tpb::Hold{}), 300ms);
  auto took = std::chrono::steady_clock::now() - began;
  CHECK(slow.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  CHECK(took < 300ms + 50ms + 100ms); // the bound, and the client's own slack

  // Oversized: over the 4 MiB limit, refused by gRPC before Courier.
  tpb::Ping huge;
  huge.set_text(std::string(5u << 20, 'x'));
  CHECK(send("echo", any_of(huge)).error_code()
        == grpc::StatusCode::RESOURCE_EXHAUSTED);
  // The node is fine.
  CHECK(send("echo", any_of(ping(2))).ok());
}

TEST_CASE("a gateway monitor streams the down notice, and a cancelled call's "
          "reply is dropped",
          "[gateway]") {
  served s;
  grpc::ClientContext watch;
  with_deadline(watch, 30s);
  gw::MonitorRequest request;
  request.set_name("quitter");
  auto stream = s.stub->Monitor(&watch, request);
  // The gateway sends the initial metadata once the watch is in place;
  // then the actor quits.
  stream->WaitForInitialMetadata();
  REQUIRE(eventually([&] {
    grpc::ClientContext ctx;
    gw::PostRequest quit;
    quit.set_name("quitter");
    *quit.mutable_message() = any_of(tpb::Quit{});
    gw::PostReply ignored;
    return s.stub->Post(&ctx, quit, &ignored).ok();
  }));
  gw::ActorDown notice;
  REQUIRE(stream->Read(&notice));
  CHECK(notice.name() == "quitter");
  CHECK(notice.reason() == "stopped");
  CHECK_FALSE(stream->Read(&notice));
  CHECK(stream->Finish().ok());

  grpc::ClientContext missing;
  request.set_name("nobody");
  auto none = s.stub->Monitor(&missing, request);
  CHECK_FALSE(none->Read(&notice));
  CHECK(none->Finish().error_code() == grpc::StatusCode::NOT_FOUND);

  // A call cancelled while its request waits: the gateway finishes it
  // CANCELLED, and the node goes on.
  grpc::ClientContext ctx;
  with_deadline(ctx, 10s);
  gw::SendRequest held;
  held.set_name("sloth");
  *held.mutable_message() = any_of(tpb::Hold{});
  gw::SendReply reply;
  auto call = std::async(std::launch::async,
                         [&] { return s.stub->Send(&ctx, held, &reply); });
  std::this_thread::sleep_for(100ms); // a pause so that the call is in flight
  ctx.TryCancel();
  CHECK(call.get().error_code() == grpc::StatusCode::CANCELLED);
  grpc::ClientContext after;
  gw::SendRequest again;
  again.set_name("echo");
  *again.mutable_message() = any_of(ping(5));
  CHECK(s.stub->Send(&after, again, &reply).ok());
}

TEST_CASE("a thousand slow calls at once are held without a thread each",
          "[gateway]") {
  served s;
  gw::Gateway::Stub& stub = *s.stub;
  // Asynchronous client calls on one completion queue.
  grpc::CompletionQueue cq;
  constexpr int calls = 1000;
  struct slot {
    grpc::ClientContext ctx;
    gw::SendReply reply;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<gw::SendReply>> reader;
  };
  std::vector<std::unique_ptr<slot>> slots;
  slots.reserve(calls);
  const auto rss_before = self_status("VmRSS:"); // KiB
  gw::SendRequest request;
  request.set_name("sloth");
  *request.mutable_message() = any_of(tpb::Hold{});
  for (int i = 0; i < calls; ++i) {
    auto& one = *slots.emplace_back(std::make_unique<slot>());
    with_deadline(one.ctx, 1500ms);
    one.reader = stub.AsyncSend(&one.ctx, request, &cq);
    one.reader->Finish(&one.reply, &one.status, &one);
  }
  // Meanwhile the gateway answers others.
  grpc::ClientContext ctx;
  gw::SendRequest quick;
  quick.set_name("echo");
  *quick.mutable_message() = any_of(ping(1));
  gw::SendReply reply;
  CHECK(s.stub->Send(&ctx, quick, &reply).ok());
  // The gateway's process has no thread per call, and the calls waiting
  // (client and server side both live here) cost tens of kilobytes each,
  // mostly gRPC's own (measured: about 38 KiB): under 64 MiB for the
  // thousand.
  CHECK(self_status("Threads:") < 100);
  const auto rss_waiting = self_status("VmRSS:");
  INFO("RSS before " << rss_before << " KiB, with 1000 calls waiting "
                     << rss_waiting << " KiB");
  CHECK(rss_waiting - rss_before < 64 * 1024);
  int expired = 0;
  for (int i = 0; i < calls; ++i) {
    void* tag = nullptr;
    bool ok = false;
    REQUIRE(cq.Next(&tag, &ok));
    if (static_cast<slot*>(tag)->status.error_code()
        == grpc::StatusCode::DEADLINE_EXCEEDED)
      ++expired;
  }
  CHECK(expired == calls);
  cq.Shutdown();
}

TEST_CASE("a gateway with mutual TLS serves callers with a certificate of its "
          "CA and refuses others",
          "[gateway][tls]") {
  temp_dir dir;
  auto certs = mint_certs(dir, {"gw", "caller"});
  auto strangers = mint_certs(dir, {"caller"}, "other-ca");
  quiet_node host{"tls-gateway"};
  REQUIRE(host->spawn("adder", [](context&) {
    return behavior{[](const tpb::Add& a) {
      tpb::Sum out;
      out.set_value(a.a() + a.b());
      return out;
    }};
  }));
  gateway::options settings;
  settings.tls = gateway::tls_files{certs + "/gw.pem", certs + "/gw.key",
                                    certs + "/ca.pem"};
  auto served = gateway::server::start(*host, settings);
  REQUIRE(served);
  auto read = [](const std::string& path) {
    std::ifstream in{path};
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  auto call = [&](const std::string& folder, bool with_cert) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = read(certs + "/ca.pem");
    if (with_cert) {
      tls.pem_private_key = read(folder + "/caller.key");
      tls.pem_cert_chain = read(folder + "/caller.pem");
    }
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("gw"); // the name its certificate carries
    auto channel = grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string((*served)->port()),
      grpc::SslCredentials(tls), args);
    auto stub = gw::Gateway::NewStub(channel);
    grpc::ClientContext ctx;
    with_deadline(ctx, 5s);
    gw::SendRequest request;
    request.set_name("adder");
    *request.mutable_message() = any_of(add(2, 3));
    gw::SendReply reply;
    return stub->Send(&ctx, request, &reply);
  };
  CHECK(call(certs, true).ok());
  CHECK_FALSE(call(certs, false).ok());    // no client certificate
  CHECK_FALSE(call(strangers, true).ok()); // a certificate of another CA
  // Plaintext is not spoken at all.
  auto plain = gw::Gateway::NewStub(
    grpc::CreateChannel("127.0.0.1:" + std::to_string((*served)->port()),
                        grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  with_deadline(ctx, 2s);
  gw::FindRequest find;
  find.set_name("adder");
  gw::FindReply found;
  CHECK_FALSE(plain->Find(&ctx, find, &found).ok());

  gateway::options missing;
  missing.tls = gateway::tls_files{dir.path() + "/none.pem", certs + "/gw.key",
                                   certs + "/ca.pem"};
  auto refused = gateway::server::start(*host, missing);
  REQUIRE_FALSE(refused);
  CHECK(refused.code() == errc::invalid_argument);
  CHECK_THAT(refused.error().message(), Catch::Contains("none.pem"));
}

TEST_CASE("the gateway answers gRPC health checks and server reflection",
          "[gateway]") {
  auto s = std::make_unique<served>();
  using hs = grpc::health::v1::HealthCheckResponse;
  CHECK(health_of(s->channel, "") == hs::SERVING);
  CHECK(health_of(s->channel, "courier.v1.Gateway") == hs::SERVING);
  CHECK(health_of(s->channel, "no.such.Service") == hs::SERVICE_UNKNOWN);

  // Reflection lists the services, as grpcurl's "list" asks.
  auto names = listed(s->channel);
  CHECK(contains(names, "courier.v1.Gateway"));
  CHECK(contains(names, "grpc.health.v1.Health"));
  CHECK(contains(names, "grpc.reflection.v1alpha.ServerReflection"));
  CHECK(contains(names, "grpc.reflection.v1.ServerReflection"));
}

TEST_CASE("an actor serves a .proto service to stock gRPC clients",
          "[gateway]") {
  quiet_node host{"service-host"};
  REQUIRE(host->spawn("calculator", [](context&) {
    return behavior{[](const tpb::Operands& a) {
      tpb::Result out;
      out.set_value(a.a() + a.b());
      return out;
    }};
  }));
  gateway::options settings;
  settings.services = {{"courier_test.v1.Calculator", "calculator"}};
  auto served = gateway::server::start(*host, settings);
  REQUIRE(served);
  auto channel
    = grpc::CreateChannel("127.0.0.1:" + std::to_string((*served)->port()),
                          grpc::InsecureChannelCredentials());
  auto calculator = tpb::Calculator::NewStub(channel);

  grpc::ClientContext ctx;
  with_deadline(ctx, 5s);
  tpb::Operands operands;
  operands.set_a(40);
  operands.set_b(2);
  tpb::Result sum;
  auto called = calculator->Add(&ctx, operands, &sum);
  REQUIRE(called.ok());
  CHECK(sum.value() == 42);

  // Streaming methods and unknown services are not served.
  grpc::ClientContext stream_ctx;
  with_deadline(stream_ctx, 5s);
  auto reader = calculator->Count(&stream_ctx, operands);
  CHECK_FALSE(reader->Read(&sum));
  auto streamed = reader->Finish();
  CHECK(streamed.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  CHECK_THAT(streamed.error_message(), Catch::Contains("unary"));
  CHECK(call_unary(channel, "/no.such.Service/Do", operands.SerializeAsString())
          .status.error_code()
        == grpc::StatusCode::UNIMPLEMENTED);

  // A request that is not the method's input type is refused before the
  // actor sees it.
  CHECK(call_unary(channel, "/courier_test.v1.Calculator/Add",
                   "\xff\xff\xff\xff")
          .status.error_code()
        == grpc::StatusCode::INVALID_ARGUMENT);

  // Health knows the service (it follows the actors on a timer: wait).
  CHECK(eventually([&] {
    return health_of(channel, "courier_test.v1.Calculator")
           == grpc::health::v1::HealthCheckResponse::SERVING;
  }));

  // A service whose descriptor this program lacks is taken: its actor's
  // node publishes it. Here nobody holds the actor: NOT_FOUND.
  gateway::options elsewhere;
  elsewhere.services = {{"shop.Orders", "orders"}};
  auto started = gateway::server::start(*host, elsewhere);
  REQUIRE(started);
  auto absent = call_unary(channel_to(**started), "/shop.Orders/Place", "");
  CHECK(absent.status.error_code() == grpc::StatusCode::NOT_FOUND);
  // A malformed service name is refused at start.
  gateway::options malformed;
  malformed.services = {{"shop Orders!", "orders"}};
  auto refused = gateway::server::start(*host, malformed);
  REQUIRE_FALSE(refused);
  CHECK(refused.code() == errc::invalid_argument);
}

TEST_CASE("a gateway call continues the caller's traceparent, and a call "
          "without one starts a trace",
          "[gateway][trace]") {
  served s;
  // Answers with the trace its request carries: "<trace id> <span id>".
  REQUIRE(s.host->spawn("tracer", [](context&) {
    return behavior{[](const tpb::Ping&, context& ctx) {
      tpb::Pong out;
      out.set_from(ctx.trace_id() + " " + ctx.trace().span_id_hex());
      return out;
    }};
  }));
  auto call = [&](const std::string& traceparent, std::string& told) {
    grpc::ClientContext ctx;
    with_deadline(ctx, 5s);
    if (!traceparent.empty())
      ctx.AddMetadata("traceparent", traceparent);
    gw::SendRequest request;
    request.set_name("tracer");
    *request.mutable_message() = any_of(ping(1));
    gw::SendReply reply;
    auto status = s.stub->Send(&ctx, request, &reply);
    REQUIRE(status.ok());
    const auto& metadata = ctx.GetServerInitialMetadata();
    auto found = metadata.find("traceparent");
    REQUIRE(found != metadata.end());
    told.assign(found->second.data(), found->second.size());
    tpb::Pong pong;
    REQUIRE(reply.reply().UnpackTo(&pong));
    return pong.from();
  };
  const std::string given
    = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  std::string told;
  auto seen = call(given, told);
  CHECK(told == given);
  REQUIRE(seen.size() == 32 + 1 + 16);
  CHECK(seen.substr(0, 32) == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(seen.substr(33) != "00f067aa0ba902b7"); // the gateway's hop

  auto fresh = call("", told);
  auto started = trace_context::parse(told);
  REQUIRE(started);
  REQUIRE(fresh.size() == 32 + 1 + 16);
  CHECK(fresh.substr(0, 32) == started->trace_id_hex());
  CHECK(fresh.substr(0, 32) != "4bf92f3577b34da6a3ce929d0e0e4736");

  // A malformed one is dropped for a new trace, as the W3C text says.
  auto replaced = call("00-not-a-trace-01", told);
  CHECK(trace_context::parse(told));
  CHECK(replaced.substr(0, 32) == trace_context::parse(told)->trace_id_hex());
}

TEST_CASE("a gateway with rules lets each caller do what its certificate's "
          "rules allow and refuses the rest",
          "[gateway][tls][security]") {
  temp_dir dir;
  auto certs = mint_certs(dir, {"gw", "clerk", "auditor"});
  quiet_node host{"ruled-gateway"};
  auto posted = std::make_shared<probe<std::int64_t>>();
  REQUIRE(host->spawn("adder", [posted](context&) {
    return behavior{[](const tpb::Add& a) {
                      tpb::Sum out;
                      out.set_value(a.a() + a.b());
                      return out;
                    },
                    [posted](const tpb::Ping& p) { posted->push(p.seq()); }};
  }));
  REQUIRE(host->spawn("vault", [](context&) {
    return behavior{[](const tpb::Add&) { return tpb::Sum{}; }};
  }));
  gateway::options settings;
  settings.tls = gateway::tls_files{certs + "/gw.pem", certs + "/gw.key",
                                    certs + "/ca.pem"};
  // The clerk may call and find the adder; the auditor may only find.
  settings.rules = std::vector<access_rule>{
    {"cert:CN=clerk", "adder", verbs::send | verbs::find},
    {"cert:CN=auditor", "*", verbs::find}};
  auto served = gateway::server::start(*host, settings);
  REQUIRE(served);
  auto read = [](const std::string& path) {
    std::ifstream in{path};
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  };
  auto stub_for = [&](const std::string& who) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = read(certs + "/ca.pem");
    tls.pem_private_key = read(certs + "/" + who + ".key");
    tls.pem_cert_chain = read(certs + "/" + who + ".pem");
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("gw");
    return gw::Gateway::NewStub(grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string((*served)->port()),
      grpc::SslCredentials(tls), args));
  };
  auto send = [](gw::Gateway::Stub& stub, const std::string& name) {
    grpc::ClientContext ctx;
    with_deadline(ctx, 5s);
    gw::SendRequest request;
    request.set_name(name);
    *request.mutable_message() = any_of(add(2, 3));
    gw::SendReply reply;
    return stub.Send(&ctx, request, &reply);
  };
  auto post = [](gw::Gateway::Stub& stub, const std::string& name) {
    grpc::ClientContext ctx;
    with_deadline(ctx, 5s);
    gw::PostRequest request;
    request.set_name(name);
    *request.mutable_message() = any_of(ping(1));
    gw::PostReply reply;
    return stub.Post(&ctx, request, &reply);
  };
  auto names = [](gw::Gateway::Stub& stub) {
    grpc::ClientContext ctx;
    with_deadline(ctx, 5s);
    gw::NamesRequest request;
    gw::NamesReply reply;
    REQUIRE(stub.Names(&ctx, request, &reply).ok());
    std::vector<std::string> out;
    for (const auto& n : reply.names())
      out.push_back(n.actor());
    std::sort(out.begin(), out.end());
    return out;
  };
  auto clerk = stub_for("clerk");
  auto auditor = stub_for("auditor");
  CHECK(send(*clerk, "adder").ok());
  auto vault = send(*clerk, "vault");
  CHECK(vault.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK_THAT(vault.error_message(),
             Catch::Contains("cert:CN=clerk may not send to 'vault'"));
  CHECK(post(*clerk, "adder").error_code()
        == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(send(*auditor, "adder").error_code()
        == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(names(*clerk) == std::vector<std::string>{"adder"});
  CHECK(names(*auditor) == std::vector<std::string>{"adder", "vault"});
  // Refused before anything reached an actor, and counted.
  CHECK(posted->size() == 0);
  CHECK((*served)->refusals() == 3);

  // A malformed rule stops the gateway from starting.
  gateway::options bad = settings;
  bad.rules = std::vector<access_rule>{{"certificate:x", "*", verbs::all}};
  auto refused = gateway::server::start(*host, bad);
  REQUIRE_FALSE(refused);
  CHECK(refused.code() == errc::invalid_argument);
}

TEST_CASE("the gateway ends the connection of a caller that pings too often, "
          "and keeps a polite one",
          "[gateway][keepalive]") {
  quiet_node host{"keepalive-gateway"};
  REQUIRE(host->spawn("sloth", [](context&) {
    return behavior{[](const tpb::Hold&) {}};
  }));
  gateway::options settings;
  settings.keepalive.min_client_ping_interval = 2s;
  settings.keepalive.max_ping_strikes = 2;
  auto served = gateway::server::start(*host, settings);
  REQUIRE(served);
  // A caller whose channel pings every `every`, with or without calls.
  auto watch_with_pings = [&](std::chrono::milliseconds every,
                              std::chrono::milliseconds watch_for) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(every.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    auto stub = gw::Gateway::NewStub(grpc::CreateCustomChannel(
      "127.0.0.1:" + std::to_string((*served)->port()),
      grpc::InsecureChannelCredentials(), args));
    // A monitor of an actor that never stops: the stream stays open
    // until the connection goes, or the watch ends.
    grpc::ClientContext ctx;
    with_deadline(ctx, watch_for);
    gw::MonitorRequest request;
    request.set_name("sloth");
    auto stream = stub->Monitor(&ctx, request);
    gw::ActorDown notice;
    CHECK_FALSE(stream->Read(&notice));
    return stream->Finish();
  };
  // Pings every 100 ms against a floor of 2 s: GOAWAY after two strikes.
  auto rude = watch_with_pings(100ms, 15s);
  CHECK(rude.error_code() == grpc::StatusCode::UNAVAILABLE);
  // Pings every 3 s: the watch lasts until its own deadline.
  auto polite = watch_with_pings(3s, 4s);
  CHECK(polite.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
}

TEST_CASE("the gateway's Types gives the descriptors a client builds a "
          "name's messages from",
          "[gateway]") {
  served s;
  grpc::ClientContext ctx;
  with_deadline(ctx, 5s);
  gw::TypesRequest request;
  request.set_name("adder");
  gw::TypesReply reply;
  REQUIRE(s.stub->Types(&ctx, request, &reply).ok());
  CHECK(reply.node() == "gateway-host");
  // A pool of the client's own, from the descriptors alone: it builds an
  // Add, and the adder answers it.
  google::protobuf::DescriptorPool pool;
  for (const auto& bytes : reply.file_descriptor_protos()) {
    google::protobuf::FileDescriptorProto file;
    REQUIRE(file.ParseFromString(bytes));
    if (pool.FindFileByName(file.name()) == nullptr)
      REQUIRE(pool.BuildFile(file) != nullptr);
  }
  const auto* add_type = pool.FindMessageTypeByName("courier_test.v1.Add");
  REQUIRE(add_type != nullptr);
  google::protobuf::DynamicMessageFactory factory{&pool};
  std::unique_ptr<google::protobuf::Message> add_msg{
    factory.GetPrototype(add_type)->New()};
  add_msg->GetReflection()->SetInt64(add_msg.get(),
                                     add_type->FindFieldByName("a"), 40);
  add_msg->GetReflection()->SetInt64(add_msg.get(),
                                     add_type->FindFieldByName("b"), 2);
  grpc::ClientContext call;
  with_deadline(call, 5s);
  gw::SendRequest send;
  send.set_name("adder");
  send.mutable_message()->set_type_url("type.googleapis.com/courier_test.v1.Add");
  send.mutable_message()->set_value(add_msg->SerializeAsString());
  gw::SendReply sum;
  REQUIRE(s.stub->Send(&call, send, &sum).ok());
  tpb::Sum value;
  REQUIRE(sum.reply().UnpackTo(&value));
  CHECK(value.value() == 42);

  grpc::ClientContext missing;
  request.set_name("nobody");
  CHECK(s.stub->Types(&missing, request, &reply).error_code()
        == grpc::StatusCode::NOT_FOUND);
}

TEST_CASE("a service's health follows its actor: not serving while the name "
          "is not held, serving again when it is",
          "[gateway][health]") {
  quiet_node host{"health-host"};
  auto calculator = [](context&) {
    return behavior{[](const tpb::Operands& a) {
      tpb::Result out;
      out.set_value(a.a() + a.b());
      return out;
    }};
  };
  REQUIRE(host->spawn("calculator", calculator));
  gateway::options settings;
  settings.services = {{"courier_test.v1.Calculator", "calculator"}};
  settings.health_interval = 20ms;
  auto served = gateway::server::start(*host, settings);
  REQUIRE(served);
  auto channel = channel_to(**served);
  auto status = [&] { return health_of(channel, "courier_test.v1.Calculator"); };
  using hs = grpc::health::v1::HealthCheckResponse;
  REQUIRE(eventually([&] { return status() == hs::SERVING; }));
  REQUIRE(host->stop("calculator"));
  REQUIRE(eventually([&] { return status() == hs::NOT_SERVING; }, 2s));
  REQUIRE(host->spawn("calculator", calculator));
  REQUIRE(eventually([&] { return status() == hs::SERVING; }, 2s));
}

TEST_CASE("spawn publishes the services an actor declares, with their "
          ".proto, until the actor stops, and unknown and malformed services are "
          "refused",
          "[gateway][runtime]") {
  temp_dir dir;
  local_node a{dir, "services-a"};
  local_node b{dir, "services-b"};
  auto calculator = [](context&) {
    return behavior{[](const tpb::Operands& x) {
      tpb::Result out;
      out.set_value(x.a() + x.b());
      return out;
    }};
  };
  spawn_options unknown;
  unknown.services = {"shop.Orders"}; // not linked into this program
  auto refused = a->spawn("calculator", calculator, unknown);
  REQUIRE_FALSE(refused);
  CHECK(refused.code() == errc::not_found);
  CHECK_THAT(refused.error().message(), Catch::Contains("shop.Orders"));
  spawn_options malformed;
  malformed.services = {"no spaces allowed"};
  CHECK(a->spawn("calculator", calculator, malformed).code()
        == errc::invalid_argument);

  spawn_options serving;
  serving.services = {"courier_test.v1.Calculator"};
  REQUIRE(a->spawn("calculator", calculator, serving));
  auto listed_by_b = [&] {
    for (const auto& s : b->served_services())
      if (s.service == "courier_test.v1.Calculator" && s.actor == "calculator"
          && s.node == "services-a")
        return true;
    return false;
  };
  REQUIRE(eventually(listed_by_b));
  // The service's file is among the types the node publishes.
  CHECK(publishes_service(*b.instance, "services-a",
                          "courier_test.v1.Calculator"));
  REQUIRE(a->stop("calculator"));
  REQUIRE(eventually([&] { return !listed_by_b(); }));
}

TEST_CASE("a gateway serves a service that an actor of another process "
          "declared at spawn, from the descriptors its node publishes: "
          "reflection lists and describes it, health follows the actor",
          "[gateway][reflection][health]") {
  // This program knows nothing of shop.Orders: only the other process
  // does.
  REQUIRE(google::protobuf::DescriptorPool::generated_pool()
            ->FindServiceByName("shop.Orders")
          == nullptr);
  temp_dir dir;
  child_process shop{{COURIER_TEST_NODE, "--dir", dir.path(), "--name",
                      "shop", "orders"}};
  REQUIRE(shop.wait_for_line("ready"));
  local_node host{dir, "gateway-of-shop"};
  gateway::options open;
  open.health_interval = 20ms;
  auto served = gateway::server::start(*host.instance, open);
  REQUIRE(served);
  // A gateway whose rules let callers find the orders actor, not call it.
  gateway::options ruled;
  ruled.rules = std::vector<access_rule>{{"anonymous", "orders", verbs::find}};
  auto guarded = gateway::server::start(*host.instance, ruled);
  REQUIRE(guarded);
  auto channel = channel_to(**served);

  // Reflection lists it beside the gateway's own services.
  auto names = listed(channel);
  CHECK(contains(names, "shop.Orders"));
  CHECK(contains(names, "courier.v1.Gateway"));
  CHECK(contains(names, "grpc.health.v1.Health"));
  CHECK(contains(names, "grpc.reflection.v1alpha.ServerReflection"));

  // ... and describes it: a client builds its messages from the answer,
  // as grpcurl does.
  rf::ServerReflectionRequest symbol;
  symbol.set_file_containing_symbol("shop.Orders.Place");
  auto described = reflect(channel, symbol);
  REQUIRE(described.has_file_descriptor_response());
  google::protobuf::DescriptorPool pool;
  const auto& files = described.file_descriptor_response().file_descriptor_proto();
  // Imports come after the file that needs them: build them first.
  for (auto i = files.size(); i-- > 0;) {
    google::protobuf::FileDescriptorProto file;
    REQUIRE(file.ParseFromString(files.Get(i)));
    REQUIRE(pool.BuildFile(file) != nullptr);
  }
  const auto* place = pool.FindMethodByName("shop.Orders.Place");
  REQUIRE(place != nullptr);
  rf::ServerReflectionRequest by_name;
  by_name.set_file_by_filename("shop/orders.proto");
  CHECK(reflect(channel, by_name).has_file_descriptor_response());
  rf::ServerReflectionRequest missing;
  missing.set_file_containing_symbol("shop.Nothing");
  CHECK(reflect(channel, missing).error_response().error_code()
        == static_cast<int>(grpc::StatusCode::NOT_FOUND));

  google::protobuf::DynamicMessageFactory factory{&pool};
  auto order = std::unique_ptr<google::protobuf::Message>(
    factory.GetPrototype(place->input_type())->New());
  auto* fields = order->GetReflection();
  fields->SetString(order.get(), place->input_type()->FindFieldByName("item"),
                    "lamp");
  fields->SetInt32(order.get(),
                   place->input_type()->FindFieldByName("quantity"), 3);

  // Refused by the rules before anything reaches the actor.
  for (int i = 0; i < 3; ++i)
    CHECK(call_unary(channel_to(**guarded), "/shop.Orders/Place",
                     order->SerializeAsString())
            .status.error_code()
          == grpc::StatusCode::PERMISSION_DENIED);
  CHECK((*guarded)->refusals() == 3);
  // Those the rules let find it see it listed; the call goes nowhere.
  CHECK(contains(listed(channel_to(**guarded)), "shop.Orders"));

  auto placed = call_unary(channel, "/shop.Orders/Place",
                           order->SerializeAsString());
  REQUIRE(placed.status.ok());
  auto reply = std::unique_ptr<google::protobuf::Message>(
    factory.GetPrototype(place->output_type())->New());
  REQUIRE(reply->ParseFromString(placed.reply));
  const auto* placed_type = place->output_type();
  // order-1: none of the refused calls was taken.
  CHECK(reply->GetReflection()->GetString(
          *reply, placed_type->FindFieldByName("order_id"))
        == "order-1");
  CHECK(reply->GetReflection()->GetString(
          *reply, placed_type->FindFieldByName("item"))
        == "lamp");

  // Unknown methods and services, and bytes that are no PlaceOrder.
  auto cancel = call_unary(channel, "/shop.Orders/Cancel", "");
  CHECK(cancel.status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  CHECK_THAT(cancel.status.error_message(), Catch::Contains("Cancel"));
  CHECK(call_unary(channel, "/shop.Nothing/Place", "").status.error_code()
        == grpc::StatusCode::UNIMPLEMENTED);
  auto garbage = call_unary(channel, "/shop.Orders/Place", "\xff\xff\xff\xff");
  CHECK(garbage.status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);

  // Health: serving while the actor lives; an order of nothing stops it,
  // and its node withdraws the service.
  using hs = grpc::health::v1::HealthCheckResponse;
  REQUIRE(eventually([&] { return health_of(channel, "shop.Orders") == hs::SERVING; }));
  fields->SetInt32(order.get(),
                   place->input_type()->FindFieldByName("quantity"), 0);
  CHECK_FALSE(
    call_unary(channel, "/shop.Orders/Place", order->SerializeAsString())
      .status.ok());
  REQUIRE(eventually(
    [&] { return health_of(channel, "shop.Orders") == hs::NOT_SERVING; }, 5s));
  CHECK(call_unary(channel, "/shop.Orders/Place", order->SerializeAsString())
          .status.error_code()
        == grpc::StatusCode::UNIMPLEMENTED);
  CHECK_FALSE(contains(listed(channel), "shop.Orders"));
  shop.close_stdin();
  CHECK(shop.wait_exit(10s));
}

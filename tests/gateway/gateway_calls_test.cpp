// How the gateway runs its calls to actors of its node: the actor handles
// a call on gRPC's thread when it is idle (node::request_here), a long
// handler holds up no call to another actor, and an answer that comes
// after the client cancelled is dropped and counted, for Send and for a
// method an actor serves.

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <google/protobuf/any.pb.h>
#include <grpcpp/grpcpp.h>

#include "courier/gateway/gateway.hpp"
#include "courier/v1/gateway.grpc.pb.h"
#include "courier_test/v1/calculator.grpc.pb.h"
#include "test_support.hpp"

using namespace courier;
using namespace courier::testing;
namespace gw = courier::v1;

namespace {

/// A node with "keeper" (keeps each Hold, and the Operands of the
/// Calculator service, until an Add posted to it answers them all with a
/// Result), "echo" (Ping -> Pong) and "busy" (a Ping takes it a second),
/// behind a gateway serving courier_test.v1.Calculator by "keeper".
struct calls_fixture {
  calls_fixture() {
    REQUIRE(host->spawn("keeper", [this](context& ctx) {
      auto held = std::make_shared<std::vector<responder>>();
      auto keep = [this, held, &ctx] {
        held->push_back(ctx.take_reply());
        kept.push(true);
      };
      return behavior{
        [keep](const tpb::Hold&) { keep(); },
        [keep](const tpb::Operands&) { keep(); },
        [held](const tpb::Add&) {
          tpb::Result answer;
          answer.set_value(7);
          for (auto& r : *held)
            r.deliver(answer);
          held->clear();
        }};
    }));
    REQUIRE(host->spawn("echo", [](context&) {
      return behavior{[](const tpb::Ping& p) {
        tpb::Pong out;
        out.set_seq(p.seq());
        return out;
      }};
    }));
    REQUIRE(host->spawn("busy", [this](context&) {
      return behavior{[this](const tpb::Ping& p) {
        busy_started.push(true);
        // Work that takes long (not a wait for something in the test).
        std::this_thread::sleep_for(std::chrono::seconds{1});
        tpb::Pong out;
        out.set_seq(p.seq());
        return out;
      }};
    }));
    gateway::options settings;
    settings.services = {{"courier_test.v1.Calculator", "keeper"}};
    auto started = gateway::server::start(*host, settings);
    REQUIRE(started);
    server = std::move(*started);
    channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()),
                                  grpc::InsecureChannelCredentials());
    stub = gw::Gateway::NewStub(channel);
  }

  grpc::Status send(const std::string& name,
                    const google::protobuf::Message& msg,
                    grpc::ClientContext& ctx) {
    gw::SendRequest request;
    request.set_name(name);
    request.mutable_message()->PackFrom(msg);
    gw::SendReply reply;
    return stub->Send(&ctx, request, &reply);
  }

  probe<bool> kept;
  probe<bool> busy_started;
  quiet_node host{"gateway-calls"};
  std::unique_ptr<gateway::server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<gw::Gateway::Stub> stub;
};

void with_deadline(grpc::ClientContext& ctx, std::chrono::milliseconds left) {
  ctx.set_deadline(std::chrono::system_clock::now() + left);
}

} // namespace

TEST_CASE("a cancelled Send's late answer is dropped and counted, and the "
          "gateway goes on",
          "[gateway]") {
  calls_fixture f;
  grpc::ClientContext ctx;
  with_deadline(ctx, 10s);
  auto call = std::async(std::launch::async,
                         [&] { return f.send("keeper", tpb::Hold{}, ctx); });
  REQUIRE(f.kept.wait_for_count(1));
  ctx.TryCancel();
  CHECK(call.get().error_code() == grpc::StatusCode::CANCELLED);
  // The server knows once it has read the cancellation (RST_STREAM), which
  // comes before the next call on the same connection: one round trip.
  grpc::ClientContext after;
  with_deadline(after, 5s);
  CHECK(f.send("echo", ping(1), after).ok());
  CHECK(f.server->dropped() == 0);
  REQUIRE(f.host->post("keeper", tpb::Add{}));
  CHECK(eventually([&] { return f.server->dropped() == 1; }));
  grpc::ClientContext again;
  with_deadline(again, 5s);
  CHECK(f.send("echo", ping(2), again).ok());
}

TEST_CASE("a cancelled call to a method an actor serves drops its late "
          "answer and counts it",
          "[gateway]") {
  calls_fixture f;
  auto calculator = tpb::Calculator::NewStub(f.channel);
  grpc::ClientContext ctx;
  with_deadline(ctx, 10s);
  tpb::Operands operands;
  tpb::Result result;
  auto call = std::async(std::launch::async, [&] {
    return calculator->Add(&ctx, operands, &result);
  });
  REQUIRE(f.kept.wait_for_count(1));
  const auto before = f.server->calls();
  ctx.TryCancel();
  CHECK(call.get().error_code() == grpc::StatusCode::CANCELLED);
  // The server finishes the call CANCELLED once it has read the
  // cancellation (counted); the answer comes after that.
  REQUIRE(eventually([&] { return f.server->calls() == before + 1; }));
  REQUIRE(f.host->post("keeper", tpb::Add{}));
  CHECK(eventually([&] { return f.server->dropped() == 1; }));
}

TEST_CASE("a gateway call to an actor busy in a long handler holds up no "
          "call to another actor",
          "[gateway]") {
  calls_fixture f;
  grpc::ClientContext slow_ctx;
  with_deadline(slow_ctx, 10s);
  auto slow
    = std::async(std::launch::async,
                 [&] { return f.send("busy", ping(1), slow_ctx); });
  REQUIRE(f.busy_started.wait_for_count(1));
  // The busy handler may hold the gRPC thread that took its call; others
  // take the next calls.
  for (int i = 0; i < 5; ++i) {
    grpc::ClientContext ctx;
    with_deadline(ctx, 5s);
    auto began = std::chrono::steady_clock::now();
    CHECK(f.send("echo", ping(i), ctx).ok());
    CHECK(std::chrono::steady_clock::now() - began < 500ms);
  }
  CHECK(slow.get().ok());
}

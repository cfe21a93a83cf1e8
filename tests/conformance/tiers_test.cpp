// One suite, every tier: the same verbs, errors, order and limits whether
// the actor lives in this node, in another process of this user (shared
// memory), behind the named pipe, or behind a tier added the way any new
// one is (the fault wrapper, registered by name in node_config::transports).

#include "courier/grpc_tier/grpc_transport.hpp"
#include "fault_transport.hpp"
#include "local_node.hpp"
#include "tcp_support.hpp"

using namespace courier;
using namespace courier::testing;

namespace {

const std::vector<std::string> peer_actors{"echo.p", "adder", "sloth",
                                           "counter", "quitter"};

/// The peer's actors, after a flag for courier_test_node.
std::vector<std::string> peer_actors_with(const std::string& flag) {
  auto args = peer_actors;
  args.insert(args.begin(), flag);
  return args;
}

/// The peer's actors, after flags for courier_test_node.
std::vector<std::string> peer_actors_with_all(std::vector<std::string> flags) {
  flags.insert(flags.end(), peer_actors.begin(), peer_actors.end());
  return flags;
}

/// The actors live in the local node itself.
struct in_process {
  static constexpr const char* tier = "in-process";

  explicit in_process(const temp_dir& dir) : here{dir, "here"} {
    REQUIRE(here->spawn("echo.p", [](context& ctx) {
      return behavior{
        [&ctx](const tpb::Ping& p) {
          tpb::Pong out;
          out.set_seq(p.seq());
          out.set_from(ctx.name());
          return out;
        },
        [](std::shared_ptr<const tpb::Blob> blob) { return blob; },
      };
    }));
    REQUIRE(here->spawn("adder", adder));
    REQUIRE(here->spawn("sloth", sloth));
    REQUIRE(here->spawn("counter", order_counter));
  }

  local_node here;
};

/// The actors live in another process of this user: shared memory.
struct shared_memory {
  static constexpr const char* tier = "shm";

  explicit shared_memory(const temp_dir& dir)
    : peer{start_test_node(dir, "peer", peer_actors)}, here{dir, "here"} {
  }

  std::unique_ptr<child_process> peer;
  local_node here;
};

/// Shared memory again, both nodes on the latency scheduler: idle scheduler
/// threads take frames off the rings themselves, beside the reader threads.
struct polled_shared_memory {
  static constexpr const char* tier = "shm";

  explicit polled_shared_memory(const temp_dir& dir)
    : peer{start_test_node(dir, "peer", peer_actors_with("--latency"))},
      here{dir, "here", [](node_config& config) {
             config.scheduler = scheduler_policy::latency;
           }} {
  }

  std::unique_ptr<child_process> peer;
  local_node here;
};

/// The actors live in another process, reached over the named pipe.
struct named_pipe {
  static constexpr const char* tier = "pipe";

  explicit named_pipe(const temp_dir& dir)
    : peer{start_test_node(dir, "peer", peer_actors_with("--pipe-only"))},
      here{dir, "here", {}, false} {
  }

  std::unique_ptr<child_process> peer;
  local_node here;
};

/// A tier added through the public path alone: the fault wrapper over the
/// pipe, registered as "fault" on both nodes (and nothing else), with a
/// plan that injects nothing. The suite must read the same over it.
struct added_tier {
  static constexpr const char* tier = "fault";

  explicit added_tier(const temp_dir& dir)
    : peer{start_test_node(dir, "peer", peer_actors_with("--fault-only"))},
      here{dir, "here", [](node_config& config) {
             config.transports = {
               {"fault", fault_factory(pipe::factory(),
                                       std::make_shared<fault_plan>())}};
           }} {
  }

  std::unique_ptr<child_process> peer;
  local_node here;
};

/// The actors live in another process, reached over TCP on the loopback
/// (plaintext: allowed there by default), with heartbeats.
struct plain_tcp {
  static constexpr const char* tier = "tcp";

  explicit plain_tcp(const temp_dir& dir)
    : peer{start_test_node(dir, "peer", peer_actors_with("--tcp"))},
      here{dir, "here", [](node_config& config) {
             config.transports = {{"tcp", tcp::factory()}};
             // Plaintext peers may do nothing unless a rule says so.
             config.rules = {{"anonymous", "*", verbs::all}};
           }} {
  }

  std::unique_ptr<child_process> peer;
  local_node here;
};

/// TCP again, with mutual TLS: certificates of one CA on both sides.
struct tls_tcp {
  static constexpr const char* tier = "tcp";

  explicit tls_tcp(const temp_dir& dir)
    : certs{mint_certs(dir, {"here", "peer"})},
      peer{start_test_node(dir, "peer",
                           peer_actors_with_all({"--tcp", "--tls", certs}))},
      here{dir, "here", [&](node_config& config) {
             tcp::options settings;
             settings.tls = tls_files_of(certs, "here");
             config.transports = {{"tcp", tcp::factory(settings)}};
           }} {
  }

  std::string certs;
  std::unique_ptr<child_process> peer;
  local_node here;
};

/// The actors live in another process, reached over the gRPC tier on the
/// loopback (plaintext: allowed there by default), the only tier of both.
struct plain_grpc {
  static constexpr const char* tier = "grpc";

  explicit plain_grpc(const temp_dir& dir)
    : peer{start_test_node(dir, "peer", peer_actors_with("--grpc"))},
      here{dir, "here", [](node_config& config) {
             config.transports = {{"grpc", grpc_tier::factory()}};
             config.rules = {{"anonymous", "*", verbs::all}};
           }} {
  }

  std::unique_ptr<child_process> peer;
  local_node here;
};

/// gRPC again, with mutual TLS (the TCP tier's certificates), and TCP
/// beside it on both nodes: the configuration prefers gRPC for the peer.
struct tls_grpc {
  static constexpr const char* tier = "grpc";

  explicit tls_grpc(const temp_dir& dir)
    : certs{mint_certs(dir, {"here", "peer"})},
      peer{start_test_node(
        dir, "peer",
        peer_actors_with_all({"--grpc", "--with-tcp", "--tls", certs}))},
      here{dir, "here", [&](node_config& config) {
             tcp::options tcp_settings;
             tcp_settings.tls = tls_files_of(certs, "here");
             grpc_tier::options settings;
             settings.tls = tls_files_of(certs, "here");
             config.transports = {{"tcp", tcp::factory(tcp_settings)},
                                  {"grpc", grpc_tier::factory(settings)}};
             config.preferred_tiers = {{"peer", "grpc"}};
           }} {
  }

  std::string certs;
  std::unique_ptr<child_process> peer;
  local_node here;
};

template <class Tier>
void check_tier(Tier& setup) {
  auto routes = setup.here->routes();
  if (std::string{Tier::tier} == "in-process") {
    CHECK(routes.empty());
  } else {
    REQUIRE(routes.size() == 1);
    CHECK(routes[0].tier == Tier::tier);
  }
}

} // namespace

TEMPLATE_TEST_CASE("a request gets its typed reply on every tier",
                   "[conformance]", in_process, shared_memory,
                   polled_shared_memory, named_pipe, added_tier, plain_tcp, tls_tcp, plain_grpc, tls_grpc) {
  temp_dir dir;
  TestType setup{dir};
  auto sum = setup.here->template send<tpb::Sum>("adder", add(40, 2), 5s);
  REQUIRE(sum);
  CHECK((*sum)->value() == 42);
  check_tier(setup);
}

TEMPLATE_TEST_CASE("every error reads the same on every tier",
                   "[conformance]", in_process, shared_memory,
                   polled_shared_memory, named_pipe, added_tier, plain_tcp, tls_tcp, plain_grpc, tls_grpc) {
  temp_dir dir;
  TestType setup{dir};
  CHECK(setup.here->send("nobody", ping(1), 5s).code() == errc::not_found);
  CHECK(setup.here->send("adder", tpb::Stray{}, 5s).code()
        == errc::unimplemented);
  CHECK(setup.here->send("sloth", tpb::Hold{}, 100ms).code()
        == errc::deadline_exceeded);
  CHECK(setup.here->template send<tpb::Pong>("adder", add(1, 1), 5s).code()
        == errc::internal); // a reply of another type
}

TEMPLATE_TEST_CASE("posts keep their order on every tier", "[conformance]",
                   in_process, shared_memory, polled_shared_memory,
                   named_pipe, added_tier, plain_tcp, tls_tcp, plain_grpc, tls_grpc) {
  temp_dir dir;
  TestType setup{dir};
  constexpr int count = 3000;
  for (int i = 0; i < count; ++i)
    REQUIRE(setup.here->post("counter", ping(i)));
  std::int64_t seen = 0;
  REQUIRE(eventually([&] {
    auto sum = setup.here->template send<tpb::Sum>("counter", add(0, 0), 5s);
    seen = sum ? (*sum)->value() : -1;
    return seen >= count * 1000000LL;
  }));
  CHECK(seen == count * 1000000LL);
}

TEMPLATE_TEST_CASE("a burst of large posts, more than a route holds, "
                   "arrives whole and in order on every tier",
                   "[conformance]", in_process, shared_memory,
                   polled_shared_memory, named_pipe, added_tier, plain_tcp, tls_tcp, plain_grpc, tls_grpc) {
  temp_dir dir;
  TestType setup{dir};
  // 160 MiB posted as fast as the route takes them: more than the pipe's
  // 64 MiB queue and the 64 MiB a route lets wait, together. The route holds letters back while its link is full, and
  // a post that would pile up more than 64 MiB is refused at once, to be
  // posted again: nothing is dropped on the way.
  constexpr int count = 160;
  auto pad = std::string(1u << 20, 'b');
  for (int i = 0; i < count; ++i) {
    auto posted = setup.here->post("counter", ping(i, pad));
    while (!posted && posted.code() == errc::resource_exhausted) {
      std::this_thread::yield();
      posted = setup.here->post("counter", ping(i, pad));
    }
    REQUIRE(posted);
  }
  std::int64_t seen = 0;
  REQUIRE(eventually(
    [&] {
      auto sum = setup.here->template send<tpb::Sum>("counter", add(0, 0), 5s);
      seen = sum ? (*sum)->value() : -1;
      return seen >= count * 1000000LL;
    },
    30s));
  CHECK(seen == count * 1000000LL);
  CHECK(setup.here->dead_letters() == 0);
}

TEMPLATE_TEST_CASE("a message larger than a shared-memory ring goes through "
                   "on every tier",
                   "[conformance]", in_process, shared_memory,
                   polled_shared_memory, named_pipe, added_tier, plain_tcp, tls_tcp, plain_grpc, tls_grpc) {
  temp_dir dir;
  TestType setup{dir};
  // 3 MiB: three times a ring, under the 4 MiB frame limit.
  auto big = ping(9, std::string(3u << 20, 'z'));
  auto pong = setup.here->template send<tpb::Pong>("echo.p", big, 10s);
  REQUIRE(pong);
  CHECK((*pong)->seq() == 9);
}

TEMPLATE_TEST_CASE("large fields among small ones arrive exact on every "
                   "tier, both ways",
                   "[conformance]", in_process, shared_memory,
                   polled_shared_memory, named_pipe, added_tier, plain_tcp, tls_tcp, plain_grpc, tls_grpc) {
  temp_dir dir;
  TestType setup{dir};
  // Over the pipe, frames like these are read with their large field apart
  // and the message adopts it; every shape must still read as sent.
  std::string bytes(300000, '\0');
  for (std::size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = static_cast<char>(i * 7 + i / 251);
  std::string text;
  while (text.size() < 100000)
    text += "gr\xc3\xbc\xc3\x9f ";
  std::vector<tpb::Blob> blobs(5);
  blobs[0].set_data(bytes);                    // the big field alone
  blobs[1].set_label("before");                // small fields around it
  blobs[1].set_data(bytes);
  blobs[1].set_after(-42);
  blobs[1].add_chunks("x");
  blobs[2].add_chunks("first");                // one of many, repeated
  blobs[2].add_chunks(bytes);
  blobs[2].add_chunks(bytes.substr(0, 70000));
  blobs[3].set_text(text);                     // a UTF-8 string
  blobs[3].set_right(bytes);                   // and a oneof member
  blobs[4].mutable_inner()->set_data(bytes);   // nested: read whole
  blobs[4].set_label(std::string(70000, 'l')); // two large fields
  for (auto& blob : blobs) {
    auto back = setup.here->template send<tpb::Blob>("echo.p", blob, 10s);
    REQUIRE(back);
    CHECK((*back)->SerializeAsString() == blob.SerializeAsString());
  }
  check_tier(setup);
}

TEMPLATE_TEST_CASE("a message over the frame limit is refused on every "
                   "process-crossing tier",
                   "[conformance]", shared_memory, polled_shared_memory,
                   named_pipe, added_tier, plain_grpc) {
  temp_dir dir;
  TestType setup{dir};
  auto huge = ping(1, std::string(5u << 20, 'x'));
  CHECK(setup.here->send("echo.p", huge, 5s).code()
        == errc::resource_exhausted);
  CHECK(setup.here->send("echo.p", ping(2), 5s)); // the route survives
}

TEMPLATE_TEST_CASE("many threads sending at once each get their own reply "
                   "on every tier",
                   "[conformance]", in_process, shared_memory,
                   polled_shared_memory, named_pipe, added_tier, plain_tcp, tls_tcp, plain_grpc, tls_grpc) {
  temp_dir dir;
  TestType setup{dir};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto sum = setup.here->template send<tpb::Sum>("adder", add(t, i), 10s);
        if (!sum || (*sum)->value() != t + i)
          ++wrong;
      }
    });
  for (auto& th : threads)
    th.join();
  CHECK(wrong == 0);
}

// tools/cert.hpp: offsets, and certificates that really carry mutual TLS.

#include <memory>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <catch2/catch.hpp>

#include "cert.hpp"
#include "process.hpp"

using namespace std::chrono_literals;
using courier::errc;
namespace cert = courier::cert;

TEST_CASE("cert offsets take a sign, a whole number and a unit",
          "[cert][unit]") {
  CHECK(*cert::parse_offset("0") == 0s);
  CHECK(*cert::parse_offset("30s") == 30s);
  CHECK(*cert::parse_offset("-2d") == -48h);
  CHECK(*cert::parse_offset("+1h") == 1h);
  CHECK(*cert::parse_offset("90m") == 90min);
  for (auto bad : {"", "-", "d", "5", "5w", "1.5h", "h1", "- 1h", "1hh",
                   "99999999999999999999d", "40000d"}) {
    INFO(bad);
    auto parsed = cert::parse_offset(bad);
    REQUIRE_FALSE(parsed);
    CHECK(parsed.code() == errc::invalid_argument);
  }
}

namespace {

cert::ca_request ca_at(const std::string& out) {
  cert::ca_request request;
  request.out = out;
  return request;
}

cert::node_request node_at(const std::string& name, const std::string& ca,
                           const std::string& out) {
  cert::node_request request;
  request.name = name;
  request.ca = ca;
  request.out = out;
  return request;
}

struct ssl_ctx_free {
  void operator()(SSL_CTX* p) const noexcept {
    SSL_CTX_free(p);
  }
};
struct ssl_free {
  void operator()(SSL* p) const noexcept {
    SSL_free(p);
  }
};

/// A TLS 1.3 context that presents `node`'s certificate from `folder`,
/// trusts `ca`'s, and requires the peer's.
std::unique_ptr<SSL_CTX, ssl_ctx_free> mutual_tls(const std::string& folder,
                                                  const std::string& node,
                                                  const std::string& ca,
                                                  bool server) {
  std::unique_ptr<SSL_CTX, ssl_ctx_free> ctx{
    SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())};
  REQUIRE(ctx);
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  REQUIRE(SSL_CTX_use_certificate_chain_file(
            ctx.get(), (folder + "/" + node + ".pem").c_str())
          == 1);
  REQUIRE(SSL_CTX_use_PrivateKey_file(
            ctx.get(), (folder + "/" + node + ".key").c_str(), SSL_FILETYPE_PEM)
          == 1);
  REQUIRE(
    SSL_CTX_load_verify_locations(ctx.get(), (ca + "/ca.pem").c_str(), nullptr)
    == 1);
  SSL_CTX_set_verify(
    ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return ctx;
}

/// Runs a handshake between `client` and `server` over a BIO pair, as far
/// as it goes; true if both sides finished it.
bool handshake(SSL* client, SSL* server) {
  BIO* client_end = nullptr;
  BIO* server_end = nullptr;
  REQUIRE(BIO_new_bio_pair(&client_end, 0, &server_end, 0) == 1);
  SSL_set_bio(client, client_end, client_end);
  SSL_set_bio(server, server_end, server_end);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  bool client_done = false;
  bool server_done = false;
  for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
    if (!client_done) {
      auto r = SSL_do_handshake(client);
      client_done = r == 1;
      if (r <= 0 && SSL_get_error(client, r) != SSL_ERROR_WANT_READ)
        break;
    }
    if (!server_done) {
      auto r = SSL_do_handshake(server);
      server_done = r == 1;
      if (r <= 0 && SSL_get_error(server, r) != SSL_ERROR_WANT_READ)
        break;
    }
  }
  // TLS 1.3: the server checks the client's certificate after the client
  // has finished; a read delivers the server's verdict to the client.
  if (client_done && server_done) {
    char byte = 0;
    REQUIRE(SSL_write(client, "x", 1) == 1);
    if (SSL_read(server, &byte, 1) != 1)
      return false;
    REQUIRE(SSL_write(server, "y", 1) == 1);
    if (SSL_read(client, &byte, 1) != 1)
      return false;
  }
  ERR_clear_error();
  return client_done && server_done;
}

} // namespace

TEST_CASE("certificates from courier cert carry a mutual TLS 1.3 handshake "
          "that checks the node's name",
          "[cert][unit]") {
  courier::testing::temp_dir dir;
  auto ca = dir.path() + "/ca";
  auto other_ca = dir.path() + "/other";
  auto certs = dir.path() + "/certs";
  REQUIRE(cert::make_ca(ca_at(ca)));
  auto other_request = ca_at(other_ca);
  other_request.name = "Another CA";
  REQUIRE(cert::make_ca(other_request));
  REQUIRE(cert::make_node_certificate(node_at("server-node", ca, certs)));
  REQUIRE(cert::make_node_certificate(node_at("client-node", ca, certs)));
  REQUIRE(cert::make_node_certificate(node_at("intruder", other_ca, certs)));

  auto server_ctx = mutual_tls(certs, "server-node", ca, true);
  auto connect
    = [&](const std::string& client_node, const std::string& expected_server) {
        auto client_ctx = mutual_tls(certs, client_node, ca, false);
        std::unique_ptr<SSL, ssl_free> client{SSL_new(client_ctx.get())};
        std::unique_ptr<SSL, ssl_free> server{SSL_new(server_ctx.get())};
        // The client checks the server's SAN against the node it dialed.
        SSL_set_hostflags(client.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        REQUIRE(SSL_set1_host(client.get(), expected_server.c_str()) == 1);
        bool done = handshake(client.get(), server.get());
        if (done) {
          X509* peer = SSL_get0_peer_certificate(server.get());
          REQUIRE(peer != nullptr);
          CHECK(X509_check_host(peer, client_node.c_str(), 0, 0, nullptr) == 1);
        }
        return done;
      };
  CHECK(connect("client-node", "server-node"));
  CHECK_FALSE(connect("client-node", "another-node")); // wrong name
  CHECK_FALSE(connect("intruder", "server-node"));     // untrusted CA
}

TEST_CASE("cert functions refuse bad requests with typed errors",
          "[cert][unit]") {
  courier::testing::temp_dir dir;
  auto ca = dir.path() + "/ca";
  auto no_days = ca_at(ca);
  no_days.days = 0;
  CHECK(cert::make_ca(no_days).code() == errc::invalid_argument);
  auto no_name = ca_at(ca);
  no_name.name.clear();
  CHECK(cert::make_ca(no_name).code() == errc::invalid_argument);
  CHECK(cert::make_node_certificate(node_at("n", ca, ca)).code()
        == errc::not_found);
  REQUIRE(cert::make_ca(ca_at(ca)));
  CHECK(cert::make_ca(ca_at(ca)).code() == errc::already_exists);
  // A node certificate is no CA, and a CA needs its own key.
  REQUIRE(cert::make_node_certificate(node_at("n", ca, dir.path() + "/n")));
  namespace fs = std::filesystem;
  auto fake = dir.path() + "/fake";
  auto mixed = dir.path() + "/mixed";
  fs::create_directories(fake);
  fs::create_directories(mixed);
  fs::copy_file(dir.path() + "/n/n.pem", fake + "/ca.pem");
  fs::copy_file(dir.path() + "/n/n.key", fake + "/ca.key");
  fs::copy_file(ca + "/ca.pem", mixed + "/ca.pem");
  fs::copy_file(dir.path() + "/n/n.key", mixed + "/ca.key");
  auto not_ca
    = cert::make_node_certificate(node_at("m", fake, dir.path() + "/m"));
  CHECK(not_ca.code() == errc::invalid_argument);
  CHECK_THAT(not_ca.error().message(),
             Catch::Contains("is not a CA certificate"));
  auto wrong_key
    = cert::make_node_certificate(node_at("m", mixed, dir.path() + "/m"));
  CHECK(wrong_key.code() == errc::invalid_argument);
  CHECK_THAT(wrong_key.error().message(), Catch::Contains("is not the key"));
  CHECK_FALSE(fs::exists(dir.path() + "/m"));
}

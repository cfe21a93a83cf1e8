// `courier cert`: the CLI mints a CA and node certificates, and the real
// `openssl` checks them.

#include <filesystem>
#include <fstream>
#include <sstream>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "process.hpp"

using namespace courier::testing;
namespace fs = std::filesystem;

namespace {

struct run_result {
  int status = -1;
  std::string out; ///< stdout and stderr together
};

/// Runs `argv` with stderr joined to stdout.
run_result run(std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"sh", "-c", "exec \"$0\" \"$@\" 2>&1"});
  child_process child{argv};
  run_result result;
  REQUIRE(child.read_all(result.out));
  auto status = child.wait_exit(std::chrono::seconds{10});
  REQUIRE(status);
  REQUIRE(WIFEXITED(*status));
  result.status = WEXITSTATUS(*status);
  return result;
}

run_result courier_cert(std::vector<std::string> args) {
  args.insert(args.begin(), {COURIER_CLI, "cert"});
  return run(std::move(args));
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string file_text(const fs::path& path) {
  std::ifstream in{path};
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

unsigned mode_of(const fs::path& path) {
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  return info.st_mode & 07777;
}

/// A CA in `dir`/`name`, made through the CLI.
std::string make_ca(const temp_dir& dir, const std::string& name = "ca") {
  auto folder = dir.path() + "/" + name;
  auto made = courier_cert({"ca", "--out", folder});
  INFO(made.out);
  REQUIRE(made.status == 0);
  return folder;
}

run_result verify(const std::string& ca_folder, const std::string& cert) {
  return run({"openssl", "verify", "-CAfile", ca_folder + "/ca.pem", cert});
}

} // namespace

TEST_CASE("courier cert makes a CA and a node certificate that openssl "
          "verifies",
          "[cert][integration]") {
  temp_dir dir;
  auto ca = make_ca(dir);
  CHECK(mode_of(ca + "/ca.key") == 0600);
  auto out = dir.path() + "/certs";
  auto made = courier_cert({"node", "alpha", "--ca", ca, "--out", out, "--san",
                            "IP:10.0.0.1", "--san", "DNS:alpha.example",
                            "--days", "30"});
  INFO(made.out);
  REQUIRE(made.status == 0);
  CHECK(contains(made.out, out + "/alpha.pem"));
  CHECK(mode_of(out + "/alpha.key") == 0600);

  auto verified = verify(ca, out + "/alpha.pem");
  CHECK(verified.status == 0);
  CHECK(contains(verified.out, "alpha.pem: OK"));

  auto node_text
    = run({"openssl", "x509", "-in", out + "/alpha.pem", "-noout", "-text"});
  REQUIRE(node_text.status == 0);
  CHECK(contains(node_text.out, "Subject: CN = alpha"));
  CHECK(contains(node_text.out, "Issuer: CN = Courier dev CA"));
  CHECK(contains(node_text.out,
                 "DNS:alpha, IP Address:10.0.0.1, DNS:alpha.example"));
  CHECK(contains(node_text.out, "CA:FALSE"));
  CHECK(contains(node_text.out, "TLS Web Server Authentication, TLS Web "
                                "Client Authentication"));
  CHECK(contains(node_text.out, "X509v3 Subject Key Identifier"));
  CHECK(contains(node_text.out, "X509v3 Authority Key Identifier"));
  CHECK(contains(node_text.out, "NIST CURVE: P-256"));
  // 30 days from an hour ago: valid in 29 days, no longer in 31.
  CHECK(run({"openssl", "x509", "-in", out + "/alpha.pem", "-noout",
             "-checkend", std::to_string(29 * 86400)})
          .status
        == 0);
  CHECK(run({"openssl", "x509", "-in", out + "/alpha.pem", "-noout",
             "-checkend", std::to_string(31 * 86400)})
          .status
        == 1);

  auto ca_text
    = run({"openssl", "x509", "-in", ca + "/ca.pem", "-noout", "-text"});
  REQUIRE(ca_text.status == 0);
  CHECK(contains(ca_text.out, "X509v3 Basic Constraints: critical"));
  CHECK(contains(ca_text.out, "CA:TRUE"));
  CHECK(contains(ca_text.out, "Certificate Sign, CRL Sign"));
  // The key belongs to the certificate.
  auto cert_key
    = run({"openssl", "x509", "-in", out + "/alpha.pem", "-noout", "-pubkey"});
  auto key_key = run({"openssl", "pkey", "-in", out + "/alpha.key", "-pubout"});
  CHECK(cert_key.status == 0);
  CHECK(cert_key.out == key_key.out);
}

TEST_CASE("an expired or not yet valid node certificate fails openssl "
          "verify",
          "[cert][integration]") {
  temp_dir dir;
  auto ca = make_ca(dir);
  auto out = dir.path() + "/certs";
  REQUIRE(courier_cert({"node", "old", "--ca", ca, "--out", out, "--not-before",
                        "-2d", "--not-after", "-1h"})
            .status
          == 0);
  auto expired = verify(ca, out + "/old.pem");
  CHECK(expired.status != 0);
  CHECK(contains(expired.out, "certificate has expired"));

  REQUIRE(courier_cert(
            {"node", "early", "--ca", ca, "--out", out, "--not-before", "+1h"})
            .status
          == 0);
  auto early = verify(ca, out + "/early.pem");
  CHECK(early.status != 0);
  CHECK(contains(early.out, "certificate is not yet valid"));
}

TEST_CASE("a node certificate of another CA fails openssl verify",
          "[cert][integration]") {
  temp_dir dir;
  auto ours = make_ca(dir, "ours");
  auto theirs = make_ca(dir, "theirs");
  auto out = dir.path() + "/certs";
  REQUIRE(
    courier_cert({"node", "stranger", "--ca", theirs, "--out", out}).status
    == 0);
  CHECK(verify(theirs, out + "/stranger.pem").status == 0);
  auto refused = verify(ours, out + "/stranger.pem");
  CHECK(refused.status != 0);
  CHECK(contains(refused.out, "unable to get local issuer certificate"));
}

TEST_CASE("courier cert keeps existing files unless --force is given",
          "[cert][integration]") {
  temp_dir dir;
  auto ca = make_ca(dir);
  auto ca_before = file_text(ca + "/ca.pem");
  auto again = courier_cert({"ca", "--out", ca});
  CHECK(again.status == 1);
  CHECK(contains(again.out, "courier: already_exists: '" + ca
                              + "/ca.pem' exists; --force replaces it"));
  CHECK(file_text(ca + "/ca.pem") == ca_before);

  auto out = dir.path() + "/certs";
  REQUIRE(courier_cert({"node", "n1", "--ca", ca, "--out", out}).status == 0);
  auto key_before = file_text(out + "/n1.key");
  auto refused = courier_cert({"node", "n1", "--ca", ca, "--out", out});
  CHECK(refused.status == 1);
  CHECK(contains(refused.out, "already_exists"));
  CHECK(file_text(out + "/n1.key") == key_before);

  ::chmod((out + "/n1.key").c_str(), 0644);
  auto forced
    = courier_cert({"node", "n1", "--ca", ca, "--out", out, "--force"});
  CHECK(forced.status == 0);
  CHECK(file_text(out + "/n1.key") != key_before);
  CHECK(mode_of(out + "/n1.key") == 0600); // also when it replaced a file
  CHECK(verify(ca, out + "/n1.pem").status == 0);
}

TEST_CASE("courier cert explains a missing CA, bad offsets and SANs, and an "
          "unwritable folder",
          "[cert][integration]") {
  temp_dir dir;
  auto out = dir.path() + "/certs";
  auto no_ca = courier_cert(
    {"node", "n1", "--ca", dir.path() + "/nowhere", "--out", out});
  CHECK(no_ca.status == 1);
  CHECK(contains(no_ca.out,
                 "courier: not_found: no CA in '" + dir.path() + "/nowhere'"));
  CHECK_FALSE(fs::exists(out)); // nothing made before the CA was found

  auto ca = make_ca(dir);
  for (auto offset : {"2x", "-d", "1.5h", "yesterday", "+"}) {
    INFO(offset);
    auto bad = courier_cert(
      {"node", "n1", "--ca", ca, "--out", out, "--not-after", offset});
    CHECK(bad.status == 2); // bad usage
    CHECK(contains(bad.out, "is not an offset"));
  }
  auto backwards = courier_cert({"node", "n1", "--ca", ca, "--out", out,
                                 "--not-before", "-1h", "--not-after", "-2h"});
  CHECK(backwards.status == 1);
  CHECK(contains(backwards.out, "invalid_argument: the validity ends"));

  for (auto san : {"mail:x@y", "IP:300.1.1.1", "DNS:", "DNS:a,b"}) {
    INFO(san);
    auto bad
      = courier_cert({"node", "n1", "--ca", ca, "--out", out, "--san", san});
    CHECK(bad.status == 1);
    CHECK(contains(bad.out, "invalid_argument: --san"));
  }
  auto bad_name = courier_cert({"node", "bad/name", "--ca", ca, "--out", out});
  CHECK(bad_name.status == 1);
  CHECK(contains(bad_name.out, "is not a node name"));

  // A folder inside a regular file cannot be made, by anyone.
  std::ofstream{dir.path() + "/plain"} << "x";
  auto unmade = courier_cert(
    {"node", "n1", "--ca", ca, "--out", dir.path() + "/plain/sub"});
  CHECK(unmade.status == 1);
  CHECK(contains(unmade.out,
                 "cannot create the folder '" + dir.path() + "/plain/sub'"));

  if (::geteuid() == 0) {
    // A folder another user may not write: as nobody, a permission error.
    fs::create_directory(dir.path() + "/closed");
    ::chmod((dir.path() + "/closed").c_str(), 0755);
    auto denied
      = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "--", COURIER_CLI, "cert", "ca", "--out", dir.path() + "/closed"});
    CHECK(denied.status == 1);
    CHECK(contains(denied.out, "courier: permission_denied: cannot create '"
                                 + dir.path() + "/closed/ca.key'"));
  }
}

TEST_CASE("courier cert has --help for itself and each verb",
          "[cert][integration]") {
  auto help = run({COURIER_CLI, "cert", "--help"});
  CHECK(help.status == 0);
  CHECK(contains(help.out, "DNS:<node name>"));
  auto node_help = run({COURIER_CLI, "cert", "node", "--help"});
  CHECK(node_help.status == 0);
  for (auto option : {"--ca", "--out", "--san", "--days", "--not-before",
                      "--not-after", "--force"})
    CHECK(contains(node_help.out, option));
  auto ca_help = run({COURIER_CLI, "cert", "ca", "--help"});
  CHECK(ca_help.status == 0);
  CHECK(contains(ca_help.out, "--name"));
  CHECK(run({COURIER_CLI, "cert"}).status == 2); // a verb is required
  CHECK(run({COURIER_CLI, "cert", "node", "n1"}).status == 2); // no --ca
}

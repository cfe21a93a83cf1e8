// Minting a development CA and node certificates with OpenSSL 3's C API.

#include "cert.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <system_error>
#include <utility>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace courier::cert {

namespace {

namespace fs = std::filesystem;

// -- OpenSSL handles ---------------------------------------------------------

template <class T, void (*Free)(T*)>
struct openssl_free {
  void operator()(T* p) const noexcept {
    Free(p);
  }
};

using x509_ptr = std::unique_ptr<X509, openssl_free<X509, X509_free>>;
using key_ptr
  = std::unique_ptr<EVP_PKEY, openssl_free<EVP_PKEY, EVP_PKEY_free>>;
using bio_ptr = std::unique_ptr<BIO, openssl_free<BIO, BIO_free_all>>;
using bignum_ptr = std::unique_ptr<BIGNUM, openssl_free<BIGNUM, BN_free>>;
using extension_ptr
  = std::unique_ptr<X509_EXTENSION,
                    openssl_free<X509_EXTENSION, X509_EXTENSION_free>>;

/// OpenSSL's reasons for the last failure, oldest first; empties its queue.
std::string openssl_reasons() {
  std::string text;
  while (auto code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    if (!text.empty())
      text += "; ";
    text += buffer;
  }
  return text.empty() ? "no reason given" : text;
}

error openssl_failure(const std::string& what) {
  return error{errc::internal, what + ": " + openssl_reasons()};
}

// -- files -------------------------------------------------------------------

/// The code for a failed file operation: permission_denied when the system
/// said so, internal otherwise.
errc code_for(int errno_value) {
  switch (errno_value) {
    case EACCES:
    case EPERM:
    case EROFS:
      return errc::permission_denied;
    default:
      return errc::internal;
  }
}

expected<void> make_folder(const fs::path& folder) {
  if (folder.empty())
    return error{errc::invalid_argument, "no output folder given (--out)"};
  std::error_code failed;
  fs::create_directories(folder, failed);
  if (failed)
    return error{code_for(failed.value()), "cannot create the folder '"
                                             + folder.string()
                                             + "': " + failed.message()};
  if (!fs::is_directory(folder))
    return error{errc::invalid_argument,
                 "'" + folder.string() + "' is not a folder"};
  return {};
}

/// already_exists unless `force` or none of `paths` exists: checked before
/// anything is written, so a refusal leaves no half-written pair.
expected<void> check_free(std::initializer_list<fs::path> paths, bool force) {
  if (force)
    return {};
  for (const auto& path : paths) {
    std::error_code ignored;
    if (fs::exists(fs::symlink_status(path, ignored)))
      return error{errc::already_exists,
                   "'" + path.string() + "' exists; --force replaces it"};
  }
  return {};
}

/// Writes `contents` to `path` with mode `mode` (also when it replaces a
/// file with another mode).
expected<void> write_file(const fs::path& path, const std::string& contents,
                          mode_t mode, bool force) {
  int flags
    = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (force ? O_TRUNC : O_EXCL);
  int fd = ::open(path.c_str(), flags, mode);
  auto failed = [&path](const char* what) {
    int saved = errno;
    return error{saved == EEXIST ? errc::already_exists : code_for(saved),
                 std::string{"cannot "} + what + " '" + path.string()
                   + "': " + std::strerror(saved)};
  };
  if (fd < 0)
    return failed("create");
  // A replaced file keeps its old mode through open(); a key must not.
  if (::fchmod(fd, mode) != 0) {
    auto err = failed("set the mode of");
    ::close(fd);
    return err;
  }
  const char* data = contents.data();
  std::size_t left = contents.size();
  while (left > 0) {
    auto n = ::write(fd, data, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      auto err = failed("write");
      ::close(fd);
      return err;
    }
    data += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0)
    return failed("close");
  return {};
}

// -- PEM ---------------------------------------------------------------------

template <class Write>
expected<std::string> to_pem(Write write, const char* what) {
  bio_ptr bio{BIO_new(BIO_s_mem())};
  if (!bio || write(bio.get()) != 1)
    return openssl_failure(std::string{"cannot encode the "} + what);
  char* data = nullptr;
  auto size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

expected<std::string> certificate_pem(X509* cert) {
  return to_pem([cert](BIO* bio) { return PEM_write_bio_X509(bio, cert); },
                "certificate");
}

expected<std::string> key_pem(EVP_PKEY* key) {
  return to_pem(
    [key](BIO* bio) {
      return PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr,
                                      nullptr);
    },
    "private key");
}

/// Writes the certificate and key files of one request.
expected<written_files> write_pair(const fs::path& certificate_path,
                                   const fs::path& key_path, X509* cert,
                                   EVP_PKEY* key, bool force) {
  auto cert_text = certificate_pem(cert);
  if (!cert_text)
    return std::move(cert_text).error();
  auto key_text = key_pem(key);
  if (!key_text)
    return std::move(key_text).error();
  // The key first: a certificate without its key is of no use, and a key
  // left alone by a later failure is at least private.
  if (auto wrote = write_file(key_path, *key_text, 0600, force); !wrote)
    return std::move(wrote).error();
  if (auto wrote = write_file(certificate_path, *cert_text, 0644, force);
      !wrote)
    return std::move(wrote).error();
  return written_files{certificate_path, key_path};
}

// -- certificates ------------------------------------------------------------

expected<key_ptr> new_key() {
  key_ptr key{EVP_EC_gen("P-256")};
  if (!key)
    return openssl_failure("cannot make an EC P-256 key");
  return key;
}

/// One extension, by OpenSSL's configuration syntax ("critical,CA:TRUE").
struct extension {
  int nid;
  std::string value;
};

/// Validity as offsets from now, in seconds.
struct validity {
  std::chrono::seconds not_before;
  std::chrono::seconds not_after;
};

/// A certificate for `key` named `common_name`, signed by `issuer_key`
/// (self-signed when `issuer` is null).
expected<x509_ptr> new_certificate(const std::string& common_name,
                                   EVP_PKEY* key, X509* issuer,
                                   EVP_PKEY* issuer_key, validity valid,
                                   const std::vector<extension>& extensions) {
  x509_ptr cert{X509_new()};
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1)
    return openssl_failure("cannot make a certificate");
  // A random positive serial of 159 bits: unique without bookkeeping.
  bignum_ptr serial{BN_new()};
  if (!serial
      || BN_rand(serial.get(), 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1
      || BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get()))
           == nullptr)
    return openssl_failure("cannot pick a serial number");
  auto* subject = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(
        subject, "CN", MBSTRING_UTF8,
        reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0)
      != 1)
    return openssl_failure("cannot set the subject '" + common_name + "'");
  auto* issuer_name = issuer ? X509_get_subject_name(issuer) : subject;
  if (X509_set_issuer_name(cert.get(), issuer_name) != 1
      || X509_gmtime_adj(X509_getm_notBefore(cert.get()),
                         static_cast<long>(valid.not_before.count()))
           == nullptr
      || X509_gmtime_adj(X509_getm_notAfter(cert.get()),
                         static_cast<long>(valid.not_after.count()))
           == nullptr
      || X509_set_pubkey(cert.get(), key) != 1)
    return openssl_failure("cannot fill in the certificate");
  X509V3_CTX context;
  X509V3_set_ctx(&context, issuer ? issuer : cert.get(), cert.get(), nullptr,
                 nullptr, 0);
  for (const auto& ext : extensions) {
    extension_ptr made{
      X509V3_EXT_nconf_nid(nullptr, &context, ext.nid, ext.value.c_str())};
    if (!made || X509_add_ext(cert.get(), made.get(), -1) != 1)
      return openssl_failure(std::string{"cannot add the extension "}
                             + OBJ_nid2sn(ext.nid) + "=" + ext.value);
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0)
    return openssl_failure("cannot sign the certificate");
  return cert;
}

constexpr int max_days = 100 * 366;

/// How far back validity starts by default, so that a peer whose clock is
/// a little behind does not find a fresh certificate not yet valid.
constexpr std::chrono::seconds clock_skew{3600};

expected<void> check_days(int days) {
  if (days < 1 || days > max_days)
    return error{errc::invalid_argument, "--days must be between 1 and "
                                           + std::to_string(max_days) + ", not "
                                           + std::to_string(days)};
  return {};
}

/// Node names as docs/directory.md has them: letters, digits, '_', '-',
/// '.'; they are also the certificate's DNS name.
expected<void> check_node_name(const std::string& name) {
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  };
  if (name.empty() || name.size() > 253 || name.front() == '.'
      || !std::all_of(name.begin(), name.end(), allowed))
    return error{errc::invalid_argument,
                 "'" + name
                   + "' is not a node name: letters, digits, '_', '-' and "
                     "'.', not starting with '.', at most 253"};
  return {};
}

/// The subjectAltName value: DNS:<name> first, then each extra one once.
expected<std::string> alt_names(const std::string& name,
                                const std::vector<std::string>& sans) {
  std::vector<std::string> entries{"DNS:" + name};
  for (const auto& san : sans) {
    auto colon = san.find(':');
    auto kind = san.substr(0, colon == std::string::npos ? 0 : colon);
    auto value = colon == std::string::npos ? "" : san.substr(colon + 1);
    bool plain
      = !value.empty() && value.find_first_of(", \t\n") == std::string::npos;
    if (kind == "IP") {
      unsigned char address[16];
      if (::inet_pton(AF_INET, value.c_str(), address) != 1
          && ::inet_pton(AF_INET6, value.c_str(), address) != 1)
        return error{errc::invalid_argument,
                     "--san '" + san + "': not an IPv4 or IPv6 address"};
    } else if (kind != "DNS" || !plain) {
      return error{errc::invalid_argument,
                   "--san '" + san
                     + "': expected DNS:<host name> or IP:<address>"};
    }
    if (std::find(entries.begin(), entries.end(), san) == entries.end())
      entries.push_back(san);
  }
  std::string joined;
  for (const auto& entry : entries)
    joined += (joined.empty() ? "" : ",") + entry;
  return joined;
}

/// The CA of `folder`: its certificate and its key, checked to match.
struct authority {
  x509_ptr certificate;
  key_ptr key;
};

expected<authority> load_ca(const fs::path& folder) {
  auto cert_path = folder / "ca.pem";
  auto key_path = folder / "ca.key";
  if (folder.empty())
    return error{errc::invalid_argument, "no CA folder given (--ca)"};
  for (const auto& path : {cert_path, key_path}) {
    std::error_code ignored;
    if (!fs::exists(path, ignored))
      return error{errc::not_found, "no CA in '" + folder.string() + "': '"
                                      + path.string()
                                      + "' is missing (`courier cert ca --out "
                                      + folder.string() + "` makes one)"};
  }
  authority ca{};
  {
    bio_ptr in{BIO_new_file(cert_path.c_str(), "r")};
    if (!in)
      return error{code_for(errno), "cannot read '" + cert_path.string()
                                      + "': " + openssl_reasons()};
    ca.certificate.reset(
      PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr));
    if (!ca.certificate)
      return error{errc::invalid_argument,
                   "'" + cert_path.string()
                     + "' holds no PEM certificate: " + openssl_reasons()};
  }
  {
    bio_ptr in{BIO_new_file(key_path.c_str(), "r")};
    if (!in)
      return error{code_for(errno), "cannot read '" + key_path.string()
                                      + "': " + openssl_reasons()};
    ca.key.reset(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
    if (!ca.key)
      return error{errc::invalid_argument,
                   "'" + key_path.string()
                     + "' holds no PEM private key: " + openssl_reasons()};
  }
  if (X509_check_ca(ca.certificate.get()) < 1)
    return error{errc::invalid_argument,
                 "'" + cert_path.string() + "' is not a CA certificate"};
  if (X509_check_private_key(ca.certificate.get(), ca.key.get()) != 1) {
    ERR_clear_error();
    return error{errc::invalid_argument, "'" + key_path.string()
                                           + "' is not the key of '"
                                           + cert_path.string() + "'"};
  }
  return ca;
}

} // namespace

expected<written_files> make_ca(const ca_request& request) {
  if (request.name.empty())
    return error{errc::invalid_argument, "the CA needs a name (--name)"};
  if (auto ok = check_days(request.days); !ok)
    return std::move(ok).error();
  auto cert_path = request.out / "ca.pem";
  auto key_path = request.out / "ca.key";
  if (auto ok = make_folder(request.out); !ok)
    return std::move(ok).error();
  if (auto ok = check_free({cert_path, key_path}, request.force); !ok)
    return std::move(ok).error();
  auto key = new_key();
  if (!key)
    return std::move(key).error();
  auto days = std::chrono::hours{24} * request.days;
  auto cert = new_certificate(
    request.name, key->get(), nullptr, key->get(),
    {-clock_skew, std::chrono::duration_cast<std::chrono::seconds>(days)},
    {
      {NID_basic_constraints, "critical,CA:TRUE"},
      {NID_key_usage, "critical,keyCertSign,cRLSign"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"},
    });
  if (!cert)
    return std::move(cert).error();
  return write_pair(cert_path, key_path, cert->get(), key->get(),
                    request.force);
}

expected<written_files> make_node_certificate(const node_request& request) {
  if (auto ok = check_node_name(request.name); !ok)
    return std::move(ok).error();
  if (auto ok = check_days(request.days); !ok)
    return std::move(ok).error();
  auto sans = alt_names(request.name, request.sans);
  if (!sans)
    return std::move(sans).error();
  validity valid{};
  valid.not_before = request.not_before.value_or(-clock_skew);
  valid.not_after = request.not_after.value_or(
    valid.not_before
    + std::chrono::duration_cast<std::chrono::seconds>(std::chrono::hours{24}
                                                       * request.days));
  if (valid.not_after <= valid.not_before)
    return error{errc::invalid_argument,
                 "the validity ends (--not-after) before it starts "
                 "(--not-before)"};
  auto ca = load_ca(request.ca);
  if (!ca)
    return std::move(ca).error();
  auto cert_path = request.out / (request.name + ".pem");
  auto key_path = request.out / (request.name + ".key");
  if (auto ok = make_folder(request.out); !ok)
    return std::move(ok).error();
  if (auto ok = check_free({cert_path, key_path}, request.force); !ok)
    return std::move(ok).error();
  auto key = new_key();
  if (!key)
    return std::move(key).error();
  auto cert = new_certificate(request.name, key->get(), ca->certificate.get(),
                              ca->key.get(), valid,
                              {
                                {NID_basic_constraints, "critical,CA:FALSE"},
                                {NID_key_usage, "critical,digitalSignature"},
                                {NID_ext_key_usage, "serverAuth,clientAuth"},
                                {NID_subject_alt_name, *sans},
                                {NID_subject_key_identifier, "hash"},
                                {NID_authority_key_identifier, "keyid:always"},
                              });
  if (!cert)
    return std::move(cert).error();
  return write_pair(cert_path, key_path, cert->get(), key->get(),
                    request.force);
}

expected<std::chrono::seconds> parse_offset(std::string_view text) {
  auto bad = [text](const std::string& why) {
    return error{errc::invalid_argument,
                 "'" + std::string{text} + "' is not an offset (" + why
                   + "); examples: -2d, +1h, 90m, 30s, 0"};
  };
  if (text == "0")
    return std::chrono::seconds{0};
  auto rest = text;
  long long sign = 1;
  if (!rest.empty() && (rest.front() == '-' || rest.front() == '+')) {
    sign = rest.front() == '-' ? -1 : 1;
    rest.remove_prefix(1);
  }
  if (rest.size() < 2)
    return bad("a number and a unit");
  long long seconds_per_unit = 0;
  switch (rest.back()) {
    case 's':
      seconds_per_unit = 1;
      break;
    case 'm':
      seconds_per_unit = 60;
      break;
    case 'h':
      seconds_per_unit = 3600;
      break;
    case 'd':
      seconds_per_unit = 86400;
      break;
    default:
      return bad("the unit is one of s, m, h, d");
  }
  rest.remove_suffix(1);
  long long count = 0;
  auto [end, failed]
    = std::from_chars(rest.data(), rest.data() + rest.size(), count);
  if (failed != std::errc{} || end != rest.data() + rest.size())
    return bad("a whole number before the unit");
  // A century either way: further is a typo, and would overflow time_t
  // arithmetic in some places.
  constexpr long long limit = 100LL * 366 * 86400;
  if (count > limit / seconds_per_unit)
    return bad("at most a hundred years");
  return std::chrono::seconds{sign * count * seconds_per_unit};
}

} // namespace courier::cert

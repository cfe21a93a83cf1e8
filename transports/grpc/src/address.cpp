#include "address.hpp"

#include <charconv>
#include <string_view>

#include <arpa/inet.h>
#include <netinet/in.h>

namespace courier::grpc_tier {

namespace {

constexpr std::string_view plain_scheme = "grpc://";
constexpr std::string_view tls_scheme = "grpcs://";

} // namespace

std::string address::host_port() const {
  auto out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return out + ":" + std::to_string(port);
}

std::string address::published() const {
  if (!tls)
    return std::string{plain_scheme} + host_port();
  return std::string{tls_scheme} + host_port() + "/" + node;
}

expected<address> parse_address(const std::string& text, bool published) {
  address out;
  std::string_view rest = text;
  auto bad = [&](const std::string& why) {
    return error{errc::invalid_argument,
                 "'" + text + "' is not a gRPC tier address: " + why};
  };
  if (published) {
    if (rest.starts_with(tls_scheme)) {
      out.tls = true;
      rest.remove_prefix(tls_scheme.size());
      auto slash = rest.find('/');
      if (slash == std::string_view::npos || slash + 1 == rest.size())
        return bad("grpcs:// names the node after the port (/<node>)");
      out.node = std::string{rest.substr(slash + 1)};
      rest = rest.substr(0, slash);
    } else if (rest.starts_with(plain_scheme)) {
      rest.remove_prefix(plain_scheme.size());
    } else {
      return bad("it names neither grpc:// nor grpcs://");
    }
  }
  std::string_view port;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size()
        || rest[close + 1] != ':')
      return bad("an IPv6 host is written [host]:port");
    out.host = std::string{rest.substr(1, close - 1)};
    port = rest.substr(close + 2);
  } else {
    auto colon = rest.rfind(':');
    if (colon == std::string_view::npos)
      return bad("it has no port (host:port)");
    out.host = std::string{rest.substr(0, colon)};
    port = rest.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(),
                                   value);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size()
      || value > 65535)
    return bad("the port is not a number from 0 to 65535");
  out.port = static_cast<std::uint16_t>(value);
  return out;
}

bool is_loopback(const std::string& host) {
  if (host == "localhost")
    return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

bool is_wildcard(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::";
}

} // namespace courier::grpc_tier

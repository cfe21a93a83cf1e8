#include "address.hpp"

#include <charconv>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

namespace courier::tcp {

std::string address::host_port() const {
  auto out = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return out + ":" + std::to_string(port);
}

std::string address::published() const {
  return (tls ? "tls://" : "tcp://") + host_port();
}

expected<address> parse_address(const std::string& text, bool published) {
  address out;
  std::string_view rest = text;
  auto bad = [&](std::string why) {
    return error{errc::invalid_argument,
                 "'" + text + "' is not a TCP address: " + why};
  };
  if (published) {
    if (rest.rfind("tls://", 0) == 0)
      out.tls = true;
    else if (rest.rfind("tcp://", 0) != 0)
      return bad("it names neither tls:// nor tcp://");
    rest.remove_prefix(6);
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

bool is_loopback(const std::string& bracketed) {
  if (bracketed == "localhost")
    return true;
  auto host = bracketed.size() > 2 && bracketed.front() == '['
                  && bracketed.back() == ']'
                ? bracketed.substr(1, bracketed.size() - 2)
                : bracketed;
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

std::string first_interface_address(const std::string& like) {
  int family = like.find(':') != std::string::npos ? AF_INET6 : AF_INET;
  ifaddrs* all = nullptr;
  if (::getifaddrs(&all) != 0)
    return {};
  std::string out;
  for (auto* i = all; i != nullptr && out.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != family
        || (i->ifa_flags & IFF_UP) == 0 || (i->ifa_flags & IFF_LOOPBACK) != 0)
      continue;
    char text[INET6_ADDRSTRLEN] = {};
    const void* bytes
      = family == AF_INET
          ? static_cast<const void*>(
            &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr)
          : static_cast<const void*>(
            &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr);
    if (family == AF_INET6
        && IN6_IS_ADDR_LINKLOCAL(
          &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr))
      continue; // needs a scope: not for other hosts to dial
    if (::inet_ntop(family, bytes, text, sizeof text) != nullptr)
      out = text;
  }
  ::freeifaddrs(all);
  return out;
}

} // namespace courier::tcp

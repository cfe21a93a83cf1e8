// The registry URL (etcd://host:port[,host:port...][/prefix/]) and key
// ranges: declared in etcd_client.hpp.

#include <charconv>

#include "etcd_client.hpp"

namespace courier::detail {

std::string etcd_endpoint::text() const {
  if (host.find(':') != std::string::npos)
    return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

expected<etcd_target> parse_etcd_url(std::string_view url) {
  auto bad = [&](const std::string& why) {
    return error{errc::invalid_argument, "the registry '" + std::string{url}
                                           + "' is not etcd://host:port[,"
                                             "host:port...][/prefix/]: "
                                           + why};
  };
  constexpr std::string_view scheme = "etcd://";
  if (!url.starts_with(scheme))
    return bad("it does not start with etcd://");
  auto rest = url.substr(scheme.size());
  etcd_target target;
  auto slash = rest.find('/');
  auto hosts = rest.substr(0, slash);
  target.prefix = slash == std::string_view::npos
                    ? std::string{"/courier/v1/"}
                    : std::string{rest.substr(slash)};
  if (target.prefix.back() != '/')
    target.prefix.push_back('/');
  while (!hosts.empty()) {
    auto comma = hosts.find(',');
    auto item = hosts.substr(0, comma);
    hosts = comma == std::string_view::npos ? std::string_view{}
                                            : hosts.substr(comma + 1);
    auto colon = item.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
      return bad("'" + std::string{item} + "' has no host:port");
    auto host = item.substr(0, colon);
    if (host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    auto port_text = item.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(),
                                     port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || end != port_text.data() + port_text.size()
        || port == 0 || port > 65535)
      return bad("'" + std::string{port_text} + "' is not a port");
    target.endpoints.push_back(
      {std::string{host}, static_cast<std::uint16_t>(port)});
  }
  if (target.endpoints.empty())
    return bad("no endpoint");
  return target;
}

std::string etcd_prefix_end(std::string_view prefix) {
  std::string end{prefix};
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0'); // every key
}

} // namespace courier::detail

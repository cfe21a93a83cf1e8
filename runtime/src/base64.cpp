#include "base64.hpp"

#include <cstdint>

namespace courier::detail {

namespace {

constexpr char base64_digits[]
  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

} // namespace

std::string to_base64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    auto n = (std::uint32_t{static_cast<unsigned char>(in[i])} << 16)
             | (std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8)
             | std::uint32_t{static_cast<unsigned char>(in[i + 2])};
    for (int shift : {18, 12, 6, 0})
      out.push_back(base64_digits[(n >> shift) & 63]);
  }
  if (auto left = in.size() - i; left > 0) {
    std::uint32_t n = std::uint32_t{static_cast<unsigned char>(in[i])} << 16;
    if (left == 2)
      n |= std::uint32_t{static_cast<unsigned char>(in[i + 1])} << 8;
    out.push_back(base64_digits[(n >> 18) & 63]);
    out.push_back(base64_digits[(n >> 12) & 63]);
    out.push_back(left == 2 ? base64_digits[(n >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

namespace {

int base64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+' || c == '-')
    return 62;
  if (c == '/' || c == '_')
    return 63;
  return -1;
}

} // namespace

std::optional<std::string> from_base64(std::string_view in) {
  while (!in.empty() && in.back() == '=')
    in.remove_suffix(1);
  if (in.size() % 4 == 1)
    return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = base64_value(c);
    if (v < 0)
      return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

} // namespace courier::detail

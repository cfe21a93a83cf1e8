#include "stats.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace courier::bench {

double quantile(std::vector<double> values, double q) {
  if (values.empty())
    return 0;
  std::sort(values.begin(), values.end());
  auto rank = static_cast<std::size_t>(std::ceil(q * values.size()));
  return values[std::clamp<std::size_t>(rank, 1, values.size()) - 1];
}

json_line& json_line::add(const std::string& key, const std::string& value) {
  fields_.emplace_back(key, "\"" + value + "\"");
  return *this;
}

json_line& json_line::add(const std::string& key, double value) {
  char buf[64];
  if (std::floor(value) == value && std::fabs(value) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", value);
  else
    std::snprintf(buf, sizeof buf, "%.4g", value);
  fields_.emplace_back(key, buf);
  return *this;
}

std::string json_line::str() const {
  std::string out = "{";
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    if (i > 0)
      out += ", ";
    out += "\"" + fields_[i].first + "\": " + fields_[i].second;
  }
  return out + "}";
}

} // namespace courier::bench

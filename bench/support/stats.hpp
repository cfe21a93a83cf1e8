#pragma once

// Small statistics and reporting helpers shared by the benchmarks.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace courier::bench {

/// The q-quantile (0..1) of `values`, by nearest rank; 0 for none.
double quantile(std::vector<double> values, double q);

inline double median(std::vector<double> values) {
  return quantile(std::move(values), 0.5);
}

/// One JSON object on one line: {"k": v, ...}. Values are numbers unless
/// given as strings.
class json_line {
public:
  json_line& add(const std::string& key, const std::string& value);
  json_line& add(const std::string& key, double value);
  std::string str() const;

private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

} // namespace courier::bench

#pragma once

// Courier next to a twin in the same process: runs alternating which side
// goes first, and JSON lines with each side's median and the median of the
// per-run ratios (with the ratios themselves).

#include <cstdio>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "stats.hpp"

namespace courier::bench {

inline std::string ratio_list(const std::vector<double>& ratios) {
  std::string out;
  char buf[32];
  for (auto r : ratios) {
    std::snprintf(buf, sizeof buf, "%s%.3g", out.empty() ? "" : " ", r);
    out += buf;
  }
  return out;
}

/// Medians of each side and the median of the per-run ratios c / r.
inline void report(const std::string& scenario, const std::string& security,
                   const std::vector<double>& c, const std::vector<double>& r,
                   const char* field, std::size_t size, const char* c_name,
                   const char* r_name) {
  std::vector<double> ratio;
  for (std::size_t i = 0; i < c.size(); ++i)
    ratio.push_back(c[i] / r[i]);
  auto runs = static_cast<double>(c.size());
  for (auto [impl, values] : {std::pair{c_name, &c}, std::pair{r_name, &r}}) {
    json_line line;
    line.add("scenario", scenario).add("security", security);
    line.add("impl", impl).add("size", static_cast<double>(size));
    line.add("runs", runs).add(field, median(*values));
    if (std::string{field} == "msgs_per_s")
      line.add("mib_per_s",
               median(*values) * static_cast<double>(size) / (1 << 20));
    std::cout << line.str() << std::endl;
  }
  json_line line;
  line.add("scenario", scenario).add("security", security);
  line.add("impl", std::string{c_name} + "/" + r_name);
  line.add("size", static_cast<double>(size)).add("runs", runs);
  line.add(std::string{field} + "_ratio", median(ratio));
  line.add("per_run", ratio_list(ratio));
  std::cout << line.str() << std::endl;
}

/// Runs `a` and `b` once each per run, alternating which goes first.
template <class A, class B>
void alternate(int runs, A&& a, B&& b) {
  for (int i = 0; i < runs; ++i) {
    if (i % 2 == 0) {
      a(i);
      b(i);
    } else {
      b(i);
      a(i);
    }
  }
}

/// Per-run p50 and p99 of round trips from two sides, reported.
template <class C, class R>
void compare_rtt(const std::string& scenario, const std::string& security,
                 int runs, std::size_t size, C&& c_side, R&& r_side,
                 const char* c_name, const char* r_name) {
  std::vector<double> c50, c99, r50, r99;
  alternate(
    runs,
    [&](int i) {
      auto c = c_side(i);
      c50.push_back(quantile(c, 0.5));
      c99.push_back(quantile(c, 0.99));
    },
    [&](int i) {
      auto r = r_side(i);
      r50.push_back(quantile(r, 0.5));
      r99.push_back(quantile(r, 0.99));
    });
  report(scenario + "_p50", security, c50, r50, "rtt_ns", size, c_name, r_name);
  report(scenario + "_p99", security, c99, r99, "rtt_ns", size, c_name, r_name);
}

template <class C, class R>
void compare_rate(const std::string& scenario, const std::string& security,
                  int runs, std::size_t size, C&& c_side, R&& r_side,
                  const char* c_name, const char* r_name) {
  std::vector<double> c, r;
  alternate(
    runs, [&](int) { c.push_back(c_side()); },
    [&](int) { r.push_back(r_side()); });
  report(scenario, security, c, r, "msgs_per_s", size, c_name, r_name);
}

} // namespace courier::bench

#pragma once

// Command-line flags of the benchmarks: `--name value` and `--name`.

#include <cstdlib>
#include <cstring>

namespace courier::bench {

/// The value after `flag`, or `fallback` when the flag is absent.
inline const char* text_arg(int argc, char** argv, const char* flag,
                            const char* fallback = nullptr) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0)
      return argv[i + 1];
  return fallback;
}

/// The number after `flag`, or `fallback` when the flag is absent.
inline long arg(int argc, char** argv, const char* flag, long fallback) {
  const char* text = text_arg(argc, argv, flag);
  return text != nullptr ? std::strtol(text, nullptr, 10) : fallback;
}

/// The number after `flag`, fractions allowed, or `fallback`.
inline double real_arg(int argc, char** argv, const char* flag,
                       double fallback) {
  const char* text = text_arg(argc, argv, flag);
  return text != nullptr ? std::strtod(text, nullptr) : fallback;
}

/// True when `flag` is given.
inline bool has_flag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], flag) == 0)
      return true;
  return false;
}

} // namespace courier::bench

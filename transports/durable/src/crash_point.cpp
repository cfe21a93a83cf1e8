#include "courier/durable/crash_point.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include <unistd.h>

namespace courier::durable {

namespace {

std::string armed_point;
long armed_count = 1;
std::atomic<long> hits{0};
std::atomic<bool> armed{false};
std::atomic<bool> loaded{false};

void load() noexcept {
  const char* text = std::getenv("COURIER_CRASH_AT");
  armed_point.clear();
  armed_count = 1;
  hits = 0;
  if (text != nullptr && *text != '\0') {
    std::string spec = text;
    auto colon = spec.find(':');
    armed_point = spec.substr(0, colon);
    if (colon != std::string::npos)
      armed_count
        = std::max(1L, std::strtol(spec.c_str() + colon + 1, nullptr, 10));
  }
  armed = !armed_point.empty();
  loaded = true;
}

} // namespace

void reload_crash_point() noexcept {
  load();
}

void crash_point(std::string_view point) noexcept {
  if (!loaded.load(std::memory_order_acquire)) [[unlikely]] {
    static std::once_flag once;
    std::call_once(once, [] {
      if (!loaded.load())
        load();
    });
  }
  if (!armed.load(std::memory_order_relaxed)) [[likely]]
    return;
  if (point != armed_point)
    return;
  if (hits.fetch_add(1) + 1 >= armed_count)
    ::_exit(crash_exit_status);
}

} // namespace courier::durable

#include "courier/durable/clock.hpp"

#include <cstdio>
#include <ctime>
#include <string>

namespace courier::durable {

namespace {

std::int64_t read_ns(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// Parses the kernel's boot id ("8-4-4-4-12" hex); zeros if unreadable,
/// which makes every restart look like a reboot (the safe direction: the
/// downtime is then estimated, never assumed zero).
boot_id read_boot_id() {
  boot_id id{};
  std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "r");
  if (f == nullptr)
    return id;
  char text[64] = {};
  auto n = std::fread(text, 1, sizeof(text) - 1, f);
  std::fclose(f);
  std::size_t byte = 0;
  int half = -1;
  for (std::size_t i = 0; i < n && byte < id.size(); ++i) {
    char c = text[i];
    int v = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (v < 0)
      continue;
    if (half < 0) {
      half = v;
    } else {
      id[byte++] = static_cast<std::uint8_t>(half << 4 | v);
      half = -1;
    }
  }
  return id;
}

class system_clock final : public clock_source {
public:
  clock_reading now() override {
    return {boot_, read_ns(CLOCK_BOOTTIME), read_ns(CLOCK_REALTIME)};
  }

private:
  boot_id boot_ = read_boot_id();
};

} // namespace

std::shared_ptr<clock_source> system_clock_source() {
  static auto clock = std::make_shared<system_clock>();
  return clock;
}

} // namespace courier::durable

#pragma once

// Forward declarations of the shared-memory ring's public types.

#include <cstdint>

namespace courier::shm {

class consumer;
class producer;
class segment;

enum class wait_policy : std::uint8_t;

struct ring_options;

} // namespace courier::shm

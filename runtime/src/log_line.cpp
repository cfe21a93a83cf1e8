#include "log_line.hpp"

#include <cstdio>
#include <ctime>

#include <unistd.h>

namespace courier::detail {

namespace {

/// `text` as a JSON string, quotes included.
void append_json_string(std::string& out, std::string_view text) {
  static constexpr char digits[] = "0123456789abcdef";
  out += '"';
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += "\\u00";
          out += digits[c >> 4];
          out += digits[c & 15];
        } else {
          out += static_cast<char>(c); // UTF-8 passes as it is
        }
    }
  }
  out += '"';
}

void append_field(std::string& out, std::string_view key,
                  std::string_view value) {
  if (value.empty())
    return;
  out += ",\"";
  out += key;
  out += "\":";
  append_json_string(out, value);
}

/// Now, in UTC, as RFC 3339 with microseconds: 2026-11-24T09:54:45.123456Z.
std::string now_utc() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                  now.time_since_epoch())
                  .count()
                % 1000000;
  std::tm parts{};
  ::gmtime_r(&secs, &parts);
  char text[96]; // room for any int the compiler can imagine
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ",
                parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                parts.tm_hour, parts.tm_min, parts.tm_sec,
                static_cast<long>(micros));
  return text;
}

/// One write(2) per line, so that lines of several threads never mix.
void write_stderr(const std::string& line) {
  std::size_t done = 0;
  while (done < line.size()) {
    auto n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0)
      return;
    done += static_cast<std::size_t>(n);
  }
}

} // namespace

std::string_view level_name(log_level level) noexcept {
  switch (level) {
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warning:
      return "warning";
    case log_level::error:
      return "error";
  }
  return "?";
}

std::string json_line(std::string_view node, log_level level,
                      std::string_view line, const log_fields& fields) {
  std::string out;
  out.reserve(160 + line.size());
  out += "{\"time\":\"";
  out += now_utc();
  out += "\",\"level\":\"";
  out += level_name(level);
  out += '"';
  append_field(out, "node", node);
  append_field(out, "actor", fields.actor);
  append_field(out, "peer", fields.peer);
  if (fields.trace.valid()) {
    append_field(out, "trace_id", fields.trace.trace_id_hex());
    append_field(out, "span_id", fields.trace.span_id_hex());
  }
  append_field(out, "reason", fields.reason);
  out += ",\"message\":";
  append_json_string(out, line);
  out += '}';
  return out;
}

void write_log(const node_config& config, log_level level,
               std::string_view line, const log_fields& fields) {
  const bool json = config.log_format == log_format::json;
  if (config.log) {
    try {
      if (json)
        config.log(level, json_line(config.name, level, line, fields));
      else
        config.log(level, line);
    } catch (...) {
      // A log sink must not take the runtime down; nowhere left to say so.
    }
    return;
  }
  if (json) {
    if (level < log_level::info)
      return;
    write_stderr(json_line(config.name, level, line, fields) + '\n');
    return;
  }
  if (level < log_level::warning)
    return;
  std::string text = "courier[" + config.name + "] ";
  text += level_name(level);
  text += ": ";
  text += line;
  text += '\n';
  write_stderr(text);
}

bool log_gate::pass(std::uint64_t& held_back) noexcept {
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  auto next = next_.load(std::memory_order_relaxed);
  if (now < next
      || !next_.compare_exchange_strong(next, now + interval_,
                                        std::memory_order_relaxed)) {
    held_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  held_back = held_.exchange(0, std::memory_order_relaxed);
  return true;
}

std::string held_back_note(std::uint64_t held_back) {
  if (held_back == 0)
    return {};
  return ", " + std::to_string(held_back)
         + " more not logged since the last line";
}

} // namespace courier::detail

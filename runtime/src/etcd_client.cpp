#include "etcd_client.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

#include "base64.hpp"

namespace courier::detail {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

namespace {

// -- JSON fields -----------------------------------------------------------
// The gateway writes int64 fields as strings and leaves out fields that
// hold their default (0, false, empty): a missing field is its default.

/// Thrown inside this file only, caught where an answer is parsed.
struct malformed {
  std::string what;
};

std::int64_t int_field(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null())
    return 0;
  if (it->is_number_integer())
    return it->get<std::int64_t>();
  if (it->is_string()) {
    const auto& text = it->get_ref<const std::string&>();
    std::int64_t value = 0;
    auto [end, ec]
      = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc{} && end == text.data() + text.size())
      return value;
  }
  throw malformed{std::string{"field "} + name + " is not an integer"};
}

bool bool_field(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null())
    return false;
  if (!it->is_boolean())
    throw malformed{std::string{"field "} + name + " is not a boolean"};
  return it->get<bool>();
}

std::string bytes_field(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null())
    return {};
  if (!it->is_string())
    throw malformed{std::string{"field "} + name + " is not a string"};
  auto decoded = from_base64(it->get_ref<const std::string&>());
  if (!decoded)
    throw malformed{std::string{"field "} + name + " is not base64"};
  return std::move(*decoded);
}

const json& object_field(const json& object, const char* name) {
  static const json empty = json::object();
  auto it = object.find(name);
  if (it == object.end() || it->is_null())
    return empty;
  if (!it->is_object())
    throw malformed{std::string{"field "} + name + " is not an object"};
  return *it;
}

const json& array_field(const json& object, const char* name) {
  static const json empty = json::array();
  auto it = object.find(name);
  if (it == object.end() || it->is_null())
    return empty;
  if (!it->is_array())
    throw malformed{std::string{"field "} + name + " is not an array"};
  return *it;
}

etcd_kv kv_of(const json& j) {
  if (!j.is_object())
    throw malformed{"a key-value is not an object"};
  etcd_kv kv;
  kv.key = bytes_field(j, "key");
  kv.value = bytes_field(j, "value");
  kv.create_revision = int_field(j, "create_revision");
  kv.mod_revision = int_field(j, "mod_revision");
  kv.lease = int_field(j, "lease");
  return kv;
}

std::int64_t revision_of(const json& answer) {
  return int_field(object_field(answer, "header"), "revision");
}

/// gRPC's code in an error answer, as courier::errc (same numbers).
errc errc_of(std::int64_t code) noexcept {
  if (code <= 0 || code > static_cast<std::int64_t>(errc::unauthenticated))
    return errc::unavailable;
  return static_cast<errc>(code);
}

std::string text_of(std::int64_t n) {
  return std::to_string(n);
}

/// Runs `ioc` until the operation `start` begins has completed; returns
/// its error, or operation_aborted if the context was stopped first or
/// `interrupted` is set (checked after restart(), so that a stop() that
/// comes with it is never lost).
template <class Start>
beast::error_code run_step(asio::io_context& ioc, Start&& start,
                           const std::atomic<bool>* interrupted = nullptr) {
  beast::error_code outcome;
  bool done = false;
  start([&](beast::error_code ec, auto&&...) {
    outcome = ec;
    done = true;
  });
  ioc.restart();
  if (interrupted != nullptr && interrupted->load())
    return asio::error::operation_aborted;
  ioc.run();
  return done ? outcome : beast::error_code{asio::error::operation_aborted};
}

} // namespace

// -- the client ---------------------------------------------------------------

struct etcd_client::state {
  struct resolved {
    etcd_endpoint endpoint;
    std::vector<tcp::endpoint> addresses;
  };

  std::vector<resolved> endpoints;
  std::chrono::milliseconds timeout;
  std::size_t max_response;
  /// The endpoint that answered last; calls start there.
  std::atomic<std::size_t> preferred{0};
  std::mutex watch_mu;
  asio::io_context* watch_ioc = nullptr; // guarded by watch_mu
  std::atomic<bool> watch_interrupted{false};

  /// A connected stream to some endpoint, or unavailable naming each one
  /// tried. `which` tells the endpoint.
  expected<void> connect(beast::tcp_stream& stream, asio::io_context& ioc,
                         clock_type::time_point until, std::size_t& which,
                         const std::atomic<bool>* interrupted);

  /// POSTs `body` to `path` and returns the parsed JSON answer of a 200;
  /// an error otherwise.
  expected<json> call(const char* path, const json& body);

  /// The error an answer with status `status` and body `body` means.
  error failure(const etcd_endpoint& from, unsigned status,
                const std::string& body) const;
};

expected<void>
etcd_client::state::connect(beast::tcp_stream& stream, asio::io_context& ioc,
                            clock_type::time_point until, std::size_t& which,
                            const std::atomic<bool>* interrupted) {
  std::string tried;
  auto first = preferred.load();
  for (std::size_t n = 0; n < endpoints.size(); ++n) {
    auto index = (first + n) % endpoints.size();
    auto& target = endpoints[index];
    for (auto& address : target.addresses) {
      if (clock_type::now() >= until) {
        tried += (tried.empty() ? "" : "; ") + target.endpoint.text()
                 + ": no time left";
        return error{errc::unavailable, "cannot reach etcd within "
                                          + std::to_string(timeout.count())
                                          + " ms (" + tried + ")"};
      }
      stream.expires_at(until);
      auto ec = run_step(
        ioc,
        [&](auto handler) {
          stream.async_connect(address, std::move(handler));
        },
        interrupted);
      if (interrupted != nullptr && interrupted->load())
        return error{errc::cancelled, "interrupted"};
      if (!ec) {
        which = index;
        return {};
      }
      tried += (tried.empty() ? "" : "; ") + target.endpoint.text() + ": "
               + (ec == beast::error::timeout ? std::string{"timed out"}
                                              : ec.message());
      stream.close();
    }
  }
  return error{errc::unavailable, "cannot reach etcd (" + tried + ")"};
}

error etcd_client::state::failure(const etcd_endpoint& from, unsigned status,
                                  const std::string& body) const {
  auto answer = json::parse(body, nullptr, false);
  if (answer.is_object()) {
    auto message = answer.find("message");
    auto code = answer.find("code");
    if (message != answer.end() && message->is_string() && code != answer.end()
        && code->is_number_integer())
      return error{errc_of(code->get<std::int64_t>()),
                   "etcd at " + from.text() + ": "
                     + message->get<std::string>()};
  }
  return error{errc::unavailable, "etcd at " + from.text()
                                    + " answered HTTP status "
                                    + std::to_string(status)};
}

expected<json> etcd_client::state::call(const char* path, const json& body) {
  auto until = clock_type::now() + timeout;
  asio::io_context ioc;
  beast::tcp_stream stream{ioc};
  std::size_t which = 0;
  if (auto connected = connect(stream, ioc, until, which, nullptr); !connected)
    return connected.error();
  auto& from = endpoints[which].endpoint;
  http::request<http::string_body> request{http::verb::post, path, 11};
  request.set(http::field::host, from.text());
  request.set(http::field::content_type, "application/json");
  request.body() = body.dump();
  request.prepare_payload();
  stream.expires_at(until);
  auto ec = run_step(ioc, [&](auto handler) {
    http::async_write(stream, request, std::move(handler));
  });
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(16u << 10);
  parser.body_limit(max_response);
  // The head first: Beast 1.74 reading head and body in one go (eager)
  // loses the body_limit error of a too large Content-Length, and would
  // read the whole body.
  if (!ec) {
    stream.expires_at(until);
    ec = run_step(ioc, [&](auto handler) {
      http::async_read_header(stream, buffer, parser, std::move(handler));
    });
  }
  if (!ec) {
    if (auto length = parser.content_length(); length && *length > max_response)
      ec = http::error::body_limit;
  }
  if (!ec && !parser.is_done()) {
    stream.expires_at(until);
    ec = run_step(ioc, [&](auto handler) {
      http::async_read(stream, buffer, parser, std::move(handler));
    });
  }
  if (ec == beast::error::timeout)
    return error{errc::unavailable,
                 "etcd at " + from.text() + " did not answer within "
                   + std::to_string(timeout.count()) + " ms"};
  if (ec == http::error::body_limit)
    return error{errc::resource_exhausted,
                 "etcd at " + from.text() + " answered more than "
                   + std::to_string(max_response) + " bytes"};
  if (ec)
    return error{errc::unavailable,
                 "etcd at " + from.text() + ": " + ec.message()};
  preferred = which;
  auto& response = parser.get();
  if (response.result_int() != 200)
    return failure(from, response.result_int(), response.body());
  auto answer = json::parse(response.body(), nullptr, false);
  if (!answer.is_object())
    return error{errc::internal,
                 "etcd at " + from.text() + " answered no JSON object"};
  return answer;
}

etcd_client::etcd_client(std::unique_ptr<state> st) noexcept
  : st_(std::move(st)) {}

etcd_client::~etcd_client() = default;

expected<std::unique_ptr<etcd_client>>
etcd_client::make(std::vector<etcd_endpoint> endpoints,
                  std::chrono::milliseconds timeout, std::size_t max_response) {
  auto st = std::make_unique<state>();
  st->timeout = timeout;
  st->max_response = max_response;
  asio::io_context ioc;
  tcp::resolver resolver{ioc};
  for (auto& endpoint : endpoints) {
    beast::error_code ec;
    auto results
      = resolver.resolve(endpoint.host, std::to_string(endpoint.port),
                         tcp::resolver::numeric_service, ec);
    if (ec)
      return error{errc::unavailable, "cannot resolve the etcd endpoint "
                                        + endpoint.text() + ": "
                                        + ec.message()};
    state::resolved entry{endpoint, {}};
    for (auto& result : results)
      entry.addresses.push_back(result.endpoint());
    st->endpoints.push_back(std::move(entry));
  }
  if (st->endpoints.empty())
    return error{errc::invalid_argument, "no etcd endpoint"};
  return std::unique_ptr<etcd_client>{new etcd_client(std::move(st))};
}

std::string etcd_client::endpoints_text() const {
  std::string out;
  for (auto& entry : st_->endpoints)
    out += (out.empty() ? "" : ",") + entry.endpoint.text();
  return out;
}

namespace {

/// Calls `parse` on an answer, turning a malformed one into an error.
template <class T, class Parse>
expected<T> parse_answer(expected<json>&& answer, Parse&& parse) {
  if (!answer)
    return std::move(answer).error();
  try {
    return parse(*answer);
  } catch (const malformed& bad) {
    return error{errc::internal, "a malformed answer from etcd: " + bad.what};
  } catch (const json::exception& bad) {
    return error{errc::internal,
                 std::string{"a malformed answer from etcd: "} + bad.what()};
  }
}

} // namespace

expected<std::pair<std::int64_t, std::chrono::seconds>>
etcd_client::grant_lease(std::chrono::seconds ttl) {
  using result = std::pair<std::int64_t, std::chrono::seconds>;
  return parse_answer<result>(
    st_->call("/v3/lease/grant", json{{"TTL", ttl.count()}}),
    [](const json& answer) -> expected<result> {
      auto id = int_field(answer, "ID");
      if (id == 0)
        return error{errc::unavailable,
                     "etcd granted no lease: " + answer.value("error", "")};
      return result{id, std::chrono::seconds{int_field(answer, "TTL")}};
    });
}

expected<std::int64_t> etcd_client::keep_alive(std::int64_t lease) {
  // A stream in gRPC; through the gateway one request, one answer.
  return parse_answer<std::int64_t>(
    st_->call("/v3/lease/keepalive", json{{"ID", text_of(lease)}}),
    [](const json& answer) -> expected<std::int64_t> {
      if (auto err = answer.find("error"); err != answer.end())
        return error{errc_of(int_field(*err, "grpc_code")),
                     "etcd: " + err->value("message", std::string{})};
      return int_field(object_field(answer, "result"), "TTL");
    });
}

expected<void> etcd_client::revoke_lease(std::int64_t lease) {
  auto answer = st_->call("/v3/lease/revoke", json{{"ID", text_of(lease)}});
  if (!answer)
    return std::move(answer).error();
  return {};
}

expected<etcd_range> etcd_client::range(const std::string& key,
                                        const std::string& range_end) {
  json request{{"key", to_base64(key)}};
  if (!range_end.empty())
    request["range_end"] = to_base64(range_end);
  return parse_answer<etcd_range>(
    st_->call("/v3/kv/range", request),
    [](const json& answer) -> expected<etcd_range> {
      etcd_range out;
      out.revision = revision_of(answer);
      for (auto& kv : array_field(answer, "kvs"))
        out.kvs.push_back(kv_of(kv));
      return out;
    });
}

expected<etcd_create> etcd_client::create(const std::string& key,
                                          const std::string& value,
                                          std::int64_t lease) {
  auto key64 = to_base64(key);
  json request{
    {"compare", json::array({{{"key", key64},
                              {"result", "EQUAL"},
                              {"target", "CREATE"},
                              {"create_revision", "0"}}})},
    {"success", json::array({{{"request_put",
                               {{"key", key64},
                                {"value", to_base64(value)},
                                {"lease", text_of(lease)}}}}})},
    {"failure", json::array({{{"request_range", {{"key", key64}}}}})}};
  return parse_answer<etcd_create>(
    st_->call("/v3/kv/txn", request),
    [](const json& answer) -> expected<etcd_create> {
      etcd_create out;
      out.created = bool_field(answer, "succeeded");
      if (out.created)
        return out;
      for (auto& response : array_field(answer, "responses"))
        for (auto& kv :
             array_field(object_field(response, "response_range"), "kvs"))
          out.existing = kv_of(kv);
      return out;
    });
}

expected<bool> etcd_client::replace_if_lease(const std::string& key,
                                             const std::string& value,
                                             std::int64_t lease) {
  auto key64 = to_base64(key);
  json request{{"compare", json::array({{{"key", key64},
                                         {"result", "EQUAL"},
                                         {"target", "LEASE"},
                                         {"lease", text_of(lease)}}})},
               {"success", json::array({{{"request_put",
                                          {{"key", key64},
                                           {"value", to_base64(value)},
                                           {"lease", text_of(lease)}}}}})}};
  return parse_answer<bool>(st_->call("/v3/kv/txn", request),
                            [](const json& answer) -> expected<bool> {
                              return bool_field(answer, "succeeded");
                            });
}

expected<bool> etcd_client::delete_if_value(const std::string& key,
                                            const std::string& value) {
  auto key64 = to_base64(key);
  json request{
    {"compare", json::array({{{"key", key64},
                              {"result", "EQUAL"},
                              {"target", "VALUE"},
                              {"value", to_base64(value)}}})},
    {"success", json::array({{{"request_delete_range", {{"key", key64}}}}})}};
  return parse_answer<bool>(st_->call("/v3/kv/txn", request),
                            [](const json& answer) -> expected<bool> {
                              return bool_field(answer, "succeeded");
                            });
}

namespace {

/// One line of a watch stream as an update; an error for a cancelled watch
/// or an error message. Throws malformed.
expected<etcd_watch_update> watch_update_of(const json& line) {
  if (!line.is_object())
    throw malformed{"a watch message is not an object"};
  if (auto err = line.find("error"); err != line.end()) {
    auto message
      = err->is_object() ? err->value("message", std::string{}) : err->dump();
    return error{errc::unavailable, "etcd ended the watch: " + message};
  }
  auto& result = object_field(line, "result");
  if (bool_field(result, "canceled")) {
    auto compacted = int_field(result, "compact_revision");
    return error{errc::unavailable,
                 compacted != 0
                   ? "etcd cancelled the watch (compacted at revision "
                       + std::to_string(compacted) + ")"
                   : "etcd cancelled the watch: "
                       + result.value("cancel_reason", std::string{})};
  }
  etcd_watch_update update;
  update.created = bool_field(result, "created");
  update.revision = revision_of(result);
  for (auto& event : array_field(result, "events")) {
    auto type = event.find("type");
    bool deleted = type != event.end() && type->is_string()
                   && type->get_ref<const std::string&>() == "DELETE";
    update.events.push_back({deleted, kv_of(object_field(event, "kv"))});
  }
  return update;
}

} // namespace

expected<void>
etcd_client::watch(const std::string& key, const std::string& range_end,
                   const std::function<void(etcd_watch_update&&)>& on_update,
                   const std::atomic<bool>& stop) {
  asio::io_context ioc;
  {
    std::lock_guard guard{st_->watch_mu};
    COURIER_RUNTIME_ASSERT(st_->watch_ioc == nullptr, "two concurrent watches");
    if (stop.load())
      return error{errc::cancelled, "stopped"};
    st_->watch_ioc = &ioc;
    st_->watch_interrupted = false;
  }
  struct unregister {
    state& st;
    ~unregister() {
      std::lock_guard guard{st.watch_mu};
      st.watch_ioc = nullptr;
    }
  } registered{*st_};
  auto interrupted = [] {
    return error{errc::cancelled, "the watch was interrupted"};
  };
  auto until = clock_type::now() + st_->timeout;
  beast::tcp_stream stream{ioc};
  std::size_t which = 0;
  if (auto connected
      = st_->connect(stream, ioc, until, which, &st_->watch_interrupted);
      !connected)
    return connected.error();
  auto& from = st_->endpoints[which].endpoint;
  http::request<http::string_body> request{http::verb::post, "/v3/watch", 11};
  request.set(http::field::host, from.text());
  request.set(http::field::content_type, "application/json");
  request.body()
    = json{{"create_request",
            {{"key", to_base64(key)}, {"range_end", to_base64(range_end)}}}}
        .dump();
  request.prepare_payload();
  const auto* flag = &st_->watch_interrupted;
  stream.expires_at(until);
  auto ec = run_step(
    ioc,
    [&](auto handler) {
      http::async_write(stream, request, std::move(handler));
    },
    flag);
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.header_limit(16u << 10);
  parser.body_limit(boost::none); // a stream: each message is bounded below
  if (!ec) {
    stream.expires_at(until);
    ec = run_step(
      ioc,
      [&](auto handler) {
        http::async_read_header(stream, buffer, parser, std::move(handler));
      },
      flag);
  }
  if (st_->watch_interrupted)
    return interrupted();
  if (ec)
    return error{errc::unavailable, "the watch on etcd at " + from.text() + ": "
                                      + (ec == beast::error::timeout
                                           ? std::string{"no answer in time"}
                                           : ec.message())};
  auto status = parser.get().result_int();
  std::string pending; // bytes of the stream not yet split into lines
  char chunk[16384];
  // Once the watch is in place it may stay quiet for hours: no deadline.
  // A dead peer is noticed by the keepalive, which interrupts the watch.
  // An error answer is short and keeps the deadline.
  if (status == 200)
    stream.expires_never();
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    ec = run_step(
      ioc,
      [&](auto handler) {
        http::async_read_some(stream, buffer, parser, std::move(handler));
      },
      flag);
    if (st_->watch_interrupted)
      return interrupted();
    if (ec && ec != http::error::need_buffer)
      return error{errc::unavailable, "the watch on etcd at " + from.text()
                                        + " broke: " + ec.message()};
    pending.append(chunk, sizeof chunk - parser.get().body().size);
    if (status != 200) {
      if (pending.size() > st_->max_response)
        break;
      continue; // the whole (small) error body first
    }
    for (auto nl = pending.find('\n'); nl != std::string::npos;
         nl = pending.find('\n')) {
      auto line
        = json::parse(std::string_view{pending}.substr(0, nl), nullptr, false);
      pending.erase(0, nl + 1);
      if (line.is_discarded())
        return error{errc::internal, "etcd at " + from.text()
                                       + " sent a watch message that is "
                                         "not JSON"};
      expected<etcd_watch_update> update{errc::internal, ""};
      try {
        update = watch_update_of(line);
      } catch (const malformed& bad) {
        return error{errc::internal,
                     "a malformed watch message from etcd: " + bad.what};
      } catch (const json::exception& bad) {
        return error{errc::internal,
                     std::string{"a malformed watch message from etcd: "}
                       + bad.what()};
      }
      if (!update)
        return std::move(update).error();
      on_update(std::move(*update));
    }
    if (pending.size() > st_->max_response)
      return error{errc::resource_exhausted,
                   "etcd at " + from.text() + " sent a watch message over "
                     + std::to_string(st_->max_response) + " bytes"};
  }
  if (status != 200)
    return st_->failure(from, status, pending);
  return error{errc::unavailable,
               "etcd at " + from.text() + " ended the watch stream"};
}

void etcd_client::interrupt_watch() {
  std::lock_guard guard{st_->watch_mu};
  st_->watch_interrupted = true;
  if (st_->watch_ioc != nullptr)
    st_->watch_ioc->stop();
}

} // namespace courier::detail

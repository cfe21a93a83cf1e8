#include "courier/gateway/gateway.hpp"

#include <atomic>
#include <algorithm>
#include <cctype>
#include <climits>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <google/protobuf/any.pb.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/empty.pb.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpc/grpc_security_constants.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "courier/access_policy.hpp"
#include "courier/courier.hpp"
#include "courier/v1/gateway.grpc.pb.h"
#include "actor_services.hpp"
#include "calls.hpp"
#include "local_listener.hpp"

namespace courier::gateway {

namespace {

namespace pb = courier::v1;

/// The names of gateways' own actors, left out of what Names lists.
constexpr std::string_view gateway_prefix = "courier.gateway.";

/// The services the gateway's server answers itself, as reflection lists
/// them.
std::vector<std::string> own_services() {
  auto names = reflection_services();
  names.emplace_back(pb::Gateway::service_full_name());
  names.emplace_back("grpc.health.v1.Health");
  return names;
}

/// invalid_argument unless options::services maps a service's full name
/// to an actor name. The service's descriptor need not be in this program:
/// the serving actor's node publishes it.
expected<void> check_service_name(const std::string& service,
                                  const std::string& actor) {
  auto word = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  };
  bool valid = !service.empty() && service.front() != '.'
               && service.back() != '.'
               && std::all_of(service.begin(), service.end(), [&](char c) {
                    return word(c) || c == '.';
                  });
  if (!valid)
    return error{errc::invalid_argument,
                 "the gateway cannot serve '" + service
                   + "': not a gRPC service's full name (package.Service)"};
  if (actor.empty())
    return error{errc::invalid_argument,
                 "the gateway's service " + service + " names no actor"};
  return {};
}

/// The type a type URL names: what follows its last '/'.
std::string type_of(const std::string& url) {
  auto slash = url.rfind('/');
  return slash == std::string::npos ? url : url.substr(slash + 1);
}

/// The message an Any carries, built from a type `host` knows, or one the
/// node holding the name `target()` gives publishes (asked only when the
/// type is not known here: finding a name reads the directory).
expected<message> decode(node& host, const std::function<std::string()>& target,
                         const google::protobuf::Any& any) {
  auto type = type_of(any.type_url());
  if (type.empty())
    return error{errc::invalid_argument, "the message has no type URL"};
  auto made = host.new_message(type);
  if (!made && made.code() == errc::not_found) {
    auto holder = holder_of(host, target());
    if (!holder.empty() && holder != host.name()) {
      if (auto imported = host.import_types(holder); !imported)
        return imported.error();
      made = host.new_message(type);
    }
  }
  if (!made)
    return std::move(made).error();
  if (!(*made)->ParseFromString(any.value()))
    return error{errc::invalid_argument,
                 "the payload is not a valid " + type + " message"};
  return message{std::move(*made)};
}

/// One Monitor call: a stream that carries the name's down notice, then
/// ends. The node's callback may come after the client has gone: both
/// sides meet under a lock in a state that outlives the reactor.
class monitor_call final : public grpc::ServerWriteReactor<pb::ActorDown> {
public:
  monitor_call(node& host, const std::string& name,
               std::optional<error> refused = std::nullopt)
    : host_(host) {
    state_ = std::make_shared<shared>();
    state_->call = this;
    if (refused) {
      std::lock_guard guard{state_->mu};
      state_->finished = true;
      Finish(status_of(*refused));
      return;
    }
    auto watched = host_.monitor(name, [state = state_](const down_notice& n) {
      std::lock_guard guard{state->mu};
      if (state->call == nullptr || state->finished)
        return;
      state->finished = true;
      auto& out = state->out;
      out.set_name(n.name);
      out.set_reason(std::string{to_string(n.reason)});
      out.set_detail(n.detail);
      out.set_restarting(n.restarting);
      state->call->StartWriteAndFinish(&out, grpc::WriteOptions{},
                                       grpc::Status::OK);
    });
    if (!watched) {
      std::lock_guard guard{state_->mu};
      state_->finished = true;
      Finish(status_of(watched.error()));
      return;
    }
    handle_ = *watched;
    // The watch is in place: the client may wait for this (initial
    // metadata) before it does what should bring the notice.
    std::lock_guard guard{state_->mu};
    if (!state_->finished)
      StartSendInitialMetadata();
  }

  void OnCancel() override {
    std::lock_guard guard{state_->mu};
    if (state_->finished)
      return;
    state_->finished = true;
    Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      std::lock_guard guard{state_->mu};
      state_->call = nullptr;
    }
    if (handle_)
      host_.demonitor(*handle_);
    delete this;
  }

private:
  using shared = meeting<monitor_call, pb::ActorDown>;

  node& host_;
  std::shared_ptr<shared> state_;
  std::optional<monitor_handle> handle_;
};

} // namespace

struct server::impl final : pb::Gateway::CallbackService, gateway_seam {
  impl(node& host, options settings, std::string requester_name)
    : host_(host), settings_(std::move(settings)),
      requester_(host, std::move(requester_name)) {}

  // -- the verbs ------------------------------------------------------------

  grpc::ServerUnaryReactor* Post(grpc::CallbackServerContext* call,
                                 const pb::PostRequest* request,
                                 pb::PostReply*) override {
    auto* reactor = call->DefaultReactor();
    auto posted = post_one(*call, *request, trace_of(*call));
    if (!posted)
      return refuse(reactor, posted.error());
    return answer(reactor);
  }

  grpc::ServerReadReactor<pb::PostRequest>*
  PostStream(grpc::CallbackServerContext* call,
             pb::PostStreamReply* reply) override {
    book_->count();
    return new post_stream(*this, *call, *reply);
  }

  /// One PostStream call: reads a request, posts it, reads the next. One
  /// read at a time, so a client that sends faster than the node takes
  /// waits on gRPC's flow control, with one request buffered here.
  class post_stream final : public grpc::ServerReadReactor<pb::PostRequest> {
  public:
    post_stream(impl& owner, grpc::CallbackServerContext& call,
                pb::PostStreamReply& reply)
      : owner_(owner), call_(call), reply_(reply), trace_(trace_of(call)) {
      StartRead(&request_);
    }

    void OnReadDone(bool ok) override {
      if (!ok) { // the client is done sending (or gone: then nobody reads this)
        reply_.set_posted(posted_);
        return Finish(grpc::Status::OK);
      }
      if (auto taken = owner_.post_one(call_, request_, trace_); !taken) {
        auto count = std::to_string(posted_);
        call_.AddTrailingMetadata("courier-posted", count);
        auto why = status_of(taken.error());
        return Finish({why.error_code(), why.error_message() + " (after "
                                           + count + " posted)"});
      }
      ++posted_;
      StartRead(&request_);
    }

    void OnDone() override {
      delete this;
    }

  private:
    impl& owner_;
    grpc::CallbackServerContext& call_;
    pb::PostStreamReply& reply_;
    trace_context trace_;
    pb::PostRequest request_;
    std::uint64_t posted_ = 0;
  };

  /// Post's work, for Post and each request of a PostStream: authorized,
  /// decoded and queued for the actor.
  expected<void> post_one(const grpc::CallbackServerContext& call,
                          const pb::PostRequest& request,
                          const trace_context& trace) {
    if (auto no = refused(call, request.name(), verbs::post))
      return *no;
    if (request.priority() > max_priority)
      return error{errc::invalid_argument,
                   "priority is 0 to 7, not "
                     + std::to_string(request.priority())};
    auto msg = decode(
      host_, [&] { return request.name(); }, request.message());
    if (!msg)
      return std::move(msg).error();
    post_options options;
    options.priority = static_cast<std::uint8_t>(request.priority());
    options.lend_thread = true; // an idle actor takes it on gRPC's thread
    trace_scope traced{trace};
    return host_.post(request.name(), std::move(*msg), options);
  }

  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* call,
                                 const pb::SendRequest* request,
                                 pb::SendReply* reply) override {
    auto* reactor = call->DefaultReactor();
    if (auto no = refused(*call, request->name(), verbs::send))
      return refuse(reactor, *no);
    auto msg = decode(
      host_, [&] { return request->name(); }, request->message());
    if (!msg)
      return refuse(reactor, msg.error());
    auto until = deadline_of(*call);
    auto trace = trace_of(*call);
    auto pending = book_->track(call, reactor);
    auto asked = ask(
      host_, requester_, request->name(), *msg, until, trace,
      [book = book_, pending, reply](expected<message> out) {
        if (!out)
          return book->finish(pending, status_of(out.error()));
        book->finish(pending, grpc::Status::OK,
                     [&] { reply->mutable_reply()->PackFrom(**out); });
      });
    if (!asked)
      book_->finish(pending, status_of(asked.error()));
    return reactor;
  }

  grpc::ServerUnaryReactor* Find(grpc::CallbackServerContext* call,
                                 const pb::FindRequest* request,
                                 pb::FindReply* reply) override {
    auto* reactor = call->DefaultReactor();
    if (auto no = refused(*call, request->name(), verbs::find))
      return refuse(reactor, *no);
    auto holder = find_holder(request->name());
    if (!holder)
      return refuse(reactor, holder.error());
    reply->set_node(*holder);
    return answer(reactor);
  }

  grpc::ServerUnaryReactor* Types(grpc::CallbackServerContext* call,
                                  const pb::TypesRequest* request,
                                  pb::TypesReply* reply) override {
    auto* reactor = call->DefaultReactor();
    if (auto no = refused(*call, request->name(), verbs::find))
      return refuse(reactor, *no);
    auto holder = find_holder(request->name());
    if (!holder)
      return refuse(reactor, holder.error());
    auto files = host_.published_types(*holder);
    if (!files)
      return refuse(reactor, files.error());
    reply->set_node(*holder);
    for (auto& file : *files)
      reply->add_file_descriptor_protos(std::move(file));
    return answer(reactor);
  }

  grpc::ServerUnaryReactor* Names(grpc::CallbackServerContext* call,
                                  const pb::NamesRequest* request,
                                  pb::NamesReply* reply) override {
    auto* reactor = call->DefaultReactor();
    auto pattern
      = request->pattern().empty() ? std::string{"*"} : request->pattern();
    auto caller = caller_of(*call);
    for (const auto& entry : host_.machine_names(pattern)) {
      if (entry.actor.starts_with(gateway_prefix))
        continue; // gateways' own
      if (policy_ && !policy_->allows(caller, entry.actor, verbs::find))
        continue; // what the caller may not find, it does not see
      auto* out = reply->add_names();
      out->set_actor(entry.actor);
      out->set_node(entry.node);
    }
    return answer(reactor);
  }

  grpc::ServerUnaryReactor* Broadcast(grpc::CallbackServerContext* call,
                                      const pb::BroadcastRequest* request,
                                      pb::BroadcastReply* reply) override {
    auto* reactor = call->DefaultReactor();
    // Every name it would ask must allow it (the node's broadcast cannot
    // leave some out).
    if (policy_)
      for (const auto& entry : host_.machine_names(request->pattern()))
        if (!entry.actor.starts_with(gateway_prefix))
          if (auto no = refused(*call, entry.actor, verbs::broadcast))
            return refuse(reactor, *no);
    // Any of the pattern's matches will do to find the type.
    auto msg = decode(
      host_, [&] { return first_match(request->pattern()); },
      request->message());
    if (!msg)
      return refuse(reactor, msg.error());
    auto until = deadline_of(*call);
    auto trace = trace_of(*call);
    auto pending = book_->track(call, reactor);
    auto submitted = requester_.submit([book = book_, pending, reply,
                                        pattern = request->pattern(),
                                        msg = *msg, until,
                                        trace](context& ctx) {
      trace_scope traced{trace};
      ctx.broadcast(pattern, msg, until)
        .then([book, pending, reply](broadcast_result result) {
          book->finish(pending, grpc::Status::OK, [&] {
            for (auto& r : result.replied) {
              auto* out = reply->add_replied();
              out->set_name(r.name);
              out->mutable_reply()->PackFrom(*r.payload);
            }
            for (auto& f : result.failed) {
              auto* out = reply->add_failed();
              out->set_name(f.name);
              out->set_code(static_cast<std::uint32_t>(f.reason.code()));
              out->set_message(f.reason.message());
            }
            for (auto& name : result.timed_out)
              reply->add_timed_out(name);
            for (auto& name : result.dead)
              reply->add_dead(name);
          });
        });
    });
    if (!submitted)
      book_->finish(pending, status_of(submitted.error()));
    return reactor;
  }

  grpc::ServerWriteReactor<pb::ActorDown>*
  Monitor(grpc::CallbackServerContext* call,
          const pb::MonitorRequest* request) override {
    book_->count();
    return new monitor_call(host_, request->name(),
                            refused(*call, request->name(), verbs::monitor));
  }

  // -- health of the services actors serve ------------------------------------

  /// Sets each service actors serve (configured or declared) SERVING while
  /// an actor serving it holds its name, NOT_SERVING while none does, every
  /// health_interval until the server stops.
  void watch_health(grpc::HealthCheckServiceInterface& health) {
    std::unique_lock guard{health_mu_};
    while (!health_stop_) {
      guard.unlock();
      for (const auto& [service, up] : services_.health())
        health.SetServingStatus(service, up);
      guard.lock();
      health_cv_.wait_for(guard, settings_.health_interval,
                          [this] { return health_stop_; });
    }
  }

  void stop_health() {
    {
      std::lock_guard guard{health_mu_};
      health_stop_ = true;
    }
    health_cv_.notify_all();
    if (health_watch_.joinable())
      health_watch_.join();
  }

  // -- authorization (options::rules) ---------------------------------------

  /// Who calls: the kernel's word on a caller of the local socket, the
  /// certificate gRPC's TLS checked, or the address alone.
  peer_identity caller_of(const grpc::ServerContextBase& call) const {
    peer_identity who;
    who.address = call.peer();
    if (local_)
      if (auto kernel = local_->caller(who.address)) {
        who.kernel = *kernel;
        return who;
      }
    auto auth = call.auth_context();
    if (auth && auth->IsPeerAuthenticated()) {
      auto subject = auth->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME);
      if (!subject.empty()) {
        certificate_identity cert;
        cert.subject.assign(subject.front().data(), subject.front().size());
        for (const auto& san :
             auth->FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME))
          cert.alt_names.emplace_back(san.data(), san.size());
        who.certificate = std::move(cert);
      }
    }
    return who;
  }

  /// Why the caller may not use `verb` on `name`; nothing if it may (or
  /// the gateway has no rules).
  std::optional<error> refused(const grpc::ServerContextBase& call,
                               std::string_view name, verbs verb) override {
    if (!policy_)
      return std::nullopt;
    auto who = caller_of(call);
    if (policy_->allows(who, name, verb))
      return std::nullopt;
    auto text = policy_->principal(who) + " may not "
                + std::string{verb_word(verb)} + " to '" + std::string{name}
                + "' through the gateway on node '" + host_.name() + "'";
    refusals_.fetch_add(1, std::memory_order_relaxed);
    // A caller can refuse itself at will: one line a second at most.
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_refusal_log_.load(std::memory_order_relaxed);
    if (now - last > std::chrono::steady_clock::duration{std::chrono::seconds{1}}.count()
        && last_refusal_log_.compare_exchange_strong(last, now))
      host_.log(log_level::warning, "refused: " + text);
    return error{errc::permission_denied, std::move(text)};
  }

  bool may_find(const grpc::ServerContextBase& call,
                std::string_view name) const override {
    return !policy_ || policy_->allows(caller_of(call), name, verbs::find);
  }

  static std::string_view verb_word(verbs verb) {
    switch (verb) {
      case verbs::post: return "post";
      case verbs::send: return "send";
      case verbs::find: return "find";
      case verbs::broadcast: return "broadcast";
      case verbs::monitor: return "monitor";
      default: return "use";
    }
  }

  // -- plumbing -------------------------------------------------------------

  /// The node holding `name`: here, on this machine, or on a node the
  /// directory knows; not_found, or the node's error for a bad name.
  expected<std::string> find_holder(const std::string& name) {
    auto holder = holder_of(host_, name);
    if (!holder.empty())
      return holder;
    auto found = host_.find(name); // its error, for a bad name
    return found ? error{errc::not_found, "no actor named '" + name + "'"}
                 : found.error();
  }

  /// A name matching `pattern`, for the types of a broadcast; empty if none.
  std::string first_match(const std::string& pattern) {
    for (const auto& entry : host_.machine_names(pattern))
      if (!entry.actor.starts_with(gateway_prefix))
        return entry.actor + "@" + entry.node;
    return {};
  }

  deadline deadline_of(const grpc::CallbackServerContext& call) const override {
    auto at = call.deadline();
    if (at == std::chrono::system_clock::time_point::max())
      return deadline{settings_.default_deadline};
    auto left = at - std::chrono::system_clock::now();
    return deadline{std::chrono::duration_cast<std::chrono::nanoseconds>(left)};
  }

  grpc::ServerUnaryReactor* answer(grpc::ServerUnaryReactor* reactor) {
    book_->count();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* refuse(grpc::ServerUnaryReactor* reactor,
                                   const error& why) {
    book_->count();
    reactor->Finish(status_of(why));
    return reactor;
  }

  node& host_;
  options settings_;
  requester requester_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  // options::listen "unix:<path>": the socket, and who its callers are.
  std::unique_ptr<local_listener> local_;
  std::shared_ptr<call_book> book_ = std::make_shared<call_book>();
  // Services served by actors, and reflection (one generic service).
  actor_services services_{
    host_,       settings_.services, own_services(), requester_, book_,
    *this,
    // A response must fit a message, with room for the request it echoes.
    reflection_limits{std::min(settings_.max_message / 2,
                               std::size_t{1} << 20)}};
  // options::rules, made once; none: every caller acts as the node.
  std::optional<access_policy> policy_;
  // Follows the serving actors' names (options::health_interval).
  std::thread health_watch_;
  std::mutex health_mu_;
  std::condition_variable health_cv_;
  bool health_stop_ = false; // guarded by health_mu_
  std::atomic<std::uint64_t> refusals_{0};
  std::atomic<std::chrono::steady_clock::rep> last_refusal_log_{0};
};

namespace {

/// options::listen's prefix for a local socket.
constexpr std::string_view unix_scheme = "unix:";

/// "0660" for 0660.
std::string octal(unsigned mode) {
  char text[16];
  std::snprintf(text, sizeof text, "0%o", mode);
  return text;
}

/// A file's text; invalid_argument naming it if it cannot be read.
expected<std::string> pem(const std::string& path, const char* what) {
  std::ifstream in{path};
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty())
    return error{errc::invalid_argument, std::string{"the gateway's "} + what
                                           + " '" + path + "' cannot be read"};
  return text.str();
}

expected<std::shared_ptr<grpc::ServerCredentials>>
credentials_of(const options& settings) {
  if (!settings.tls)
    return grpc::InsecureServerCredentials();
  auto cert = pem(settings.tls->certificate, "certificate");
  auto key = pem(settings.tls->private_key, "private key");
  auto ca = pem(settings.tls->ca, "CA bundle");
  for (auto* file : {&cert, &key, &ca})
    if (!*file)
      return file->error();
  grpc::SslServerCredentialsOptions tls{
    GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY};
  tls.pem_root_certs = *ca;
  tls.pem_key_cert_pairs.push_back({*key, *cert});
  return grpc::SslServerCredentials(tls);
}

} // namespace

namespace {

/// What can be said of a gateway's settings before anything starts: the
/// listening address against TLS and the rules, and the services' names.
expected<void> check_settings(const node& host, const options& settings) {
  if (settings.listen.starts_with(unix_scheme)) {
    if (settings.tls)
      return error{errc::invalid_argument,
                   "the gateway's local socket takes no TLS: the kernel says "
                   "who its callers are"};
    if ((settings.socket_mode & 0077) != 0 && !settings.rules)
      return error{errc::invalid_argument,
                   "a gateway socket other users may connect to (mode "
                     + octal(settings.socket_mode)
                     + ") needs rules: without, every caller acts as node '"
                     + host.name() + "'"};
  } else {
    auto colon = settings.listen.rfind(':');
    auto address
      = settings.listen.substr(0, colon == std::string::npos ? 0 : colon);
    if (!settings.tls && !settings.allow_plaintext
        && !tcp::is_loopback(address))
      return error{errc::invalid_argument,
                   "the gateway would serve plaintext on " + settings.listen
                     + ": give it TLS, listen on a loopback address or a "
                       "local socket, or allow plaintext"};
  }
  for (const auto& [service, actor] : settings.services)
    if (auto checked = check_service_name(service, actor); !checked)
      return checked;
  return {};
}

} // namespace

expected<std::unique_ptr<server>> server::start(node& host, options settings) {
  if (auto checked = check_settings(host, settings); !checked)
    return std::move(checked).error();
  auto credentials = credentials_of(settings);
  if (!credentials)
    return std::move(credentials).error();
  static std::atomic<unsigned> made{0};
  // Names are unique on the machine: the node's name makes it so.
  auto name = std::string{gateway_prefix} + host.name() + "."
              + std::to_string(made.fetch_add(1));
  auto self = std::make_unique<impl>(host, settings, name);
  if (settings.rules) {
    auto policy = access_policy::make(*settings.rules);
    if (!policy)
      return error{policy.code(),
                   "the gateway's rules: " + policy.error().message()};
    self->policy_.emplace(std::move(*policy));
  }
  if (auto started = self->requester_.start(); !started)
    return std::move(started).error();
  // From here a failure stops the requester's actor it spawned.
  auto fail = [&self](error why) -> expected<std::unique_ptr<server>> {
    self->requester_.stop();
    return why;
  };
  // The standard services beside the gateway: health checking
  // (grpc.health.v1, a process-wide switch of gRPC, read when a server is
  // built) and server reflection, answered by services_ so that generic
  // tools list and call the actors' services too.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // A local socket is accepted here (the callers' credentials), a network
  // address by gRPC.
  if (settings.listen.starts_with(unix_scheme)) {
    auto opened = local_listener::open(
      settings.listen.substr(unix_scheme.size()), settings.socket_mode);
    if (!opened)
      return fail(std::move(opened).error());
    self->local_ = std::move(*opened);
  } else {
    builder.AddListeningPort(settings.listen, *credentials, &self->port_);
  }
  builder.RegisterService(self.get());
  // Every call the registered services do not take: actors' services
  // (configured, or declared at any time by actors anywhere) and
  // reflection.
  builder.RegisterCallbackGenericService(&self->services_);
  // Keepalive (options::keepalive): gRPC's channel arguments, in ms.
  auto ms = [](std::chrono::milliseconds d) {
    return static_cast<int>(std::min<std::int64_t>(d.count(), INT32_MAX));
  };
  const auto& alive = settings.keepalive;
  if (alive.time.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ms(alive.time));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               ms(alive.timeout));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  }
  builder.AddChannelArgument(
    GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
    ms(alive.min_client_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES,
                             alive.max_ping_strikes);
  if (alive.max_idle.count() > 0)
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               ms(alive.max_idle));
  if (alive.max_age.count() > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                               ms(alive.max_age));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               ms(alive.max_age_grace));
  }
  builder.SetMaxReceiveMessageSize(static_cast<int>(settings.max_message));
  builder.SetMaxSendMessageSize(static_cast<int>(settings.max_message));
  self->server_ = builder.BuildAndStart();
  if (!self->server_ || (self->port_ == 0 && !self->local_))
    return fail(error{errc::unavailable,
                      "the gateway cannot listen on " + settings.listen});
  if (self->local_)
    self->local_->serve(*self->server_);
  if (auto* health = self->server_->GetHealthCheckService()) {
    health->SetServingStatus(true);
    health->SetServingStatus(pb::Gateway::service_full_name(), true);
    self->health_watch_ = std::thread{[raw = self.get(), health] {
      raw->watch_health(*health);
    }};
  }
  return std::unique_ptr<server>{new server{std::move(self)}};
}

server::server(std::unique_ptr<impl> self) : impl_(std::move(self)) {}

server::~server() {
  // Calls under way end now; their continuations, if they come later,
  // find them cancelled.
  impl_->stop_health();
  if (auto* health = impl_->server_->GetHealthCheckService())
    health->SetServingStatus(false); // for whoever asks in the grace period
  impl_->local_.reset(); // no new callers
  impl_->book_->close();
  impl_->server_->Shutdown(std::chrono::system_clock::now()
                           + std::chrono::seconds{2});
  impl_->requester_.stop();
}

int server::port() const noexcept {
  return impl_->port_;
}

std::string server::address() const {
  const auto& listen = impl_->settings_.listen;
  if (impl_->local_)
    return listen;
  auto colon = listen.rfind(':');
  return listen.substr(0, colon == std::string::npos ? 0 : colon + 1)
         + std::to_string(impl_->port_);
}

namespace {

/// The gateway as a node plug-in: serves the node it is lent.
class gateway_plugin final : public node_plugin {
public:
  explicit gateway_plugin(std::unique_ptr<server> serving)
    : serving_(std::move(serving)) {}

  std::string address() const override {
    return serving_ ? serving_->address() : std::string{};
  }

  void stop() noexcept override {
    serving_.reset();
  }

private:
  std::unique_ptr<server> serving_;
};

} // namespace

plugin_factory plugin(options settings) {
  return [settings = std::move(settings)](
           node& host) -> expected<std::unique_ptr<node_plugin>> {
    auto started = server::start(host, settings);
    if (!started)
      return std::move(started).error();
    // Where, for whoever reads the log: the port the kernel chose for :0.
    host.log(log_level::info, "the gateway serves gRPC on " + (*started)->address());
    return std::unique_ptr<node_plugin>{
      std::make_unique<gateway_plugin>(std::move(*started))};
  };
}

std::uint64_t server::calls() const noexcept {
  return impl_->book_->answered();
}

std::uint64_t server::dropped() const noexcept {
  return impl_->book_->dropped();
}

std::uint64_t server::refusals() const noexcept {
  return impl_->refusals_.load(std::memory_order_relaxed);
}

} // namespace courier::gateway

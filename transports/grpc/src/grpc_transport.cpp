#include "courier/grpc_tier/grpc_transport.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "address.hpp"
#include "grpc_calls.hpp"
#include "grpc_link.hpp"
#include "queue_driver.hpp"

namespace courier::grpc_tier {

namespace {

using ::grpc::ByteBuffer;

int clamp_ms(std::chrono::milliseconds d) {
  return static_cast<int>(std::clamp<std::int64_t>(d.count(), 1, INT32_MAX));
}

std::chrono::system_clock::time_point system_time(deadline until) {
  return std::chrono::system_clock::now()
         + std::chrono::duration_cast<std::chrono::system_clock::duration>(
           until.remaining());
}

/// A file's text; invalid_argument naming it if it cannot be read.
expected<std::string> pem(const std::string& path, const char* what) {
  std::ifstream in{path};
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().empty())
    return error{errc::invalid_argument, std::string{"the gRPC tier's "} + what
                                           + " '" + path + "' cannot be read"};
  return text.str();
}

/// The PEM texts of a node's TLS files.
struct tls_texts {
  std::string certificate;
  std::string private_key;
  std::string ca;
};

expected<tls_texts> read_tls(const tls_files& files) {
  auto cert = pem(files.certificate, "certificate");
  auto key = pem(files.private_key, "private key");
  auto ca = pem(files.ca, "CA bundle");
  for (auto* file : {&cert, &key, &ca})
    if (!*file)
      return file->error();
  return tls_texts{std::move(*cert), std::move(*key), std::move(*ca)};
}

/// The peer as gRPC's TLS checked it: its certificate's subject and
/// subject alternative names (nothing on plaintext), and its address.
peer_identity identity_of(const ::grpc::AuthContext* auth,
                          std::string address) {
  peer_identity who;
  who.address = std::move(address);
  if (auth == nullptr || !auth->IsPeerAuthenticated())
    return who;
  auto subject = auth->FindPropertyValues(GRPC_X509_SUBJECT_PROPERTY_NAME);
  if (subject.empty())
    return who;
  certificate_identity cert;
  cert.subject.assign(subject.front().data(), subject.front().size());
  for (const auto& san : auth->FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME))
    cert.alt_names.emplace_back(san.data(), san.size());
  who.certificate = std::move(cert);
  return who;
}

// -- the ticker ---------------------------------------------------------------

/// One thread per transport ticks every link (heartbeats, silence, closing
/// deadlines): no thread, and no timer, per link.
///
/// Thread safety: all member functions are thread-safe.
class ticker {
public:
  explicit ticker(std::chrono::milliseconds step) : step_(step) {
    thread_ = std::thread{[this] { run(); }};
  }

  ~ticker() {
    {
      std::lock_guard guard{mu_};
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  ticker(const ticker&) = delete;
  ticker& operator=(const ticker&) = delete;

  void track(const std::shared_ptr<grpc_link>& link) {
    std::lock_guard guard{mu_};
    links_.push_back(link);
  }

  /// Every link alive.
  std::vector<std::shared_ptr<grpc_link>> alive() {
    std::lock_guard guard{mu_};
    std::vector<std::shared_ptr<grpc_link>> out;
    for (const auto& weak : links_)
      if (auto link = weak.lock())
        out.push_back(std::move(link));
    return out;
  }

  /// Waits until no link is left ticking, or `until`; true if none is.
  bool wait_idle(std::chrono::steady_clock::time_point until) {
    std::unique_lock lock{mu_};
    return cv_.wait_until(lock, until, [this] { return links_.empty(); });
  }

private:
  void run() {
    std::unique_lock lock{mu_};
    while (!stopping_) {
      cv_.wait_for(lock, step_);
      if (stopping_)
        break;
      auto links = links_;
      lock.unlock();
      auto now = grpc_link::clock::now();
      std::vector<bool> keep;
      keep.reserve(links.size());
      for (const auto& weak : links) {
        auto link = weak.lock();
        keep.push_back(link && link->tick(now));
      }
      lock.lock();
      // Links tracked meanwhile are at the end, beyond what was ticked.
      std::size_t i = 0;
      std::erase_if(links_, [&](const std::weak_ptr<grpc_link>&) {
        return i < keep.size() && !keep[i++];
      });
      if (links_.empty())
        cv_.notify_all();
    }
  }

  const std::chrono::milliseconds step_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::weak_ptr<grpc_link>> links_; // guarded by mu_
  bool stopping_ = false;                       // guarded by mu_
  std::thread thread_;
};

// -- the transport ----------------------------------------------------------------

class grpc_transport final : public transport, private call_acceptor {
public:
  grpc_transport(const transport_limits& limits, options settings,
                 std::optional<tls_texts> tls)
    : limits_(limits),
      settings_(std::move(settings)),
      tls_(std::move(tls)),
      live_{settings_.heartbeat, settings_.unreachable_after},
      builder_(std::make_unique<::grpc::ServerBuilder>()),
      // The server's queue, made before the server: it serves the dialed
      // calls too, so that one thread (and one poll) drains the tier.
      queue_(builder_->AddCompletionQueue()),
      driver_(queue_.get()),
      ticker_(tick_step()) {
    quota_.Resize(quota_bytes(limits_));
  }

  /// What gRPC may hold for the tier's connections: a frame being read on
  /// a few links at once, and their windows.
  static std::size_t quota_bytes(const transport_limits& limits) {
    return std::max<std::size_t>(8 * limits.max_frame, std::size_t{32} << 20);
  }

  ~grpc_transport() override {
    stop();
  }

  /// A scheduler thread polling: does the tier's I/O and hands frames to
  /// the links' events, unless another thread of the process is in gRPC's
  /// poller (queue_driver.hpp).
  bool poll() override {
    return driver_.poll();
  }

  bool pollable() const noexcept override {
    return true;
  }

  /// A node with plug-ins may run the gateway, whose gRPC callback threads
  /// then do this tier's I/O too (docs/benchmarks.md: polled beside it,
  /// the tier's round trip was 15 x raw gRPC; not polled, as before).
  bool pollable_beside_plugins() const noexcept override {
    return false;
  }

  void polling_stopped() override {
    driver_.polling_stopped();
  }

  std::string_view name() const noexcept override {
    return "grpc";
  }

  /// Below TCP wherever both reach: chosen by preference, or where it is
  /// the only tier both nodes have.
  reach_result reach(const node_place& self,
                     const node_place& peer) const override {
    if (self.same_host(peer))
      return {1, "same host (gRPC over the loopback, a last resort)"};
    if (self.host_id != peer.host_id || self.boot_id != peer.boot_id)
      return {5, "another host (gRPC)"};
    return {5, "another network namespace (gRPC)"};
  }

  expected<std::string>
  listen(const listen_context& where,
         std::function<void(std::unique_ptr<link>)> on_accept) override {
    auto here = parse_address(settings_.listen, false);
    if (!here)
      return std::move(here).error();
    if (!tls_ && !settings_.allow_plaintext && !is_loopback(here->host))
      return error{errc::failed_precondition,
                   "the gRPC tier would listen on " + here->host_port()
                     + " without TLS: configure tls, or allow_plaintext on "
                       "a trusted network"};
    address published;
    if (!settings_.advertise.empty()) {
      auto told = parse_address(settings_.advertise, false);
      if (!told)
        return std::move(told).error();
      published = *told;
    } else if (is_wildcard(here->host)) {
      return error{errc::invalid_argument,
                   "the gRPC tier listens on " + here->host_port()
                     + ", every address: say which one peers dial "
                       "(advertise)"};
    } else {
      published.host = here->host;
    }
    on_accept_ = std::move(on_accept);
    std::shared_ptr<::grpc::ServerCredentials> credentials;
    if (tls_) {
      ::grpc::SslServerCredentialsOptions tls{
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY};
      tls.pem_root_certs = tls_->ca;
      tls.pem_key_cert_pairs.push_back({tls_->private_key, tls_->certificate});
      credentials = ::grpc::SslServerCredentials(tls);
    } else {
      credentials = ::grpc::InsecureServerCredentials();
    }
    int port = 0;
    if (!builder_)
      return error{errc::failed_precondition,
                   "the gRPC tier listens once"};
    auto& builder = *builder_;
    builder.AddListeningPort(here->host_port(), credentials, &port);
    builder.RegisterAsyncGenericService(&service_);
    builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<std::size_t>(limits_.max_frame, INT32_MAX)));
    builder.SetMaxSendMessageSize(static_cast<int>(
      std::min<std::size_t>(limits_.max_frame, INT32_MAX)));
    // One stream per connection: a link is a connection, and a client
    // cannot open streams beyond it.
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 1);
    builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                               clamp_ms(settings_.handshake_timeout));
    // Keepalive both ways, and dialers' pings welcome at that pace.
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                               clamp_ms(settings_.unreachable_after));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                               clamp_ms(settings_.unreachable_after));
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      clamp_ms(settings_.unreachable_after / 2));
    builder.SetResourceQuota(quota_);
    // Windows that stay small (gRPC's 64 KiB lookahead) instead of growing
    // with the bandwidth-delay probe: what gRPC buffers per link is then a
    // window and the one message being read, well within the quota.
    builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    server_ = builder.BuildAndStart();
    builder_.reset();
    if (!server_ || port == 0)
      return error{errc::unavailable,
                   "the gRPC tier cannot listen on " + here->host_port()};
    request_next();
    if (published.port == 0)
      published.port = static_cast<std::uint16_t>(port);
    if (tls_) {
      published.tls = true;
      published.node = where.node;
    }
    return published.published();
  }

  expected<std::unique_ptr<link>> connect(const std::string& text,
                                          deadline until) override {
    auto there = parse_address(text, true);
    if (!there)
      return std::move(there).error();
    if (there->tls && !tls_)
      return error{errc::failed_precondition,
                   "the peer at " + there->host_port()
                     + " speaks TLS and this node has no certificate"};
    if (!there->tls && tls_)
      return error{errc::permission_denied,
                   "the peer at " + there->host_port()
                     + " speaks plaintext gRPC and this node requires TLS"};
    if (!there->tls && !settings_.allow_plaintext
        && !is_loopback(there->host))
      return error{errc::permission_denied,
                   "plaintext gRPC to " + there->host_port()
                     + " is not allowed (allow_plaintext)"};
    auto cap = deadline{settings_.handshake_timeout};
    if (cap.remaining() < until.remaining())
      until = cap;
    auto channel = dial(*there);
    if (!channel->WaitForConnected(system_time(until)))
      return error{errc::unavailable,
                   "cannot connect to " + there->host_port() + " (gRPC: "
                     + state_text(channel->GetState(false)) + ")"};
    if (stopped_.load())
      return error{errc::unavailable, "the gRPC tier stopped"};
    auto impl = std::make_shared<grpc_link>(peer_identity{}, limits_, live_,
                                            false);
    auto* call = new client_call(impl, queue_.get(), calls_);
    impl->attach(call);
    auto opened = call->begin(channel);
    if (opened.wait_for(until.remaining()) != std::future_status::ready
        || !opened.get()) {
      impl->fail(error{errc::cancelled, "not opened"});
      return error{errc::unavailable,
                   "the peer at " + there->host_port()
                     + " did not open a link stream in time"};
    }
    // Known once the call is under way: the server's certificate, which
    // gRPC checked against the CA and against the node the address names.
    impl->identify(identity_of(call->context().auth_context().get(),
                               there->host_port()));
    ticker_.track(impl);
    if (stopped_.load()) {
      // stop() may have missed it: it waits for its call to end.
      impl->fail(error{errc::unavailable, "the gRPC tier stopped"});
      return error{errc::unavailable, "the gRPC tier stopped"};
    }
    return std::unique_ptr<link>{new shared_link<grpc_link>(std::move(impl))};
  }

  void stop() override {
    if (stopped_.exchange(true))
      return;
    // Links write what they queued (bounded by their closing deadline),
    // then the server ends what is left.
    for (const auto& link : ticker_.alive())
      link->close();
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds{3};
    if (!ticker_.wait_idle(until))
      for (const auto& link : ticker_.alive())
        link->fail(error{errc::cancelled, "the gRPC tier stopped"});
    if (server_)
      server_->Shutdown(std::chrono::system_clock::now()
                        + std::chrono::seconds{1});
    // The queue goes once no call is left on it (gRPC forbids operations
    // on a queue shut down). The server's shutdown ended the accepted
    // calls; a dialed one may wait for a server that does not end it, or
    // be one that a connect() made meanwhile: cancelled.
    while (!calls_.wait_none(std::chrono::steady_clock::now()
                             + std::chrono::milliseconds{100}))
      calls_.cancel_dialed();
    driver_.shutdown();
  }

private:
  // -- call_acceptor (threads draining the queue) ------------------------------

  std::shared_ptr<grpc_link> admit(::grpc::GenericServerContext& call,
                                   ::grpc::Status& refusal) override {
    if (call.method() != link_method) {
      refusal = ::grpc::Status{::grpc::StatusCode::UNIMPLEMENTED,
                               "this server carries Courier links only ("
                                 + std::string{link_method} + ")"};
      return nullptr;
    }
    if (stopped_.load()) {
      refusal = ::grpc::Status{::grpc::StatusCode::UNAVAILABLE,
                               "the node is stopping"};
      return nullptr;
    }
    return std::make_shared<grpc_link>(
      identity_of(call.auth_context().get(), call.peer()), limits_, live_,
      true);
  }

  void hand_over(const std::shared_ptr<grpc_link>& link) override {
    ticker_.track(link);
    on_accept_(std::unique_ptr<courier::link>{new shared_link<grpc_link>(link)});
  }

  void request_next() override {
    // (After the server's shutdown began, gRPC fails the request at once.)
    new server_call(service_, queue_.get(), *this, calls_);
  }

  std::chrono::milliseconds tick_step() const {
    using std::chrono::milliseconds;
    auto step = std::min(settings_.heartbeat.count() > 0
                           ? settings_.heartbeat
                           : settings_.unreachable_after,
                         settings_.unreachable_after.count() > 0
                           ? settings_.unreachable_after / 10
                           : settings_.heartbeat);
    return std::clamp(step, milliseconds{10}, milliseconds{100});
  }

  static std::string state_text(grpc_connectivity_state state) {
    switch (state) {
      case GRPC_CHANNEL_IDLE: return "idle";
      case GRPC_CHANNEL_CONNECTING: return "still connecting";
      case GRPC_CHANNEL_READY: return "ready";
      case GRPC_CHANNEL_TRANSIENT_FAILURE: return "connection failed";
      case GRPC_CHANNEL_SHUTDOWN: return "shut down";
    }
    return "unknown";
  }

  /// A channel of its own for one link (not shared with other channels to
  /// the same address: a link is a connection).
  std::shared_ptr<::grpc::Channel> dial(const address& there) const {
    ::grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<std::size_t>(limits_.max_frame, INT32_MAX)));
    args.SetMaxSendMessageSize(static_cast<int>(
      std::min<std::size_t>(limits_.max_frame, INT32_MAX)));
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetResourceQuota(quota_);
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0); // as the server's, above
    // Retries would keep copies of what a stream sent, to send it again.
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                clamp_ms(settings_.unreachable_after));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                clamp_ms(settings_.unreachable_after));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    if (!tls_)
      return ::grpc::CreateCustomChannel(there.host_port(),
                                         ::grpc::InsecureChannelCredentials(),
                                         args);
    // The server's certificate must name the node the record says is
    // there (DNS:<node>), not the address dialled.
    args.SetSslTargetNameOverride(there.node);
    ::grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = tls_->ca;
    tls.pem_private_key = tls_->private_key;
    tls.pem_cert_chain = tls_->certificate;
    return ::grpc::CreateCustomChannel(there.host_port(),
                                       ::grpc::SslCredentials(tls), args);
  }

  const transport_limits limits_;
  const options settings_;
  const std::optional<tls_texts> tls_; // none: plaintext
  const liveness live_;
  // gRPC 1.51 reads a message whole before it checks its size against the
  // limit, widening the stream's window to let it come: a peer announcing
  // a gigabyte would be buffered a gigabyte. The quota caps what gRPC
  // holds for all of this tier's connections; past it, gRPC cancels a
  // stream ("Buffers full", resource_exhausted) instead of growing.
  ::grpc::ResourceQuota quota_{"courier-grpc-tier"};
  std::unique_ptr<::grpc::ServerBuilder> builder_; // until listen()
  std::unique_ptr<::grpc::ServerCompletionQueue> queue_;
  queue_driver driver_;
  call_registry calls_;
  ticker ticker_;
  std::function<void(std::unique_ptr<link>)> on_accept_;
  ::grpc::AsyncGenericService service_;
  std::unique_ptr<::grpc::Server> server_; // before service_ goes
  std::atomic<bool> stopped_{false};
};

} // namespace

transport_factory factory(options settings) {
  return [settings = std::move(settings)](
           transport_limits limits) -> expected<std::unique_ptr<transport>> {
    // Room for two of the largest frames: a writer that waits for
    // writable() never meets a full queue.
    limits.max_queued = std::max(limits.max_queued, 2 * limits.max_frame);
    if (settings.unreachable_after.count() > 0
        && settings.heartbeat >= settings.unreachable_after)
      return error{errc::invalid_argument,
                   "the heartbeat must be shorter than unreachable_after"};
    std::optional<tls_texts> tls;
    if (settings.tls) {
      auto read = read_tls(*settings.tls);
      if (!read)
        return std::move(read).error();
      tls = std::move(*read);
    }
    try {
      return std::unique_ptr<transport>{
        new grpc_transport(limits, settings, std::move(tls))};
    } catch (const std::exception& ex) {
      return error{errc::internal,
                   std::string{"cannot start the gRPC tier: "} + ex.what()};
    }
  };
}

} // namespace courier::grpc_tier

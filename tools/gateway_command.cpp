// courier gateway: the CLI's node serves the verbs to gRPC clients until
// SIGINT or SIGTERM (docs/gateway.md).

#include <csignal>
#include <iostream>
#include <sstream>
#include <string>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "courier/courier.hpp"
#include "courier/gateway/gateway.hpp"

namespace courier::cli {

namespace {

/// Written by the signal handler (on whichever thread the kernel picks),
/// read by the command's thread.
int stop_pipe[2] = {-1, -1};

void on_stop(int signal) {
  unsigned char byte = static_cast<unsigned char>(signal);
  (void) !::write(stop_pipe[1], &byte, 1);
}

} // namespace

command gateway_command(CLI::App& sub) {
  auto settings = std::make_shared<gateway::options>();
  sub.add_option("--listen", settings->listen,
                 "host:port to serve gRPC on; port 0 picks one (default "
                 "127.0.0.1:0); or unix:PATH, a local socket whose callers "
                 "are uid:N to the rules");
  sub.add_flag("--allow-plaintext", settings->allow_plaintext,
               "serve plaintext on a network address that is not the "
               "loopback (a trusted network only)");
  auto mode = std::make_shared<std::string>();
  sub.add_option("--socket-mode", *mode,
                 "the local socket's permissions, octal (default 0600: this "
                 "user alone; wider needs --rule)")
    ->type_name("MODE");
  auto tls = std::make_shared<gateway::tls_files>();
  sub.add_option("--certificate", tls->certificate,
                 "mutual TLS: the gateway's certificate (PEM, from courier "
                 "cert); with --private-key and --ca")
    ->type_name("FILE");
  sub.add_option("--private-key", tls->private_key, "its private key (PEM)")
    ->type_name("FILE");
  sub.add_option("--ca", tls->ca,
                 "the CA whose certificates callers must present (PEM)")
    ->type_name("FILE");
  auto rules = std::make_shared<std::vector<std::string>>();
  sub.add_option("--rule", *rules,
                 "who may do what through the gateway, \"PRINCIPAL NAMES "
                 "VERBS\" (e.g. \"cert:CN=clerk orders.* send,find\"; "
                 "docs/security.md); repeatable; with any, callers are "
                 "denied what no rule allows")
    ->type_name("RULE");
  return [settings, tls, rules, mode](node& self, const global_options&) {
    if (!mode->empty()) {
      std::size_t used = 0;
      unsigned long bits = 0;
      try {
        bits = std::stoul(*mode, &used, 8);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != mode->size() || bits > 0777)
        return fail(error{errc::invalid_argument,
                          "--socket-mode is octal permissions (0600, 0660), "
                          "not \"" + *mode + "\""});
      settings->socket_mode = static_cast<unsigned>(bits);
    }
    if (!rules->empty()) {
      std::vector<access_rule> parsed;
      for (const auto& text : *rules) {
        std::istringstream words{text};
        std::string principal, names, verb_list, extra;
        if (!(words >> principal >> names >> verb_list) || (words >> extra))
          return fail(error{errc::invalid_argument,
                            "a --rule is \"PRINCIPAL NAMES VERBS\", not \""
                              + text + "\""});
        auto allowed = parse_verbs(verb_list);
        if (!allowed)
          return fail(allowed.error());
        parsed.push_back({principal, names, *allowed});
      }
      settings->rules = std::move(parsed);
    }
    const bool any = !tls->certificate.empty() || !tls->private_key.empty()
                     || !tls->ca.empty();
    if (any && (tls->certificate.empty() || tls->private_key.empty()
                || tls->ca.empty()))
      return fail(error{errc::invalid_argument,
                        "TLS needs --certificate, --private-key and --ca"});
    if (any)
      settings->tls = *tls;
    if (::pipe2(stop_pipe, O_CLOEXEC) != 0)
      return fail(error{errc::internal, "cannot make a pipe"});
    struct sigaction action {};
    action.sa_handler = on_stop;
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    auto served = gateway::server::start(self, *settings);
    if (!served)
      return fail(served.error());
    std::cout << "courier gateway: node '" << self.name() << "' serves gRPC on "
              << (*served)->address() << std::endl;
    unsigned char signal = 0;
    while (::read(stop_pipe[0], &signal, 1) != 1 && errno == EINTR) {
    }
    std::cout << "courier gateway: stopping ("
              << (signal == SIGINT ? "SIGINT" : "SIGTERM") << ")" << std::endl;
    return exit_ok;
  };
}

} // namespace courier::cli

// `courier cert ca` and `courier cert node`: a development CA and node
// certificates for the TCP tier's mutual TLS (cert.hpp does the work).

#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cert.hpp"
#include "cli.hpp"

namespace courier::cli {

namespace {

/// Checks an OFFSET argument with cert::parse_offset's rule: bad usage,
/// with its reason, when it fails.
CLI::Validator offset_check() {
  return CLI::Validator(
    [](std::string& text) {
      auto parsed = cert::parse_offset(text);
      return parsed ? std::string{} : parsed.error().message();
    },
    "OFFSET");
}

int report(const expected<cert::written_files>& written,
           const global_options& global) {
  if (!written)
    return fail(written.error());
  if (global.json) {
    nlohmann::ordered_json out{{"certificate", written->certificate.string()},
                               {"private_key", written->private_key.string()}};
    std::cout << out.dump() << "\n";
  } else {
    std::cout << "wrote " << written->certificate.string() << " and "
              << written->private_key.string() << "\n";
  }
  return exit_ok;
}

} // namespace

offline_command cert_command(CLI::App& sub) {
  sub.require_subcommand(1);
  sub.footer(
    "Certificates for the TCP tier's mutual TLS: every node trusts the CA's "
    "ca.pem and presents its own certificate, whose subject alternative "
    "names include DNS:<node name>. Keys are EC P-256, written with mode "
    "0600. Existing files are kept unless --force is given.");

  auto ca = std::make_shared<cert::ca_request>();
  auto* ca_sub = sub.add_subcommand(
    "ca", "make a development CA: DIR/ca.pem and DIR/ca.key");
  ca_sub
    ->add_option("--out", ca->out,
                 "the folder to write to (made if "
                 "missing)")
    ->required()
    ->type_name("DIR");
  ca_sub->add_option("--name", ca->name, "the CA's common name")
    ->capture_default_str();
  ca_sub->add_option("--days", ca->days, "validity in days, from an hour ago")
    ->check(CLI::Range(1, 36600))
    ->capture_default_str();
  ca_sub->add_flag("--force", ca->force, "replace existing files");

  auto node = std::make_shared<cert::node_request>();
  auto not_before = std::make_shared<std::string>();
  auto not_after = std::make_shared<std::string>();
  auto* node_sub = sub.add_subcommand(
    "node", "make NAME's certificate, signed by the CA: DIR/NAME.pem and "
            "DIR/NAME.key");
  node_sub
    ->add_option("name", node->name,
                 "the node's name; the certificate's CN and DNS:NAME")
    ->required();
  node_sub
    ->add_option("--ca", node->ca, "the CA's folder, with ca.pem and ca.key")
    ->required()
    ->type_name("DIR");
  node_sub
    ->add_option("--out", node->out,
                 "the folder to write to (made if "
                 "missing)")
    ->required()
    ->type_name("DIR");
  node_sub
    ->add_option("--san", node->sans,
                 "another subject alternative name, DNS:<host> or "
                 "IP:<address>; repeatable")
    ->type_name("SAN");
  node_sub
    ->add_option("--days", node->days, "validity from --not-before, in days")
    ->check(CLI::Range(1, 36600))
    ->capture_default_str();
  node_sub
    ->add_option("--not-before", *not_before,
                 "start of validity from now: -2d, +1h, 30m, 10s "
                 "(default: -1h, for clocks a little behind)")
    ->check(offset_check());
  node_sub
    ->add_option("--not-after", *not_after,
                 "end of validity from now, same form (default: "
                 "--not-before plus --days); -1h makes an expired "
                 "certificate")
    ->check(offset_check());
  node_sub->add_flag("--force", node->force, "replace existing files");

  // Which verb ran is recorded while parsing: the CLI11 objects are gone
  // by the time the work runs.
  auto making_ca = std::make_shared<bool>(false);
  ca_sub->callback([making_ca] { *making_ca = true; });
  return
    [ca, making_ca, node, not_before, not_after](const global_options& global) {
      if (*making_ca)
        return report(cert::make_ca(*ca), global);
      // Both were checked by offset_check() while parsing.
      if (!not_before->empty())
        node->not_before = *cert::parse_offset(*not_before);
      if (!not_after->empty())
        node->not_after = *cert::parse_offset(*not_after);
      return report(cert::make_node_certificate(*node), global);
    };
}

} // namespace courier::cli

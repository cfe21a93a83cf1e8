#pragma once

// Static seeds: the directory seam for two or three machines without a
// registry (docs/directory.md, "Static seeds"). The configuration lists the
// other machines' nodes by name and address (node_config::seeds); this
// node's own machine stays the machine's file directory, which it wraps.
//
// What a seed holds is asked over the link to it: the names it lets this
// node find (NamesQuery, its rules' verb find), and its record, which its
// handshake answer carries. Answers are cached for `max_age`; a lookup that
// misses, or meets an answer older than that, asks every seed again (one
// asker at a time, each seed within the handshake deadline). A seed that
// does not answer is left out until the next ask, and said so in the log.
//
// Uniqueness is best effort: a name is claimed on this machine (file
// locks), and refused when a seed answered that it holds it; two machines
// claiming one name in the same instant both get it. The etcd registry
// (etcd_directory.hpp) is the directory that promises uniqueness.

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "courier/options.hpp"
#include "directory.hpp"

namespace courier::detail {

class file_directory;

/// Thread safety: all member functions are thread-safe. Calls that ask the
/// seeds may block (each seed up to the lister's deadline); none holds the
/// cache's lock meanwhile.
class seed_directory final : public directory {
public:
  /// What a seed answers: the names it lets this node find, the
  /// descriptors of its message types and the services its actors serve.
  struct answer {
    std::vector<std::string> names;
    peer_publications published;
  };

  /// Asks a node, over a link to it.
  using lister = std::function<expected<answer>(const std::string& node)>;

  /// `seeds` were checked (check_seed); `local` is the machine's directory.
  seed_directory(std::vector<seed> seeds, std::unique_ptr<file_directory> local,
                 std::chrono::milliseconds max_age,
                 std::function<void(log_level, std::string_view)> log);
  ~seed_directory() override;

  /// From now on the seeds are asked with `list` (the node calls it once
  /// its tiers are up; before, only this machine is known).
  void start_asking(lister list);

  /// Stops asking: later lookups use what is cached (before the node's
  /// links go).
  void stop_asking();

  std::string local_dir() const override;
  std::string access_warning() const override;
  expected<void> publish(const v1::NodeRecord& record) override;
  expected<void> claim_name(std::string_view actor) override;
  void release_name(std::string_view actor) override;
  expected<std::string> owner_of(std::string_view actor) override;
  expected<v1::NodeRecord> read_node(std::string_view node) override;
  std::vector<v1::NodeRecord> nodes() override;
  std::vector<std::pair<std::string, std::string>> names() override;
  void suspect(std::string_view node) override;
  void learn(const v1::NodeRecord& record) override;

private:
  struct known {
    seed where;
    v1::NodeRecord record; // the configured address, until the peer says
    std::vector<std::string> names; // sorted; as of `asked`
    bool answered = false;          // the last ask got an answer
    bool silent = false;            // its silence was logged
    std::chrono::steady_clock::time_point asked{};
  };

  /// Asks every seed whose answer is older than max_age (all of them with
  /// `all`), unless another thread is asking: then waits for its answers.
  void refresh(bool all);

  /// The seed named `node`, or null; under mu_.
  known* find(std::string_view node);

  std::unique_ptr<file_directory> local_;
  std::chrono::milliseconds max_age_;
  std::function<void(log_level, std::string_view)> log_;
  std::mutex ask_mu_; // one asker at a time; taken before mu_
  mutable std::mutex mu_;
  std::vector<known> seeds_; // guarded by mu_
  lister list_;              // guarded by mu_
};

/// invalid_argument unless `s` names a valid node and a TCP address.
expected<void> check_seed(const seed& s);

} // namespace courier::detail

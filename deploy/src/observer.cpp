#include "observer.hpp"

#include "courier/pipe/pipe_transport.hpp"

namespace courier::deploy::detail {

expected<node> start_observer(const system_spec& system, std::string name,
                              std::function<void(std::string_view)> log) {
  node_config config;
  config.name = std::move(name);
  config.directory = system.directory;
  config.transports = {{"pipe", pipe::factory()}};
  config.log = [log = std::move(log)](log_level level, std::string_view line) {
    if (level >= log_level::error && log)
      log(line);
  };
  return node::start(std::move(config));
}

std::map<int, std::vector<std::string>> names_by_pid(const node& observer) {
  std::map<std::string, int> pids;
  for (const auto& info : observer.nodes())
    pids[info.name] = info.pid;
  std::map<int, std::vector<std::string>> out;
  for (const auto& held : observer.machine_names("*"))
    if (auto at = pids.find(held.node);
        at != pids.end() && held.actor != "courier.node." + held.node)
      out[at->second].push_back(held.actor);
  return out;
}

} // namespace courier::deploy::detail

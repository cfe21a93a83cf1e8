#pragma once

// The node through which the supervisor and `ps` read the node directory:
// the runtime's own directory interface (node::nodes, node::machine_names),
// never the directory's files.

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "courier/deploy/system_file.hpp"
#include "courier/node.hpp"

namespace courier::deploy::detail {

/// Starts a node named `name` in the system's directory, with the named
/// pipe (to ask nodes of other users which names they hold); its errors
/// go to `log` (a refused link is a warning: it would repeat at every
/// look).
expected<node> start_observer(const system_spec& system, std::string name,
                              std::function<void(std::string_view)> log);

/// The actor names held in the directory, by the pid of the node holding
/// them; a node's own system actor (courier.node.<node>) is left out.
std::map<int, std::vector<std::string>> names_by_pid(const node& observer);

} // namespace courier::deploy::detail

// Full dump and restore of a tree's own network namespace in CRIU's images: netns-N.img (sysctls),
// netdev-N.img (links: lo and veth), ifaddr/route/route6/rule-N.img (ip(8) save output) and
// iptables/ip6tables-N.img (iptables-save output). Other link kinds are refused before freezing.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"

namespace crshim::net {

// The path of an external tool in the usual sbin and bin directories, if it is installed.
std::optional<std::string> find_tool(const std::string& name);

// Runs `args` (args[0] found by find_tool) with stdin `in` and stdout `out` (-1: /dev/null) and waits;
// a failure carries the last line the tool wrote to stderr. Run from a thread inside a network
// namespace (rtnl::in_netns), the tool works in that namespace.
Status run_tool(const std::vector<std::string>& args, int in, int out);

// `text` as an fd a tool can read from its start (a memfd named `name`): stdin for run_tool().
Result<UniqueFd> text_fd(const std::string& text, const std::string& name);

// What in the network namespace of `pid` cannot be dumped ("" when all can): links of other kinds
// than loopback and veth (named with their kind), veths whose peer is in the same namespace.
std::string full_dump_problems(pid_t pid);

// Writes every network image of the namespace of `pid` under the id `ns_id`; `host_ns_id` is the id
// of crshim's own namespace, recorded as the peer namespace of veths.
Status dump_full(pid_t pid, uint32_t ns_id, uint32_t host_ns_id, int images_dir, Logger& log);

// The host ends of the veth pairs a restore created: deleted again (with their inner ends) when the
// restore fails, that is unless commit() is called.
class NetGuard {
 public:
  NetGuard() = default;
  NetGuard(NetGuard&& o) noexcept : outer_(std::move(o.outer_)) { o.outer_.clear(); }
  NetGuard& operator=(NetGuard&&) = delete;
  ~NetGuard();
  void add(std::string outer) { outer_.push_back(std::move(outer)); }
  void commit() { outer_.clear(); }

 private:
  std::vector<std::string> outer_;
};

// Recreates the dumped namespace `ns_id` inside the (new, empty) network namespace of `pid`: sysctls,
// links (veth host ends named by --external veth[IN]:OUT[@BRIDGE]), addresses, routes, rules, iptables.
Result<NetGuard> restore_full(pid_t pid, uint32_t ns_id, const std::vector<std::string>& external, int images_dir,
                              Logger& log);

}  // namespace crshim::net

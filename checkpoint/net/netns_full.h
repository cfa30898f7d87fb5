// Full dump and restore of a tree's own network namespace in CRIU's images: netns-N.img (sysctls),
// netdev-N.img (links: lo and veth), ifaddr/route/route6/rule-N.img (ip(8) save output),
// iptables/ip6tables-N.img (iptables-save output), nftables-N.img (nft list ruleset output: the
// tables iptables does not own) and netns-ct/exp-N.img (conntrack.h). Other link kinds are refused
// before freezing.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"

namespace crshim::net {

// The texts of the iptables and nftables images (kept apart from running the tools so they can be
// checked on their own). A table is named "FAMILY NAME" ("inet t", "ip filter").
namespace nftrules {

// The tables of `nft list ruleset` output, in order.
std::vector<std::string> tables(std::string_view ruleset);
// `ruleset` without the tables in `drop`.
std::string without_tables(std::string_view ruleset, const std::set<std::string>& drop);
// A network-lock table ("inet CRIU-<run id>", net_lock.h): never dumped or restored as rules.
bool is_lock_table(std::string_view table);

// Whether iptables-save output comes from iptables-nft (its tables are nftables tables then).
bool save_is_nft(std::string_view save);
// The tables ("*filter" -> "filter") of iptables-save output; with `complete_only`, without those
// iptables-save called incompatible (it printed only what it could express of them).
std::vector<std::string> save_tables(std::string_view save, bool complete_only);
// iptables-save output without the tables (sections "*NAME" ... "COMMIT") in `drop`.
std::string save_without(std::string_view save, const std::set<std::string>& drop);

}  // namespace nftrules

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
// links (veth host ends named by --external veth[IN]:OUT[@BRIDGE]), addresses, routes, rules,
// iptables, nftables.
Result<NetGuard> restore_full(pid_t pid, uint32_t ns_id, const std::vector<std::string>& external, int images_dir,
                              Logger& log);

}  // namespace crshim::net

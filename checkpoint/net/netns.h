// The network namespace of a dumped tree: external (--external net[INO]:KEY, joined again at restore
// through --inherit-fd fd[N]:KEY), empty (--empty-ns net, a fresh one with lo up at restore), or
// dumped in full (netns_full.h: links lo and veth, addresses, routes, rules, iptables, nftables,
// conntrack, sysctls).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/engine.h"
#include "checkpoint/net/netns_full.h"
#include "checkpoint/restore/images.h"
#include "inventory.pb.h"

namespace crshim::net {

std::string netns_file(uint32_t ns_id);

// The KEY of an --external net[INO]:KEY entry for nsfs inode `ino`, if there is one.
std::optional<std::string> external_key(const std::vector<std::string>& external, uint64_t ino);

// Why the tree rooted at `pid` cannot be dumped with these options because of its network
// namespace, or "" when it can (same netns as crshim, external, --empty-ns net, or one whose links
// can all be dumped).
std::string preflight_problem(pid_t pid, const DumpRequest& req);

// Whether `pid` lives in another network namespace than crshim (CRIU's network-lock and
// network-unlock hooks fire only for such trees).
Result<bool> own_netns(pid_t pid);

// Records the tree's own network namespace: netns-ID.img with the key when external, nothing when
// empty, all network images otherwise. Every task must share the root's (`ids`: root first). A no-op
// when the tree uses ours.
Status dump_netns(const DumpRequest& req, const std::vector<std::pair<pid_t, task_kobj_ids_entry>>& ids,
                  const task_kobj_ids_entry& dumper, int images_dir, Logger& log);

// What restore does about the network namespace.
struct RestorePlan {
  int clone_flags = 0;      // CLONE_NEWNET: the root task gets a fresh one (restore_netns fills it)
  bool full = false;        // the images hold the namespace (netns_full.h)
  uint32_t ns_id = 0;       // its id in the images
  int join_fd = -1;         // an inherited nsfs fd (in crshim's table) the root task setns()es into
  std::string what;         // for messages: "network namespace extRootNetNS (fd 4)"
};
Result<RestorePlan> plan_restore(const restorer::ImageSet& set, const RestoreRequest& req, int images_dir, Logger& log);

// Sets IFF_UP on `lo` inside the network namespace of `pid` (from a helper that joins it).
Status bring_up_loopback(pid_t pid);

// Fills the fresh network namespace of the restored root `pid` as `plan` says: lo up (empty) or the
// dumped one (full). The guard removes created veths again unless committed after resume.
Result<NetGuard> restore_netns(const RestorePlan& plan, pid_t pid, const RestoreRequest& req, int images_dir,
                               Logger& log);

}  // namespace crshim::net

// Mount namespaces of a dumped tree: its mount table and tmpfs contents into images, and the same
// tree rebuilt at restore under --root inside the root task's new mount namespace, then pivot_root()ed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/engine.h"
#include "checkpoint/mnt/mounts.h"

namespace crshim::mnt {

// Whether `pid` lives in another mount namespace than crshim.
Result<bool> own_mount_namespace(pid_t pid);

// What keeps the mount namespace of `pid` from being dumped, one line per mount (empty: nothing, or
// the task shares crshim's mount namespace). Called before freezing.
Result<std::vector<std::string>> check_dumpable(pid_t pid, const DumpRequest& req);

// Writes mountpoints-<ns_id>.img and one tmpfs-dev-<s_dev>.tar.gz.img per tmpfs of `pid`'s mount
// namespace (tar run from outside through /proc/PID/root while the tree is frozen).
Status dump_mounts(pid_t pid, uint32_t ns_id, const DumpRequest& req, int images_dir, Logger& log);

// Rebuilds a dumped mount tree. prepare() checks everything it can before any task exists; build()
// then does the mounts from a helper that joins the root task's namespaces. Mounts live only in that
// new namespace, so killing the root task removes them all; the yard directory is removed here.
class TreeBuilder {
 public:
  static Result<TreeBuilder> prepare(int images_dir, uint32_t ns_id, const RestoreRequest& req);
  TreeBuilder(TreeBuilder&& o) noexcept;
  TreeBuilder& operator=(TreeBuilder&&) = delete;
  ~TreeBuilder();

  // In the mount namespace of `root_task` (created with CLONE_NEWNS, still stopped): every mount of
  // the image under the new root, then pivot_root() so the task's / is that root. `pty_slaves` (dumped
  // pty index -> restored slave file) stand in for binds of a devpts pty file such as /dev/console.
  Status build(pid_t root_task, Logger& log, const std::map<uint32_t, int>& pty_slaves = {});
  const std::string& root() const { return root_; }

 private:
  TreeBuilder() = default;
  std::string root_;
  std::string yard_;
  Plan plan_;
  std::map<std::string, UniqueFd> tars_;  // tmpfs image name -> open image
  std::string tar_path_;
};

}  // namespace crshim::mnt

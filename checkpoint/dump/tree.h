// The process tree being dumped: every descendant of the root, frozen top-down (a frozen parent
// cannot fork, so the set converges), zombies recorded as they are.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/kernel/tracee.h"

namespace crshim::dumper {

struct TreeTask {
  pid_t pid = 0;
  pid_t ppid = 0;  // real parent
  bool zombie = false;
  int exit_code = 0;  // wait status of a zombie
  std::unique_ptr<kernel::FrozenProcess> frozen;  // null for zombies
  std::vector<size_t> children;                   // indexes into FrozenTree::tasks
};

class FrozenTree {
 public:
  // Freezes `root` and every descendant. On failure everything frozen so far is thawed.
  static Result<FrozenTree> freeze(pid_t root, const kernel::FreezeOptions& opts, Logger& log);

  // Root first, then each task before its children (pstree.img order).
  std::vector<size_t> preorder() const;
  std::vector<TreeTask>& tasks() { return tasks_; }
  // Puts every task back as it was and resumes it.
  Status thaw();
  // Kills every task (after a successful dump without --leave-running).
  Status kill();
  uint64_t freeze_us() const { return freeze_us_; }

 private:
  std::vector<TreeTask> tasks_;
  uint64_t freeze_us_ = 0;
};

// Every descendant of `root` (not frozen: for pre-flight checks), root first.
Result<std::vector<pid_t>> list_tree(pid_t root);

}  // namespace crshim::dumper

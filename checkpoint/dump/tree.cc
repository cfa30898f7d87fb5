#include "checkpoint/dump/tree.h"

#include <signal.h>

#include <chrono>
#include <deque>
#include <map>
#include <set>

#include "checkpoint/kernel/proc.h"

namespace crshim::dumper {

Result<std::vector<pid_t>> list_tree(pid_t root) {
  std::vector<pid_t> out{root};
  for (size_t i = 0; i < out.size(); i++) {
    auto kids = proc::children(out[i]);
    if (!kids) {
      if (kids.error().err == ENOENT && i > 0) continue;  // exited meanwhile
      return fail(kids.error());
    }
    out.insert(out.end(), kids->begin(), kids->end());
    if (out.size() > 65536) return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(root), "more than 65536 tasks"));
  }
  return out;
}

Result<FrozenTree> FrozenTree::freeze(pid_t root, const kernel::FreezeOptions& opts, Logger& log) {
  auto t0 = std::chrono::steady_clock::now();
  FrozenTree tree;
  std::deque<std::pair<pid_t, size_t>> queue{{root, SIZE_MAX}};  // (pid, parent index)
  std::set<pid_t> seen;
  while (!queue.empty()) {
    auto [pid, parent] = queue.front();
    queue.pop_front();
    if (!seen.insert(pid).second) continue;
    auto stat = proc::read_stat(pid);
    if (!stat) {
      if (stat.error().err == ENOENT && parent != SIZE_MAX) continue;  // exited and reaped meanwhile
      Status thawed = tree.thaw();
      (void)thawed;
      return fail(stat.error());
    }
    TreeTask task;
    task.pid = pid;
    task.ppid = stat->ppid;
    if (stat->state == 'Z') {
      task.zombie = true;
      task.exit_code = stat->exit_code;
    } else {
      auto frozen = kernel::FrozenProcess::freeze(pid, opts);
      if (!frozen) {
        if (frozen.error().code == Errc::not_found && parent != SIZE_MAX) continue;  // it just exited
        (void)tree.thaw();
        return fail(frozen.error());
      }
      task.frozen = std::make_unique<kernel::FrozenProcess>(std::move(*frozen));
      // Frozen: its set of children can no longer change (zombies aside).
      auto kids = proc::children(pid);
      if (!kids) {
        (void)tree.thaw();
        return fail(kids.error());
      }
      for (pid_t k : *kids) queue.push_back({k, tree.tasks_.size()});
    }
    if (parent != SIZE_MAX) tree.tasks_[parent].children.push_back(tree.tasks_.size());
    LOG_DEBUG(log, "Frozen %s %d (parent %d)", task.zombie ? "zombie" : "task", pid, task.ppid);
    tree.tasks_.push_back(std::move(task));
  }
  tree.freeze_us_ = uint64_t(std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count());
  return tree;
}

std::vector<size_t> FrozenTree::preorder() const {
  std::vector<size_t> out;
  std::vector<size_t> stack{0};
  while (!stack.empty()) {
    size_t i = stack.back();
    stack.pop_back();
    out.push_back(i);
    const auto& kids = tasks_[i].children;
    for (auto it = kids.rbegin(); it != kids.rend(); ++it) stack.push_back(*it);
  }
  return out;
}

Status FrozenTree::thaw() {
  Status first;
  for (auto& t : tasks_)
    if (t.frozen) {
      Status st = t.frozen->thaw();
      if (!st && first) first = st;
    }
  return first;
}

Status FrozenTree::kill() {
  // Everyone gets SIGKILL first; then children are reaped before parents: an exiting pid-namespace
  // init waits for the rest of its namespace, which we, as their tracer, must reap first.
  for (auto& t : tasks_)
    if (t.frozen) ::kill(t.pid, SIGKILL);
  Status first;
  auto order = preorder();
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    auto& t = tasks_[*it];
    if (!t.frozen) continue;
    Status st = t.frozen->kill();
    if (!st && first) first = st;
  }
  return first;
}

}  // namespace crshim::dumper

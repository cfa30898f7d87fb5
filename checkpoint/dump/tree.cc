#include "checkpoint/dump/tree.h"

#include <signal.h>

#include <chrono>
#include <deque>
#include <map>
#include <optional>
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
  // Level by level: every process of a level is interrupted before the first stop is waited for, so
  // the stops happen in parallel. A process's children are listed once it is frozen (then they can
  // no longer change, zombies aside), so the tasks come out in breadth-first order.
  struct Pending {
    pid_t pid;
    size_t parent;  // index in tasks_, SIZE_MAX for the root
    proc::Stat stat;
    std::optional<kernel::FrozenProcess> frozen;
  };
  std::vector<std::pair<pid_t, size_t>> level{{root, SIZE_MAX}};
  std::set<pid_t> seen;
  while (!level.empty()) {
    std::vector<Pending> pending;
    for (auto [pid, parent] : level) {
      if (!seen.insert(pid).second) continue;
      auto stat = proc::read_stat(pid);
      if (!stat) {
        if (stat.error().err == ENOENT && parent != SIZE_MAX) continue;  // exited and reaped meanwhile
        (void)tree.thaw();
        return fail(stat.error());
      }
      Pending p{pid, parent, std::move(*stat), std::nullopt};
      if (p.stat.state != 'Z') {
        auto frozen = kernel::FrozenProcess::start_freeze(pid, opts);
        if (!frozen) {
          if (frozen.error().code == Errc::not_found && parent != SIZE_MAX) continue;  // it just exited
          (void)tree.thaw();
          return fail(frozen.error());
        }
        p.frozen.emplace(std::move(*frozen));
      }
      pending.push_back(std::move(p));
    }
    level.clear();
    for (auto& p : pending) {
      TreeTask task;
      task.pid = p.pid;
      task.ppid = p.stat.ppid;
      if (!p.frozen) {
        task.zombie = true;
        task.exit_code = p.stat.exit_code;
      } else {
        if (Status st = p.frozen->finish_freeze(opts); !st) {
          if (st.error().code == Errc::not_found && p.parent != SIZE_MAX) {
            (void)p.frozen->thaw();  // it just exited
            continue;
          }
          (void)tree.thaw();
          return fail(st.error());
        }
        task.frozen = std::make_unique<kernel::FrozenProcess>(std::move(*p.frozen));
        auto kids = proc::children(p.pid);
        if (!kids) {
          (void)tree.thaw();
          return fail(kids.error());
        }
        for (pid_t k : *kids) level.push_back({k, tree.tasks_.size()});
      }
      if (p.parent != SIZE_MAX) tree.tasks_[p.parent].children.push_back(tree.tasks_.size());
      LOG_DEBUG(log, "Frozen %s %d (parent %d)", task.zombie ? "zombie" : "task", p.pid, task.ppid);
      tree.tasks_.push_back(std::move(task));
    }
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

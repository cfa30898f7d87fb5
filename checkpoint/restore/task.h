// Rebuilds one process from its images inside a freshly created task, by remote syscalls only.
#pragma once

#include <sys/types.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/progress.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/kernel/features.h"
#include "checkpoint/kernel/remote.h"
#include "checkpoint/kernel/tracee.h"
#include "checkpoint/mem/lazy.h"
#include "checkpoint/mem/shmem.h"
#include "checkpoint/restore/images.h"

namespace crshim::restorer {

// Options of one restore that change how a task is rebuilt.
struct TaskOptions {
  bool shell_job = false;
  kernel::XsaveLayout xsave;
  // How a task gets crshim's open files: every created task inherits `lender_fd`, crshim's own pidfd
  // (pidfd_getfd), or, where that needs more privilege than the task has (in a user namespace of its
  // own), one end of a socket pair whose other end, `lender_peer`, crshim sends them through.
  int lender_fd = -1;
  int lender_peer = -1;
  // The tree has a user namespace of its own: credentials (the namespace's ids) are always set.
  bool own_userns = false;
  mem::SharedMemory* shmem = nullptr;  // shared anonymous memory objects of the whole tree
  ProgressSink* progress = nullptr;    // told of every batch of pages written back
  mem::LazyClient* lazy = nullptr;     // --lazy-pages: private anonymous pages go to this daemon
};

// Which kernel objects a task shares with tasks restored before it (CLONE_VM/FILES/FS/SIGHAND from its
// parent): only the first task of each object rebuilds it; the others find it in place.
struct TaskSharing {
  bool own_vm = true;       // rebuild the address space (memory, vDSO, mm fields)
  bool own_files = true;    // rebuild the fd table
  bool own_fs = true;       // set cwd, root and umask
  bool own_sighand = true;  // set the signal handlers
  bool keep_holder = false;  // a later task shares the fd table: leave the lender fd in it for that task
};

// The clone flags that make a child of `parent` share what the images say it shares with it.
uint64_t shared_clone_flags(const task_kobj_ids_entry& parent, const task_kobj_ids_entry& child);

// A restored process held stopped under ptrace until resume(); destroying it unresumed kills it.
class RestoredTask {
 public:
  RestoredTask(RestoredTask&&) noexcept;
  RestoredTask& operator=(RestoredTask&&) = delete;
  ~RestoredTask();

  pid_t pid() const { return pid_; }
  // Sets every thread's final registers and signal mask and lets the process run.
  Status resume();
  // SIGKILL and reap (a failed restore leaves nothing behind).
  void kill();

 private:
  friend Result<RestoredTask> create_task(const ProcessImage&, bool, bool, int, Logger&, const std::vector<int>&);
  friend Status setup_namespaces(RestoredTask&, int, const task_kobj_ids_entry&, int, const ns::UserNs*, bool);
  friend Result<RestoredTask> fork_child(RestoredTask&, const ProcessImage&, Logger&);
  friend Status set_session(RestoredTask&);
  friend Status run_early(RestoredTask&, const std::function<Status(kernel::Remote&)>&);
  friend Status set_process_group(RestoredTask&, pid_t);
  friend Status make_zombie(RestoredTask&, int);
  friend Status join_namespaces(RestoredTask&, const std::vector<std::pair<int, std::string>>&);
  friend Status rebuild_task(RestoredTask&, const ImageSet&, const ProcessImage&, int, files::RestoreFiles&,
                             const TaskOptions&, const TaskSharing&, Logger&);
  RestoredTask() = default;

  pid_t pid_ = 0;
  bool resumed_ = false;
  const ProcessImage* image_ = nullptr;
  std::deque<kernel::Tracee> threads_;  // leader first; a deque keeps references valid as threads are added
  kernel::XsaveLayout xsave_;
};

// Creates the root task with the image's pid (clone3 + set_tid; waits while the old pid is still a
// zombie) stopped under ptrace, still running crshim's code; with `sibling` it is our parent's child.
// With `new_pidns` it is pid 1 of a new pid namespace (the image's pids are that namespace's).
// `ns_flags` (CLONE_NEWUTS|CLONE_NEWIPC) gives it new namespaces of those kinds. A helper setns()es
// into `join_first` (namespace fds, a user namespace last) and clones it there, so that the namespaces
// it gets are owned by that user namespace.
Result<RestoredTask> create_task(const ProcessImage& img, bool sibling, bool new_pidns, int ns_flags, Logger& log,
                                 const std::vector<int>& join_first = {});
// Sets up the namespaces create_task() made (hostname, IPC limits and objects) from their images;
// `userns`: the user namespace restored into (null: crshim's), whose ids the images' owners are.
// `unshare_first`: the task makes them itself first (UTS/IPC namespaces of a task below the root).
Status setup_namespaces(RestoredTask& task, int ns_flags, const task_kobj_ids_entry& ids, int images_dir,
                        const ns::UserNs* userns, bool unshare_first = false);

// Creates a child of `parent` (a task still running crshim's code) with the image's pid, by making
// the parent run clone3 itself, so the child has the right parent. The child shares the parent's
// mm, fd table, fs state and signal handlers where the images say so (shared_clone_flags).
Result<RestoredTask> fork_child(RestoredTask& parent, const ProcessImage& img, Logger& log);
// setsid() in the task (before it creates the members of its session).
Status set_session(RestoredTask& task);
// Runs `fn` in the task while it still runs crshim's code (it holds the fds crshim had when the
// root task was created): for work between creation and rebuild, such as taking a controlling tty.
Status run_early(RestoredTask& task, const std::function<Status(kernel::Remote&)>& fn);
// setpgid(0, pgid) in the task.
Status set_process_group(RestoredTask& task, pid_t pgid);
// setns(fd, 0) in the task for each fd (fds the task inherited from crshim at creation).
Status join_namespaces(RestoredTask& task, const std::vector<std::pair<int, std::string>>& ns_fds);
// Ends the task with the wait status `status`, leaving a zombie for its parent.
Status make_zombie(RestoredTask& task, int status);

// Replaces the task's whole state with the image's: memory, files, signals, threads, credentials.
// Objects the task shares with an earlier task (`share`) are left as that task rebuilt them.
Status rebuild_task(RestoredTask& task, const ImageSet& set, const ProcessImage& img, int images_dir,
                    files::RestoreFiles& files, const TaskOptions& opts, const TaskSharing& share, Logger& log);

}  // namespace crshim::restorer

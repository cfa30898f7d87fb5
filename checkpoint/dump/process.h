// Dumps one frozen process (all its threads) into its per-task images.
#pragma once

#include "checkpoint/dump/context.h"
#include "checkpoint/kernel/tracee.h"
#include "inventory.pb.h"

namespace crshim::dumper {

// Reads everything about `frozen` and writes core-*, ids-, mm-, pagemap-/pages-, fs-, fdinfo- images;
// file objects go to ctx.files. Fills `pstree` (pid, threads; ppid/pgid/sid as the kernel reports).
Status dump_process(kernel::FrozenProcess& frozen, DumpContext& ctx, pstree_entry& pstree);

// Closes the write-tracking userfaultfd this dump armed in `frozen` (fd `target_fd` there): a failed
// dump leaves the task's fd table as it found it.
Status disarm_write_tracking(kernel::FrozenProcess& frozen, int target_fd);

// The kernel-object ids of a process: namespaces by inode, mm/files/fs/sighand by kcmp.
Result<task_kobj_ids_entry> task_ids(pid_t pid, IdMap& ids);
// The images of a zombie: its pstree entry's core with the exit status.
Status dump_zombie(pid_t pid, int exit_code, DumpContext& ctx, pstree_entry& pstree);

}  // namespace crshim::dumper

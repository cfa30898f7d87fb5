// Namespaces a dumped tree owns (UTS, IPC): their state into utsns-/ipcns-var- images, and the
// same namespaces made again at restore (the root task is created in new ones and sets them up).
#pragma once

#include <sys/types.h>

#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/remote.h"
#include "checkpoint/ns/userns.h"
#include "inventory.pb.h"

namespace crshim::ns {

// The CLONE_NEW* flags of the namespaces `task` owns apart from `dumper` (the ids in root_ids).
int owned_namespaces(const task_kobj_ids_entry& task, const task_kobj_ids_entry& dumper);

// Writes the images of every namespace of `pid` that differs from the dumper's (UTS, IPC, time; a
// cgroup namespace lives in cgroup.img). The user namespace is an error; SysV objects go to
// ipc_objects.h (owners as `userns`, the tree's own user namespace or null, sees them); mount and
// network namespaces are mnt::'s and net::'s.
Status dump_namespaces(pid_t pid, const task_kobj_ids_entry& task, const task_kobj_ids_entry& dumper, int images_dir,
                       const UserNs* userns);

// In the root task, just created with `flags` (CLONE_NEWUTS/CLONE_NEWIPC): hostname, domain name and
// IPC limits and objects as the images have them (object owners mapped through `userns`, the user
// namespace restored into, or null for crshim's).
Status restore_namespaces(kernel::Remote& r, int flags, const task_kobj_ids_entry& task, int images_dir,
                          const UserNs* userns);

}  // namespace crshim::ns

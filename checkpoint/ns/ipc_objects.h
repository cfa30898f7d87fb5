// SysV IPC objects of an IPC namespace (shm segments, semaphore sets, message queues): dumped into
// ipcns-{shm,sem,msg}-<ns>.img and made again, with the same ids, keys and contents, in a new namespace.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "checkpoint/base/result.h"
#include "checkpoint/ns/userns.h"

namespace crshim::ns {

// Writes every SysV object of the IPC namespace of `pid` (image id `ns_id`). Shm contents go to
// pagemap-shmem-<shm id>.img + pages, as CRIU 4.2 writes them (ipc_shm_entry.in_pagemaps). Owners
// are kept as `userns` (the tree's own user namespace, or null) sees them.
Status dump_ipc_objects(pid_t pid, uint32_t ns_id, int images_dir, const UserNs* userns);

// Recreates the objects of image namespace `ns_id` in the (new, empty) IPC namespace of `pid`, the
// owners mapped through `userns` (the user namespace restored into, or null).
Status restore_ipc_objects(pid_t pid, uint32_t ns_id, int images_dir, const UserNs* userns);

// Before any task exists: every owner of the objects of image namespace `ns_id` has an id in `userns`.
Status check_ipc_owners(uint32_t ns_id, int images_dir, const UserNs* userns);

}  // namespace crshim::ns

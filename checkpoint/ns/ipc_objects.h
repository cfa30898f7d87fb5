// SysV IPC objects of an IPC namespace (shm segments, semaphore sets, message queues): dumped into
// ipcns-{shm,sem,msg}-<ns>.img and made again, with the same ids, keys and contents, in a new namespace.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "checkpoint/base/result.h"

namespace crshim::ns {

// Writes every SysV object of the IPC namespace of `pid` (image id `ns_id`). Shm contents go to
// pagemap-shmem-<shm id>.img + pages, as CRIU 4.2 writes them (ipc_shm_entry.in_pagemaps).
Status dump_ipc_objects(pid_t pid, uint32_t ns_id, int images_dir);

// Recreates the objects of image namespace `ns_id` in the (new, empty) IPC namespace of `pid`.
Status restore_ipc_objects(pid_t pid, uint32_t ns_id, int images_dir);

}  // namespace crshim::ns

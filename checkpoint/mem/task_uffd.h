// A userfaultfd for a stopped task's memory: made in the task by remote syscall (a userfaultfd works
// on the address space of whoever created it), copied into crshim, and set up there.
#pragma once

#include <cstdint>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/kernel/remote.h"

namespace crshim::mem {

struct TaskUffd {
  UniqueFd fd;         // crshim's copy: the ioctls work from here
  int target_fd = -1;  // its number in the task, still open there
};

// userfaultfd(O_CLOEXEC | O_NONBLOCK | `flags`) in the task, then UFFDIO_API with `features` (named
// in errors as `feature_names`, with `hint` should the kernel refuse them). On failure the task's fd
// is closed again.
Result<TaskUffd> open_task_uffd(kernel::Remote& r, int flags, uint64_t features, const char* feature_names,
                                const char* hint);

}  // namespace crshim::mem

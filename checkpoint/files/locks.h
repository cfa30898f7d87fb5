// File locks (flock, POSIX, OFD) held through a task's fds: found in fdinfo "lock:" lines at dump
// (filelocks.img, only with --file-locks, as CRIU), taken again by the task itself at restore.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/kernel/remote.h"
#include "file-lock.pb.h"

namespace crshim::files {

// The locks fdinfo lists for fd `fd` of a task whose pid in the image is `vpid`.
Result<std::vector<file_lock_entry>> fd_locks(const proc::FdInfo& info, int fd, uint32_t vpid, const std::string& what);

// Takes `locks` (those of one task) again, in the task, through its restored fds.
Status restore_locks(kernel::Remote& r, const std::vector<file_lock_entry>& locks);

}  // namespace crshim::files

// Which pages a process wrote since a point in time, without soft-dirty bits: an asynchronous
// write-protect userfaultfd armed over its private memory, read (and re-armed) with PAGEMAP_SCAN.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/kernel/remote.h"
#include "checkpoint/mem/pages.h"

namespace crshim::mem {

// The userfaultfd that keeps the tracking alive between two dumps. It lives in the target's own fd
// table: the registrations end when its last holder closes it, and the dumper exits in between.
struct WriteTracking {
  int target_fd = -1;  // its number in the target
  uint64_t inode = 0;  // anon inode number, to recognise it again (/proc/PID/fd/N)
};

// Creates the userfaultfd in the stopped target (remote syscall), registers every private mapping
// for asynchronous write-protection and write-protects all their pages: from here on the kernel
// records each page the target writes. Mappings the kernel refuses stay untracked (see written()).
Result<WriteTracking> arm_write_tracking(kernel::Remote& r, const std::vector<proc::Vma>& vmas);

// The pages of [vma.start, vma.end) written since the tracking was armed or last read, and
// write-protects them again. nullopt: the mapping is not tracked (new since, or refused), so any of
// its pages may have changed.
Result<std::optional<std::vector<Range>>> written_pages(int pagemap_fd, const proc::Vma& vma);

// Is fd `fd` of `pid` the tracking userfaultfd `t`?
bool is_tracking_fd(pid_t pid, int fd, const WriteTracking& t);

}  // namespace crshim::mem

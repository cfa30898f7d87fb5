// Which pages a process wrote since a point in time, without soft-dirty bits: an asynchronous
// write-protect userfaultfd armed over its private memory, read (and re-armed) with PAGEMAP_SCAN.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/kernel/remote.h"
#include "checkpoint/mem/pages.h"

namespace crshim::mem {

// The userfaultfd that keeps the tracking alive between two dumps. It lives in the target's own fd
// table (dumps skip it): the registrations end when its last holder closes it, and the dumper exits
// in between.
struct WriteTracking {
  int target_fd = -1;  // its number in the target
  uint64_t inode = 0;  // anon inode number: tells one arming from another
};

// Creates the userfaultfd in the stopped target (remote syscall), registers `ranges` (private
// memory) for asynchronous write-protection and write-protects all their pages: from here on the
// kernel records each page the target writes there. Ranges the kernel refuses stay untracked.
Result<WriteTracking> arm_write_tracking(kernel::Remote& r, const std::vector<Range>& ranges);

// The tracking userfaultfd found among `pid`'s fds, if an earlier dump left one.
std::optional<WriteTracking> find_write_tracking(pid_t pid);

// The pages of [start, end) written since the tracking was armed or last read, write-protecting them
// again. nullopt: the range is not (wholly) tracked (mapped since, or refused), so any page may have
// changed.
Result<std::optional<std::vector<Range>>> written_pages(int pagemap_fd, uint64_t start, uint64_t end);

}  // namespace crshim::mem

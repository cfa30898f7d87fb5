// The PAGEMAP_SCAN ioctl on /proc/PID/pagemap (Linux 6.7); Debian 12's headers predate it.
#pragma once

#include <sys/ioctl.h>

#include <cstdint>

namespace crshim::kernel::pagemap_scan {

struct PageRegion {
  uint64_t start, end, categories;
};
struct Arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
static_assert(sizeof(Arg) == 96);
constexpr unsigned long kIoctl = _IOWR('f', 16, Arg);

// Arg.flags
constexpr uint64_t kWpMatching = 1 << 0;     // write-protect the pages that match
constexpr uint64_t kCheckWpAsync = 1 << 1;   // fail with EPERM on a range without async write-protection
// Page categories
constexpr uint64_t kWritten = 1 << 1, kFile = 1 << 2, kPresent = 1 << 3, kSwapped = 1 << 4, kPfnZero = 1 << 5;

}  // namespace crshim::kernel::pagemap_scan

// The address space of a process as vma_entry records (mm-<pid>.img), from /proc/PID/smaps.
#pragma once

#include <sys/types.h>

#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/mem/pages.h"
#include "vma.pb.h"

namespace crshim::mem {

// vma_entry.status bits (CRIU's VMA_AREA_* / VMA_* values).
enum VmaStatus : uint32_t {
  kVmaRegular = 1u << 0,
  kVmaVsyscall = 1u << 2,
  kVmaVdso = 1u << 3,
  kVmaHeap = 1u << 5,
  kVmaFilePrivate = 1u << 6,
  kVmaFileShared = 1u << 7,
  kVmaAnonShared = 1u << 8,
  kVmaAnonPrivate = 1u << 9,
  kVmaSysvipc = 1u << 10,
  kVmaVvar = 1u << 12,
  kVmaMemfd = 1u << 14,  // with FILE_SHARED/FILE_PRIVATE: shmid is a MEMFD file entry
};

struct AddressSpace {
  std::vector<vma_entry> vmas;
  std::vector<Range> private_ranges;  // areas whose private pages belong in the image
  std::vector<proc::Vma> shared_anon;  // MAP_SHARED|MAP_ANONYMOUS areas (contents dumped per object)
};

// Builds the VMA list; file-backed areas get REG entries in `files` (deleted files a ghost image).
// Areas we cannot restore yet (device mappings, partial SysV attachments) are errors naming the area.
Result<AddressSpace> collect_address_space(pid_t pid, const std::vector<proc::SmapsEntry>& smaps,
                                           files::DumpFiles& files);

// madvise() advices encoded in vma_entry.madv (bit N = advice N).
std::vector<int> madvices(const vma_entry& vma);

}  // namespace crshim::mem

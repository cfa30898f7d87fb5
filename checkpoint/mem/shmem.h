// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS): one shmem object per inode, its contents in
// pagemap-shmem-<ino>.img, mapped again by every task that shared it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/kernel/proc.h"

namespace crshim::mem {

// True for a VMA /proc shows as shared anonymous memory ("/dev/zero (deleted)" on the shmem mount).
bool is_shared_anon(const proc::Vma& v);

// Writes the contents of the shmem object behind `vma` of `pid` (data pages only, found with
// SEEK_DATA/SEEK_HOLE) as pagemap-shmem-<ino>.img plus pages-<pages_id>.img.
Status dump_shmem(pid_t pid, const proc::Vma& vma, int images_dir, uint32_t pages_id, uint64_t& pages_written);

// Writes the data pages of the shmem/memfd object open as `fd` (`size` bytes; holes left out) as
// pagemap-shmem-<shmid>.img plus pages-<pages_id>.img. `what` names the object in errors.
Status dump_shmem_contents(int fd, uint64_t size, uint64_t shmid, int dir, uint32_t pages_id, const std::string& what,
                           uint64_t* pages_written = nullptr);

// At restore: the shmem objects, created once in crshim and handed to every task that maps them.
class SharedMemory {
 public:
  explicit SharedMemory(int images_dir) : images_dir_(images_dir) {}
  // crshim's fd for object `shmid`, at least `size` bytes, filled from its image on first use.
  Result<int> object_fd(uint64_t shmid, uint64_t size);

 private:
  int images_dir_;
  std::map<uint64_t, UniqueFd> objects_;
  std::map<uint64_t, uint64_t> sizes_;
};

}  // namespace crshim::mem

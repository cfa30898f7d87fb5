// Lazy (post-copy) restore: which pages are left to the lazy-pages daemon, the restore side that hands
// each task's userfaultfd to it, and the messages both ends exchange over lazy-pages.socket.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "checkpoint/base/progress.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/kernel/remote.h"
#include "checkpoint/mem/pages.h"
#include "mm.pb.h"
#include "pagemap.pb.h"

namespace crshim::mem {

// The daemon's socket, in the work dir of both the daemon and the restore (CRIU's name).
inline constexpr const char* kLazySocketName = "lazy-pages.socket";

// Contiguous pages of one pagemap entry (or a piece of one): where the images keep their data.
struct PageRun {
  uint64_t vaddr = 0;
  uint64_t nr_pages = 0;
  uint32_t flags = 0;        // PE_* bits of the entry
  uint64_t page_offset = 0;  // in the pages image, in pages (PRESENT runs only)
  uint64_t end() const { return vaddr + nr_pages * kPageSize; }
};

// The entries of a pagemap in order, each with the offset its pages have in the pages image (the sum
// of the PRESENT entries before it). Old images without flags count as PRESENT (PARENT if in_parent).
std::vector<PageRun> index_pagemap(const std::vector<pagemap_entry>& entries);

// Private anonymous areas whose pages may arrive after the task runs: not locked, not PROT_NONE,
// not the vDSO. Sorted, adjacent areas merged.
bool vma_can_be_lazy(const vma_entry& v);
std::vector<Range> lazy_areas(const mm_entry& mm);

// Pages the kernel reads for other processes without waiting on a userfaultfd (argv and environ, for
// ps, pgrep and /proc/PID/cmdline: a missing one reads as empty). Restored before any area is
// registered, never left to the daemon. Sorted, merged.
std::vector<Range> remote_read_pages(const mm_entry& mm);

// Runs cut at the edges of `areas` (sorted): the pieces inside go to the daemon, the rest is written
// during the restore. Offsets of PRESENT pieces move with their start.
struct SplitRuns {
  std::vector<PageRun> eager;
  std::vector<PageRun> lazy;
};
SplitRuns split_runs(const std::vector<PageRun>& runs, const std::vector<Range>& areas);

// Wire format (both ends are crshim). The restore sends one TaskHeader per address space, followed by
// nr_ranges {start, end} pairs of u64 (the ranges it serves) and carrying the userfaultfd as SCM_RIGHTS;
// the daemon answers each with a Reply (+ `len` bytes of error text). `done` (no fd, no ranges) says the
// tree was resumed: nothing more will come.
inline constexpr uint32_t kLazyMagic = 0x4c5a5047;  // "GPZL"
enum class LazyMsg : uint32_t { task = 1, done = 2 };
struct LazyTaskHeader {
  uint32_t magic = kLazyMagic;
  uint32_t type = 0;  // LazyMsg
  int32_t pid = 0;    // real pid, for messages
  uint32_t vpid = 0;  // the image's pid: names its pagemap
  uint64_t nr_ranges = 0;
};
struct LazyReply {
  uint32_t magic = kLazyMagic;
  int32_t err = 0;  // 0: serving; else an errno value, with text
  uint32_t len = 0;
  uint32_t pad = 0;
};
inline constexpr uint64_t kLazyMaxRanges = 1u << 20;

// The restore's connection to the daemon.
class LazyClient {
 public:
  // Connects to the socket in `work_dir`, waiting up to `wait` for the daemon to create it.
  static Result<LazyClient> connect(int work_dir, std::chrono::milliseconds wait);

  // Creates a userfaultfd in the stopped task `r` (remote syscall), registers `areas` for missing
  // pages and hands it to the daemon with the task's ids and the ranges it serves: the registered
  // areas without `in_place` (pages written already). Waits for the daemon to accept it; returns the
  // served ranges (the kernel may refuse some areas: their pages are written eagerly).
  Result<std::vector<Range>> hand_over(kernel::Remote& r, uint32_t vpid, const std::vector<Range>& areas,
                                       const std::vector<Range>& in_place);
  // Every task is resumed: the daemon exits once it delivered everything.
  Status finish();

 private:
  explicit LazyClient(UniqueFd sock) : sock_(std::move(sock)) {}
  UniqueFd sock_;
};

// The memory step of a lazy restore for one address space (the areas are mapped already): pages of
// lazy areas go to the daemon through `client`, every other page is written now as in an eager
// restore (from the pages image, PARENT pages from the parent chain). Counts pages written / left.
struct LazyRestoreCounts {
  uint64_t written = 0;
  uint64_t lazy = 0;
};
Result<LazyRestoreCounts> restore_pages_lazily(kernel::Remote& r, LazyClient& client, const mm_entry& mm,
                                               const std::vector<pagemap_entry>& pagemap, uint32_t pages_id,
                                               uint32_t vpid, int images_dir, int mem_fd, ProgressSink* progress);

// Pages still to deliver into one address space: their current address -> the position of their data
// (a byte address in the daemon's mappings of the images). Follows mremap/munmap/madvise events.
class PendingPages {
 public:
  struct Chunk {
    uint64_t start = 0;
    uint64_t len = 0;  // bytes
    uint64_t src = 0;
  };
  void add(uint64_t start, uint64_t end, uint64_t src);
  // The pending pages from `addr` on, within its run, at most `max_pages`; nullopt: `addr` is not pending.
  std::optional<Chunk> at(uint64_t addr, uint64_t max_pages) const;
  // The lowest pending pages, at most `max_pages` of one run.
  std::optional<Chunk> first(uint64_t max_pages) const;
  void remove(uint64_t start, uint64_t end);
  // [from, from+len) now lives at `to` (mremap).
  void move(uint64_t from, uint64_t to, uint64_t len);
  uint64_t pages() const { return bytes_ / kPageSize; }
  bool empty() const { return segs_.empty(); }

 private:
  struct Seg {
    uint64_t end;
    uint64_t src;
  };
  std::map<uint64_t, Seg> segs_;  // start -> segment; never overlapping
  uint64_t bytes_ = 0;
};

}  // namespace crshim::mem

// Page contents: find the pages worth saving, copy them out of a frozen task into pages-N.img with
// its pagemap, and write them back into a task being restored.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/base/progress.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"
#include "checkpoint/image/image.h"
#include "checkpoint/mem/compress.h"

class pagemap_entry;

namespace crshim::mem {

inline constexpr uint64_t kPageSize = 4096;

// pagemap_entry.flags, CRIU's PE_*: the pages are left to the parent images, served later by the
// lazy dump, in the pages image.
inline constexpr uint32_t kPeParent = 1, kPeLazy = 2, kPePresent = 4;

struct Range {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t pages() const { return (end - start) / kPageSize; }
};

// Pages of [start, end) that hold data only the task has: present or swapped anonymous pages,
// excluding the shared zero page and unmodified page-cache pages of private file mappings.
// Uses PAGEMAP_SCAN; falls back to reading /proc/PID/pagemap on kernels without it.
Result<std::vector<Range>> private_pages(int pagemap_fd, uint64_t start, uint64_t end);

// Sorted, non-overlapping range lists: the pages in both, and the pages of `a` not in `b`.
std::vector<Range> intersect(const std::vector<Range>& a, const std::vector<Range>& b);
std::vector<Range> subtract(const std::vector<Range>& a, const std::vector<Range>& b);

struct PageDumpStats {
  uint64_t pages_scanned = 0;
  uint64_t pages_written = 0;
};

// One pagemap entry: `flags` are PE_PRESENT (the pages follow), PE_PARENT (left to the parent images)
// or PE_LAZY (left in the dumped task, for a lazy restore to fetch).
struct PageEntry {
  uint64_t vaddr = 0;
  uint64_t nr_pages = 0;
  uint32_t flags = 0;
};

// Where a dump's pages go: pagemap/pages images in a directory, or a page server on another host.
class PageSink {
 public:
  enum class Owner { process, shmem };
  virtual ~PageSink() = default;
  // Begins the pagemap of process `id` (its pid in the dump) or of shmem object `id`. True when the
  // parent images hold a pagemap for it too, so PARENT entries may refer to them.
  virtual Result<bool> open(Owner owner, uint64_t id) = 0;
  // Entries in address order; `data` holds the pages of the PRESENT ones, one after the other.
  virtual Status write(const std::vector<PageEntry>& entries, const char* data) = 0;
  // Ends the pagemap begun by open().
  virtual Status close() = 0;
};

// The local sink: pagemap-<id>.img (pagemap-shmem-<id>.img) and pages-<n>.img in `dir`, n taken
// from `next_pages_id`. Adjacent entries with equal flags are merged.
class ImagePageSink : public PageSink {
 public:
  // `compress`: pages images are zstd streams (dump --compress).
  ImagePageSink(int dir, uint32_t& next_pages_id, bool compress = false)
      : dir_(dir), next_pages_id_(next_pages_id), compress_(compress) {}
  Result<bool> open(Owner owner, uint64_t id) override;
  Status write(const std::vector<PageEntry>& entries, const char* data) override;
  Status close() override;
  // The same, a piece at a time: an entry, then (for PRESENT ones) its pages in any number of pieces.
  Status entry(const PageEntry& e);
  Status data(const void* bytes, size_t size);
  // Images this sink created, for a caller that must remove them after a failure.
  const std::vector<std::string>& created() const { return created_; }
  // The pagemap image open now ("" between open() and close()).
  std::string current() const { return pagemap_ ? pagemap_->name() : std::string(); }

 private:
  Status write_pending();
  int dir_;
  uint32_t& next_pages_id_;
  bool compress_;
  std::optional<image::Writer> pagemap_, pages_;
  std::optional<PagesCompressor> compressor_;
  std::optional<PageEntry> pending_;
  std::vector<std::string> created_;
};

// Reads [addr, addr+len) of the stopped task `pid` into `buf`: process_vm_readv, and /proc/PID/mem
// (opened into `mem_fd` when first needed) where it cannot reach (PROT_NONE or write-only areas).
Status read_task_memory(pid_t pid, int& mem_fd, uint64_t addr, size_t len, char* buf);

// Copies the given ranges (sorted, non-overlapping) of `pid` into the pagemap `sink` has open as
// PRESENT entries with their pages, together with the entries of `elsewhere` (sorted, disjoint from
// `ranges`), whose pages are not written: PARENT (unchanged since the previous dump, whose images
// hold them) or LAZY (served later from the task itself). Each batch written is reported to `progress`.
Status dump_pages(pid_t pid, const std::vector<Range>& ranges, PageSink& sink, PageDumpStats& stats,
                  const std::vector<PageEntry>& elsewhere = {}, ProgressSink* progress = nullptr);

// Writes the pages of one pagemap image back into `pid`: process_vm_writev from the mmap'd pages
// image, /proc/PID/mem where the mapping refuses (read-only COW pages).
class PageSource {
 public:
  static Result<PageSource> open(int dirfd, const std::string& pages_name);
  // A source with no pages (a task whose pagemap has no present entries).
  static PageSource empty() { return PageSource("no pages", PagesImage()); }
  PageSource(PageSource&&) noexcept = default;
  PageSource& operator=(PageSource&&) = delete;

  // Writes `nr_pages` pages at `vaddr` in pid from the next unread offset of the image.
  Status restore(pid_t pid, int proc_mem_fd, uint64_t vaddr, uint64_t nr_pages);
  // The same for consecutive runs {vaddr, nr_pages}, gathered into one process_vm_writev.
  Status restore_batch(pid_t pid, int proc_mem_fd, const std::vector<std::pair<uint64_t, uint64_t>>& runs);
  // Writes the next `nr_pages` pages of the image into file `fd` at `offset` (shared memory objects).
  Status copy_to_file(int fd, uint64_t offset, uint64_t nr_pages);
  // Skips pages that belong to entries not restored here.
  Status skip(uint64_t nr_pages);
  uint64_t offset() const { return offset_; }

 private:
  PageSource(std::string name, PagesImage image) : name_(std::move(name)), image_(std::move(image)) {}
  std::string name_;
  PagesImage image_;
  uint64_t offset_ = 0;
};

}  // namespace crshim::mem

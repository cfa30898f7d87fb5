#include "checkpoint/mem/pages.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/base/fault.h"
#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/kernel/pagemap_scan.h"
#include "pagemap.pb.h"

namespace crshim::mem {

namespace {

namespace scan = kernel::pagemap_scan;

void append(std::vector<Range>& out, uint64_t start, uint64_t end) {
  if (!out.empty() && out.back().end == start)
    out.back().end = end;
  else
    out.push_back({start, end});
}

Result<std::vector<Range>> scan_ioctl(int fd, uint64_t start, uint64_t end, bool& unsupported) {
  std::vector<Range> out;
  std::vector<scan::PageRegion> regions(512);
  uint64_t at = start;
  while (at < end) {
    scan::Arg arg{};
    arg.size = sizeof arg;
    arg.start = at;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    // Not a page-cache page and not the zero page, and either present or swapped.
    arg.category_inverted = scan::kFile | scan::kPfnZero;
    arg.category_mask = scan::kFile | scan::kPfnZero;
    arg.category_anyof_mask = scan::kPresent | scan::kSwapped;
    arg.return_mask = scan::kPresent | scan::kSwapped;
    long n = ::ioctl(fd, scan::kIoctl, &arg);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOTTY || errno == EINVAL) {
        unsupported = true;
        return out;
      }
      return fail(sys_error("ioctl(PAGEMAP_SCAN)", "pagemap"));
    }
    for (long i = 0; i < n; i++) append(out, regions[size_t(i)].start, regions[size_t(i)].end);
    if (arg.walk_end <= at) break;
    at = arg.walk_end;
  }
  return out;
}

// /proc/PID/pagemap: one u64 per page; bit 63 present, 62 swapped, 61 file-page or shared-anon.
Result<std::vector<Range>> scan_pagemap(int fd, uint64_t start, uint64_t end) {
  std::vector<Range> out;
  std::vector<uint64_t> words(4096);
  for (uint64_t at = start; at < end;) {
    size_t n = std::min<uint64_t>(words.size(), (end - at) / kPageSize);
    CR_OK(sys::pread_exact(fd, words.data(), n * 8, off_t(at / kPageSize * 8), "pagemap"));
    for (size_t i = 0; i < n; i++, at += kPageSize) {
      uint64_t w = words[i];
      bool present = w >> 63 & 1, swapped = w >> 62 & 1, file = w >> 61 & 1;
      if ((present || swapped) && !file) append(out, at, at + kPageSize);
    }
  }
  return out;
}

}  // namespace

Result<std::vector<Range>> private_pages(int pagemap_fd, uint64_t start, uint64_t end) {
  bool unsupported = false;
  auto ranges = CR_TRY(scan_ioctl(pagemap_fd, start, end, unsupported));
  if (!unsupported) return ranges;
  return scan_pagemap(pagemap_fd, start, end);
}

namespace {

constexpr size_t kChunk = 1u << 20;  // large enough for bandwidth, small enough to stay in the CPU caches
constexpr size_t kMaxIovecs = 1024;  // IOV_MAX

}  // namespace

std::vector<Range> intersect(const std::vector<Range>& a, const std::vector<Range>& b) {
  std::vector<Range> out;
  for (size_t i = 0, j = 0; i < a.size() && j < b.size();) {
    uint64_t lo = std::max(a[i].start, b[j].start), hi = std::min(a[i].end, b[j].end);
    if (lo < hi) append(out, lo, hi);
    if (a[i].end < b[j].end) i++;
    else j++;
  }
  return out;
}

std::vector<Range> subtract(const std::vector<Range>& a, const std::vector<Range>& b) {
  std::vector<Range> out;
  size_t j = 0;
  for (const Range& r : a) {
    uint64_t at = r.start;
    while (j < b.size() && b[j].end <= at) j++;
    for (size_t k = j; k < b.size() && b[k].start < r.end; k++) {
      if (b[k].start > at) append(out, at, b[k].start);
      at = std::max(at, b[k].end);
    }
    if (at < r.end) append(out, at, r.end);
  }
  return out;
}

Result<bool> ImagePageSink::open(Owner owner, uint64_t id) {
  CR_OK(close());
  std::string name = owner == Owner::process ? image::pagemap_file(uint32_t(id)) : image::pagemap_shmem_file(id);
  uint32_t pages_id = next_pages_id_++;
  pagemap_ = CR_TRY(image::Writer::create(dir_, name, image::kind(image::Type::pagemap)));
  created_.push_back(name);
  pagemap_head head;
  head.set_pages_id(pages_id);
  CR_OK(pagemap_->write(head));
  pages_ = CR_TRY(image::Writer::create_raw(dir_, image::pages_file(pages_id)));
  created_.push_back(image::pages_file(pages_id));
  if (compress_) compressor_ = CR_TRY(PagesCompressor::create());
  struct stat st;
  return ::fstatat(dir_, ("parent/" + name).c_str(), &st, 0) == 0;
}

Status ImagePageSink::entry(const PageEntry& e) {
  if (!pagemap_) return fail(make_error(Errc::internal, "write", "pagemap", "no pagemap open"));
  if (pending_ && pending_->flags == e.flags && pending_->vaddr + pending_->nr_pages * kPageSize == e.vaddr) {
    pending_->nr_pages += e.nr_pages;
    return {};
  }
  CR_OK(write_pending());
  pending_ = e;
  return {};
}

Status ImagePageSink::write_pending() {
  if (!pending_) return {};
  pagemap_entry pe;
  pe.set_vaddr(pending_->vaddr);
  pe.set_compat_nr_pages(0);
  pe.set_nr_pages(pending_->nr_pages);
  pe.set_flags(pending_->flags);
  pending_.reset();
  return pagemap_->write(pe);
}

Status ImagePageSink::data(const void* bytes, size_t size) {
  if (!pages_) return fail(make_error(Errc::internal, "write", "pages", "no pagemap open"));
  return compressor_ ? compressor_->write(*pages_, bytes, size) : pages_->write_raw(bytes, size);
}

Status ImagePageSink::write(const std::vector<PageEntry>& entries, const char* data_start) {
  size_t bytes = 0;
  for (const auto& e : entries) {
    CR_OK(entry(e));
    if (e.flags & kPePresent) bytes += e.nr_pages * kPageSize;
  }
  return bytes ? data(data_start, bytes) : Status{};
}

Status ImagePageSink::close() {
  if (!pagemap_) return {};
  Status st = write_pending();
  pending_.reset();
  if (st && compressor_) st = compressor_->finish(*pages_);
  compressor_.reset();
  if (st) st = pages_->close();
  if (st) st = pagemap_->close();
  pagemap_.reset();
  pages_.reset();
  return st;
}

Status read_task_memory(pid_t pid, int& mem_fd, uint64_t addr, size_t len, char* buf) {
  size_t done = 0;
  while (done < len) {
    iovec local{buf + done, len - done};
    iovec remote{reinterpret_cast<void*>(addr + done), len - done};
    ssize_t n = ::process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (n > 0) {
      done += size_t(n);
      continue;
    }
    if (mem_fd < 0) {
      mem_fd = ::open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
      if (mem_fd < 0) return fail(sys_error("open", "/proc/" + std::to_string(pid) + "/mem"));
    }
    char hex[32];
    snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)(addr + done));
    CR_OK(sys::pread_exact(mem_fd, buf + done, kPageSize, off_t(addr + done),
                           "memory of pid " + std::to_string(pid) + " at " + hex));
    done += kPageSize;
  }
  return {};
}

Status dump_pages(pid_t pid, const std::vector<Range>& ranges, PageSink& sink, PageDumpStats& stats,
                  const std::vector<PageEntry>& elsewhere, ProgressSink* progress) {
  constexpr size_t kMaxEntries = 4096;
  constexpr uint64_t kMaxRun = 1ull << 31;  // pages per entry: the page-server protocol carries 32 bits
  // Pages go out in batches: one process_vm_readv gathers many ranges (sparse memory has many small
  // ones) into one buffer, handed to the sink with the batch's entries (the entries without data
  // interleaved in address order) in one call.
  std::unique_ptr<char[]> buf(new char[kChunk]);
  int mem_fd = -1;
  UniqueFd mem_guard;
  std::vector<iovec> remote;
  std::vector<PageEntry> entries;
  size_t filled = 0;
  auto flush = [&]() -> Status {
    if (entries.empty()) return {};
    iovec local{buf.get(), filled};
    if (!remote.empty() && ::process_vm_readv(pid, &local, 1, remote.data(), remote.size(), 0) != ssize_t(filled)) {
      // Some range refused (PROT_NONE, ...): read piece by piece, /proc/PID/mem where needed.
      size_t off = 0;
      for (const auto& iv : remote) {
        Status st = read_task_memory(pid, mem_fd, reinterpret_cast<uint64_t>(iv.iov_base), iv.iov_len, buf.get() + off);
        if (mem_fd >= 0 && !mem_guard.valid()) mem_guard.reset(mem_fd);
        CR_OK(st);
        off += iv.iov_len;
      }
    }
    CR_OK(sink.write(entries, buf.get()));
    if (filled) {
      progress_advance(progress, filled / kPageSize);
      CR_OK(fault_point("dump:pages"));
    }
    remote.clear();
    entries.clear();
    filled = 0;
    return {};
  };
  for (size_t i = 0, j = 0; i < ranges.size() || j < elsewhere.size();) {
    bool present = j == elsewhere.size() || (i < ranges.size() && ranges[i].start < elsewhere[j].vaddr);
    if (!present) {
      const PageEntry& e = elsewhere[j++];
      for (uint64_t at = e.vaddr, left = e.nr_pages; left > 0;) {
        uint64_t n = std::min<uint64_t>(left, kMaxRun);
        entries.push_back({at, n, e.flags});
        at += n * kPageSize;
        left -= n;
        if (entries.size() >= kMaxEntries) CR_OK(flush());
      }
      continue;
    }
    const Range& r = ranges[i++];
    for (uint64_t at = r.start; at < r.end;) {
      size_t len = std::min<uint64_t>(kChunk - filled, r.end - at);
      remote.push_back({reinterpret_cast<void*>(at), len});
      entries.push_back({at, len / kPageSize, kPePresent});
      stats.pages_written += len / kPageSize;
      filled += len;
      at += len;
      if (filled == kChunk || remote.size() == kMaxIovecs || entries.size() >= kMaxEntries) CR_OK(flush());
    }
  }
  return flush();
}

// ---- restore ----

Result<PageSource> PageSource::open(int dirfd, const std::string& pages_name) {
  return PageSource(pages_name, CR_TRY(PagesImage::open(dirfd, pages_name)));
}

Status PageSource::restore_batch(pid_t pid, int proc_mem_fd, const std::vector<std::pair<uint64_t, uint64_t>>& runs) {
  uint64_t total = 0;
  for (const auto& [vaddr, n] : runs) total += n;
  if (total > (image_.size() - offset_) / kPageSize)
    return fail(make_error(Errc::corrupt_image, "read", name_, "pagemap refers past the end of the pages image"));
  std::vector<iovec> remote;
  remote.reserve(runs.size());
  for (const auto& [vaddr, n] : runs) remote.push_back({reinterpret_cast<void*>(vaddr), n * kPageSize});
  iovec local{const_cast<char*>(image_.data()) + offset_, total * kPageSize};
  ssize_t done = ::process_vm_writev(pid, &local, 1, remote.data(), remote.size(), 0);
  if (done == ssize_t(total * kPageSize)) {
    offset_ += total * kPageSize;
    return {};
  }
  // A run refused (read-only COW pages): one run at a time, with the /proc/PID/mem fallback.
  for (const auto& [vaddr, n] : runs) CR_OK(restore(pid, proc_mem_fd, vaddr, n));
  return {};
}

Status PageSource::copy_to_file(int fd, uint64_t offset, uint64_t nr_pages) {
  if (nr_pages > (image_.size() - offset_) / kPageSize)
    return fail(make_error(Errc::corrupt_image, "read", name_, "pagemap refers past the end of the pages image"));
  CR_OK(sys::pwrite_all(fd, image_.data() + offset_, nr_pages * kPageSize, off_t(offset), name_));
  offset_ += nr_pages * kPageSize;
  return {};
}

Status PageSource::skip(uint64_t nr_pages) {
  if (nr_pages > (image_.size() - offset_) / kPageSize)
    return fail(make_error(Errc::corrupt_image, "read", name_, "pagemap refers past the end of the pages image"));
  offset_ += nr_pages * kPageSize;
  return {};
}

Status PageSource::restore(pid_t pid, int proc_mem_fd, uint64_t vaddr, uint64_t nr_pages) {
  if (nr_pages > (image_.size() - offset_) / kPageSize)
    return fail(make_error(Errc::corrupt_image, "read", name_, "pagemap refers past the end of the pages image"));
  const char* src = image_.data() + offset_;
  size_t len = nr_pages * kPageSize, done = 0;
  while (done < len) {
    size_t step = std::min<size_t>(len - done, 64u << 20);
    iovec local{const_cast<char*>(src + done), step};
    iovec remote{reinterpret_cast<void*>(vaddr + done), step};
    ssize_t n = ::process_vm_writev(pid, &local, 1, &remote, 1, 0);
    if (n > 0) {
      done += size_t(n);
      continue;
    }
    // Read-only private pages refuse process_vm_writev; /proc/PID/mem writes them (FOLL_FORCE).
    char hex[32];
    snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)(vaddr + done));
    CR_OK(sys::pwrite_all(proc_mem_fd, src + done, kPageSize, off_t(vaddr + done),
                          "memory of pid " + std::to_string(pid) + " at " + hex));
    done += kPageSize;
  }
  offset_ += len;
  return {};
}

}  // namespace crshim::mem

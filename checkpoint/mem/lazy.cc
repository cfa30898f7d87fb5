#include "checkpoint/mem/lazy.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/kernel/features.h"
#include "checkpoint/mem/parent_pages.h"
#include "checkpoint/mem/vmas.h"
#include "checkpoint/mem/task_uffd.h"

namespace crshim::mem {

// ---- which pages are lazy ----

std::vector<PageRun> index_pagemap(const std::vector<pagemap_entry>& entries) {
  std::vector<PageRun> out;
  uint64_t offset = 0;
  for (const auto& pe : entries) {
    PageRun run;
    run.vaddr = pe.vaddr();
    run.nr_pages = pe.has_nr_pages() ? pe.nr_pages() : pe.compat_nr_pages();
    run.flags = pe.has_flags() ? pe.flags() : (pe.in_parent() ? kPeParent : kPePresent);
    run.page_offset = offset;
    if (run.flags & kPePresent) offset += run.nr_pages;
    out.push_back(run);
  }
  return out;
}

bool vma_can_be_lazy(const vma_entry& v) {
  if (!(v.status() & kVmaRegular) || !(v.status() & kVmaAnonPrivate)) return false;
  if (v.status() & (kVmaVdso | kVmaVvar | kVmaVsyscall | kVmaSysvipc | kVmaAnonShared)) return false;
  // PROT_NONE areas never fault; locked ones must be populated when the task runs.
  if ((v.prot() & (PROT_READ | PROT_WRITE | PROT_EXEC)) == 0) return false;
  if (v.flags() & MAP_LOCKED) return false;
  return v.end() > v.start();
}

std::vector<Range> lazy_areas(const mm_entry& mm) {
  std::vector<Range> out;
  for (const auto& v : mm.vmas()) {
    if (!vma_can_be_lazy(v)) continue;
    if (!out.empty() && out.back().end == v.start())
      out.back().end = v.end();
    else
      out.push_back({v.start(), v.end()});
  }
  std::sort(out.begin(), out.end(), [](const Range& a, const Range& b) { return a.start < b.start; });
  return out;
}

std::vector<Range> remote_read_pages(const mm_entry& mm) {
  auto down = [](uint64_t a) { return a & ~(kPageSize - 1); };
  auto up = [](uint64_t a) { return (a + kPageSize - 1) & ~(kPageSize - 1); };
  std::vector<Range> out;
  for (Range r : {Range{down(mm.mm_arg_start()), up(mm.mm_arg_end())}, Range{down(mm.mm_env_start()), up(mm.mm_env_end())}}) {
    if (r.start >= r.end) continue;
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const Range& a, const Range& b) { return a.start < b.start; });
  if (out.size() == 2 && out[1].start <= out[0].end) {
    out[0].end = std::max(out[0].end, out[1].end);
    out.pop_back();
  }
  return out;
}

SplitRuns split_runs(const std::vector<PageRun>& runs, const std::vector<Range>& areas) {
  SplitRuns out;
  auto piece = [](const PageRun& r, uint64_t from, uint64_t to) {
    PageRun p = r;
    p.vaddr = from;
    p.nr_pages = (to - from) / kPageSize;
    if (r.flags & kPePresent) p.page_offset = r.page_offset + (from - r.vaddr) / kPageSize;
    return p;
  };
  size_t a = 0;
  for (const auto& r : runs) {
    uint64_t at = r.vaddr, end = r.end();
    // Areas are sorted; runs are too (pagemaps are in address order), so `a` only moves forward.
    while (a < areas.size() && areas[a].end <= at) a++;
    for (size_t k = a; at < end; k++) {
      if (k >= areas.size() || areas[k].start >= end) {
        out.eager.push_back(piece(r, at, end));
        break;
      }
      if (areas[k].start > at) out.eager.push_back(piece(r, at, areas[k].start));
      uint64_t from = std::max(at, areas[k].start), to = std::min(end, areas[k].end);
      if (from < to) out.lazy.push_back(piece(r, from, to));
      at = std::max(at, to);
    }
  }
  return out;
}

// ---- pending pages (the daemon's view of one address space) ----

void PendingPages::add(uint64_t start, uint64_t end, uint64_t src) {
  if (start >= end) return;
  remove(start, end);
  segs_[start] = {end, src};
  bytes_ += end - start;
}

std::optional<PendingPages::Chunk> PendingPages::at(uint64_t addr, uint64_t max_pages) const {
  auto it = segs_.upper_bound(addr);
  if (it == segs_.begin()) return std::nullopt;
  --it;
  if (addr >= it->second.end) return std::nullopt;
  uint64_t len = std::min(it->second.end - addr, max_pages * kPageSize);
  return Chunk{addr, len, it->second.src + (addr - it->first)};
}

std::optional<PendingPages::Chunk> PendingPages::first(uint64_t max_pages) const {
  if (segs_.empty()) return std::nullopt;
  const auto& [start, seg] = *segs_.begin();
  return Chunk{start, std::min(seg.end - start, max_pages * kPageSize), seg.src};
}

void PendingPages::remove(uint64_t start, uint64_t end) {
  if (start >= end) return;
  auto it = segs_.upper_bound(start);
  if (it != segs_.begin()) --it;
  while (it != segs_.end() && it->first < end) {
    uint64_t s = it->first;
    Seg seg = it->second;
    if (seg.end <= start) {
      ++it;
      continue;
    }
    it = segs_.erase(it);
    bytes_ -= seg.end - s;
    // Keep what lies outside [start, end).
    if (s < start) {
      segs_[s] = {start, seg.src};
      bytes_ += start - s;
    }
    if (seg.end > end) {
      segs_[end] = {seg.end, seg.src + (end - s)};
      bytes_ += seg.end - end;
      break;
    }
  }
}

void PendingPages::move(uint64_t from, uint64_t to, uint64_t len) {
  std::vector<std::pair<uint64_t, Seg>> moved;
  uint64_t end = from + len;
  auto it = segs_.upper_bound(from);
  if (it != segs_.begin()) --it;
  for (; it != segs_.end() && it->first < end; ++it) {
    uint64_t s = std::max(it->first, from), e = std::min(it->second.end, end);
    if (s < e) moved.push_back({s, {e, it->second.src + (s - it->first)}});
  }
  remove(from, end);
  // The destination's old contents were unmapped by the move: nothing there is pending any more.
  remove(to, to + len);
  for (const auto& [s, seg] : moved) add(s - from + to, seg.end - from + to, seg.src);
}

// ---- restore side ----

namespace {

std::string socket_path(int work_dir) {
  return "/proc/self/fd/" + std::to_string(work_dir) + "/" + kLazySocketName;
}

Status read_reply(int sock, const std::string& what) {
  LazyReply rep;
  CR_OK(sys::read_exact(sock, &rep, sizeof rep, "lazy-pages socket"));
  if (rep.magic != kLazyMagic)
    return fail(make_error(Errc::invalid_argument, "read", "lazy-pages socket", "not a crshim lazy-pages daemon"));
  std::string text(std::min<uint32_t>(rep.len, 4096), '\0');
  if (!text.empty()) CR_OK(sys::read_exact(sock, text.data(), text.size(), "lazy-pages socket"));
  if (rep.err == 0) return {};
  return fail(make_error(Errc::aborted, "lazy-pages daemon", what, text.empty() ? "refused" : text));
}

}  // namespace

Result<LazyClient> LazyClient::connect(int work_dir, std::chrono::milliseconds wait) {
  std::string path = socket_path(work_dir);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return fail(make_error(Errc::invalid_argument, "connect", path, "socket path too long"));
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!sock) return fail(sys_error("socket", "lazy-pages socket"));
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return LazyClient(std::move(sock));
    int err = errno;
    bool absent = err == ENOENT || err == ECONNREFUSED;
    if (!absent || std::chrono::steady_clock::now() >= deadline) {
      errno = err;
      return fail(sys_error("connect", std::string("lazy-pages daemon socket ") + kLazySocketName + " in the work dir")
                      .with_hint("start `crshim lazy-pages -D DIR` (same images and work dir) before restoring with --lazy-pages"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<std::vector<Range>> LazyClient::hand_over(kernel::Remote& r, uint32_t vpid, const std::vector<Range>& areas,
                                                 const std::vector<Range>& in_place) {
  const std::string what = "userfaultfd of pid " + std::to_string(r.pid());
  auto task_uffd = CR_TRY(open_task_uffd(r, 0, kernel::kLazyUffdFeatures, "EVENT_FORK|REMAP|REMOVE|UNMAP",
                                         "lazy restore needs userfaultfd events (CAP_SYS_PTRACE for fork events)"));
  // The task keeps no fd of it: the daemon's copy keeps the registrations alive.
  CR_OK(r.call(SYS_close, task_uffd.target_fd));
  UniqueFd uffd = std::move(task_uffd.fd);
  std::vector<Range> registered;
  for (const auto& a : areas) {
    uffdio_register reg{};
    reg.range.start = a.start;
    reg.range.len = a.end - a.start;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) < 0) continue;  // stays eager
    registered.push_back(a);
  }
  std::vector<Range> served = subtract(registered, in_place);
  if (served.empty()) return served;
  LazyTaskHeader h;
  h.type = uint32_t(LazyMsg::task);
  h.pid = r.pid();
  h.vpid = vpid;
  h.nr_ranges = served.size();
  std::string msg(reinterpret_cast<const char*>(&h), sizeof h);
  for (const auto& a : served) {
    uint64_t pair[2] = {a.start, a.end};
    msg.append(reinterpret_cast<const char*>(pair), sizeof pair);
  }
  // The header carries the fd; the ranges follow on the stream.
  CR_OK_IN(sys::send_with_fd(sock_.get(), std::string_view(msg).substr(0, sizeof h), uffd.get(), "lazy-pages socket"), what);
  CR_OK_IN(sys::write_all(sock_.get(), std::string_view(msg).substr(sizeof h), "lazy-pages socket"), what);
  CR_OK_IN(read_reply(sock_.get(), "pid " + std::to_string(r.pid())), what);
  return served;
}

Status LazyClient::finish() {
  LazyTaskHeader h;
  h.type = uint32_t(LazyMsg::done);
  CR_OK(sys::write_all(sock_.get(), &h, sizeof h, "lazy-pages socket"));
  return read_reply(sock_.get(), "end of restore");
}

Result<LazyRestoreCounts> restore_pages_lazily(kernel::Remote& r, LazyClient& client, const mm_entry& mm,
                                               const std::vector<pagemap_entry>& pagemap, uint32_t pages_id,
                                               uint32_t vpid, int images_dir, int mem_fd, ProgressSink* progress) {
  LazyRestoreCounts counts;
  pid_t pid = r.pid();
  // Writes PRESENT pieces from the pages image and PARENT ones from the parent chain.
  auto write_now = [&](const std::vector<PageRun>& pieces) -> Status {
    bool any_present = false;
    for (const auto& e : pieces) {
      any_present |= (e.flags & kPePresent) != 0;
      // Only the daemon can fetch these from the source: written now, they would be lost.
      if (!(e.flags & (kPePresent | kPeParent))) {
        char hex[32];
        snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)e.vaddr);
        return fail(make_error(Errc::unsupported, "restore", std::to_string(e.nr_pages) + " pages at " + hex,
                               "the lazy dump on the source holds them, but their area could not be handed to the lazy-pages daemon")
                        .with_hint("the area must be private anonymous memory userfaultfd can register"));
      }
    }
    if (any_present) {
      auto pages = CR_TRY(PageSource::open(images_dir, image::pages_file(pages_id)));
      for (const auto& e : pieces) {
        if (!(e.flags & kPePresent)) continue;
        uint64_t at = pages.offset() / kPageSize;
        CR_OK(pages.skip(e.page_offset - at));
        CR_OK_IN(pages.restore(pid, mem_fd, e.vaddr, e.nr_pages), "memory");
        counts.written += e.nr_pages;
        progress_advance(progress, e.nr_pages);
      }
    }
    std::vector<std::pair<uint64_t, uint64_t>> from_parents;
    for (const auto& e : pieces)
      if ((e.flags & kPeParent) && !(e.flags & kPePresent)) from_parents.push_back({e.vaddr, e.nr_pages});
    counts.written += CR_TRY(restore_from_parents(pid, mem_fd, images_dir, vpid, from_parents, progress));
    return {};
  };

  // argv and environ first: once their area is registered, /proc/PID/mem cannot write a missing page.
  auto in_place = remote_read_pages(mm);
  SplitRuns first = split_runs(index_pagemap(pagemap), in_place);
  CR_OK(write_now(first.lazy));
  const std::vector<PageRun>& runs = first.eager;

  // Only areas that hold pages need the daemon: empty ones fault in zero pages on their own.
  std::vector<Range> wanted;
  {
    auto all = lazy_areas(mm);
    size_t j = 0;
    for (const auto& a : all) {
      while (j < runs.size() && runs[j].end() <= a.start) j++;
      bool any = false;
      for (size_t k = j; k < runs.size() && runs[k].vaddr < a.end; k++)
        any |= (runs[k].flags & (kPePresent | kPeParent | kPeLazy)) != 0;
      if (any) wanted.push_back(a);
    }
  }
  std::vector<Range> served;
  if (!wanted.empty()) served = CR_TRY(client.hand_over(r, vpid, wanted, in_place));
  SplitRuns split = split_runs(runs, served);
  for (const auto& l : split.lazy) counts.lazy += l.nr_pages;
  CR_OK(write_now(split.eager));
  return counts;
}

}  // namespace crshim::mem

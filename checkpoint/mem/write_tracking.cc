#include "checkpoint/mem/write_tracking.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <memory>
#include <string>

#include "checkpoint/base/sys.h"
#include "checkpoint/kernel/pagemap_scan.h"
#include "checkpoint/kernel/proc.h"
#include "checkpoint/mem/task_uffd.h"

namespace crshim::mem {

namespace {

namespace scan = kernel::pagemap_scan;

// UFFD_FEATURE_* of Linux 6.7; Debian 12's headers predate them.
constexpr uint64_t kFeatureWpAsync = 1 << 15;
constexpr int kUserModeOnly = 1;  // UFFD_USER_MODE_ONLY: enough for tracking, allowed without privilege

// Write-protects the written pages of [start, end) and returns them; EPERM: range not tracked.
Result<std::optional<std::vector<Range>>> scan_and_protect(int pagemap_fd, uint64_t start, uint64_t end) {
  std::vector<Range> out;
  std::vector<scan::PageRegion> regions(512);
  for (uint64_t at = start; at < end;) {
    scan::Arg arg{};
    arg.size = sizeof arg;
    arg.flags = scan::kWpMatching | scan::kCheckWpAsync;
    arg.start = at;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    arg.category_mask = scan::kWritten;
    // Only pages that exist: write-protecting holes would build page tables for every empty page of
    // huge reserved areas (sanitizer shadows, language heaps). A hole written later is a new page
    // without the protection bit, so it is reported as written all the same.
    arg.category_anyof_mask = scan::kPresent | scan::kSwapped;
    arg.return_mask = scan::kWritten;
    long n = ::ioctl(pagemap_fd, scan::kIoctl, &arg);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPERM) return std::optional<std::vector<Range>>();
      return fail(sys_error("ioctl(PAGEMAP_SCAN, WP_MATCHING)", "pagemap"));
    }
    for (long i = 0; i < n; i++) {
      const auto& g = regions[size_t(i)];
      if (!out.empty() && out.back().end == g.start)
        out.back().end = g.end;
      else
        out.push_back({g.start, g.end});
    }
    if (arg.walk_end <= at) break;
    at = arg.walk_end;
  }
  return std::optional<std::vector<Range>>(std::move(out));
}

}  // namespace

Result<WriteTracking> arm_write_tracking(kernel::Remote& r, const std::vector<Range>& ranges) {
  const std::string what = "write tracking of pid " + std::to_string(r.pid());
  // No UFFD_FEATURE_WP_UNPOPULATED: it would write-protect every empty page of huge reserved areas
  // (sanitizer shadows, language heaps) with page tables of their own. Without it an empty page stays
  // unprotected, and once written it is a new page without the protection bit: reported as written.
  auto task_uffd = CR_TRY(open_task_uffd(r, kUserModeOnly, kFeatureWpAsync, "WP_ASYNC",
                                         "asynchronous write-protection needs Linux 6.7 or later"));
  UniqueFd uffd = std::move(task_uffd.fd);
  WriteTracking t;
  t.target_fd = task_uffd.target_fd;
  auto give_up = [&](Error e) {
    (void)r.call(SYS_close, t.target_fd);
    return fail(e.within(what));
  };
  struct stat st;
  if (::fstat(uffd.get(), &st) < 0) return give_up(sys_error("fstat", "userfaultfd"));
  t.inode = st.st_ino;
  UniqueFd pagemap = CR_TRY(sys::open("/proc/" + std::to_string(r.pid()) + "/pagemap", O_RDONLY));
  for (const auto& v : ranges) {
    uffdio_register reg{};
    reg.range.start = v.start;
    reg.range.len = v.end - v.start;
    reg.mode = UFFDIO_REGISTER_MODE_WP;
    if (::ioctl(uffd.get(), UFFDIO_REGISTER, &reg) < 0) continue;  // stays untracked: dumped in full
    // The first pass protects every page; what it reports is dumped anyway.
    if (auto first = scan_and_protect(pagemap.get(), v.start, v.end); !first) return give_up(first.error());
  }
  return t;
}

Result<std::optional<std::vector<Range>>> written_pages(int pagemap_fd, uint64_t start, uint64_t end) {
  return scan_and_protect(pagemap_fd, start, end);
}

std::optional<WriteTracking> find_write_tracking(pid_t pid) {
  std::string dir = proc::proc_dir(pid) + "/fd/";
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return std::nullopt;
  while (dirent* e = ::readdir(d.get())) {
    uint64_t fd;
    if (!sys::parse_u64(e->d_name, fd)) continue;
    std::string path = dir + e->d_name;
    auto link = sys::read_link(path);
    if (!link || *link != "anon_inode:[userfaultfd]") continue;
    auto info = proc::read_fdinfo(pid, int(fd));
    struct stat st;
    if (info && proc::is_write_tracking_uffd(*info) && ::stat(path.c_str(), &st) == 0)
      return WriteTracking{int(fd), uint64_t(st.st_ino)};
  }
  return std::nullopt;
}

}  // namespace crshim::mem

#include "checkpoint/files/locks.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/syscall.h>

#include "checkpoint/base/sys.h"

namespace crshim::files {

namespace {

// The kernel's lock kinds (include/linux/filelock.h), which CRIU stores in file_lock_entry.flag.
constexpr uint32_t kPosix = 1, kFlock = 2, kLease = 32, kOfd = 1024;

}  // namespace

Result<std::vector<file_lock_entry>> fd_locks(const proc::FdInfo& info, int fd, uint32_t vpid, const std::string& what) {
  std::vector<file_lock_entry> out;
  for (const auto& line : info.extra) {
    if (line.rfind("lock:", 0) != 0) continue;
    // "lock:\t1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters ("->") are not held locks.
    if (line.find("->") != std::string::npos) continue;
    auto f = sys::split(std::string_view(line).substr(5), ' ');
    std::vector<std::string_view> words;
    for (auto w : f)
      if (!sys::trim(w).empty()) words.push_back(sys::trim(w));
    if (words.size() < 8) return fail(make_error(Errc::invalid_argument, "parse", what, "bad lock line: " + line));
    file_lock_entry e;
    std::string_view kind = words[1];
    e.set_flag(kind == "POSIX" ? kPosix : kind == "FLOCK" ? kFlock : kind == "OFDLCK" ? kOfd : kLease);
    if (kind != "POSIX" && kind != "FLOCK" && kind != "OFDLCK")
      return fail(make_error(Errc::unsupported, "dump", what, std::string(kind) + " locks are not supported"));
    if (words[2] != "ADVISORY") return fail(make_error(Errc::unsupported, "dump", what, "mandatory locks are not supported"));
    e.set_type(words[3] == "READ" ? F_RDLCK : F_WRLCK);
    e.set_pid(int32_t(vpid));
    e.set_fd(fd);
    int64_t start = 0, end = -1;
    if (!sys::parse_i64(words[6], start)) return fail(make_error(Errc::invalid_argument, "parse", what, "bad lock start"));
    if (words[7] != "EOF" && !sys::parse_i64(words[7], end))
      return fail(make_error(Errc::invalid_argument, "parse", what, "bad lock end"));
    e.set_start(start);
    e.set_len(words[7] == "EOF" ? 0 : end - start + 1);
    out.push_back(std::move(e));
  }
  return out;
}

Status restore_locks(kernel::Remote& r, const std::vector<file_lock_entry>& locks) {
  for (const auto& l : locks) {
    std::string what = "lock on fd " + std::to_string(l.fd());
    if (l.flag() == kFlock) {
      int op = (l.type() == F_RDLCK ? LOCK_SH : LOCK_EX) | LOCK_NB;
      CR_OK_IN(r.call(SYS_flock, l.fd(), op), what);
      continue;
    }
    struct flock fl{};
    fl.l_type = short(l.type());
    fl.l_whence = SEEK_SET;
    fl.l_start = l.start();
    fl.l_len = l.len();
    uint64_t addr = CR_TRY(r.put(&fl, sizeof fl));
    CR_OK_IN(r.call(SYS_fcntl, l.fd(), l.flag() == kOfd ? F_OFD_SETLK : F_SETLK, long(addr)), what);
  }
  return {};
}

}  // namespace crshim::files

#include "checkpoint/files/fds.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>

#include "checkpoint/base/sys.h"
#include "checkpoint/kernel/proc.h"

namespace crshim::files {

namespace {

struct OpenFd {
  int fd;
  std::string link;
  struct stat st;
};

bool is_tty(const struct stat& st) {
  if (!S_ISCHR(st.st_mode)) return false;
  unsigned maj = major(st.st_rdev);
  return maj == 136 || maj == 4 || (maj == 5 && minor(st.st_rdev) != 2 /* ptmx */) || maj == 3;
}

// What we cannot dump yet, or "" when the fd is fine.
std::string unsupported_reason(const OpenFd& f, bool shell_job) {
  const std::string& l = f.link;
  if (l.rfind("pipe:", 0) == 0) return "pipe";
  if (l.rfind("socket:", 0) == 0) return "socket";
  if (l.rfind("anon_inode:", 0) == 0) return l.substr(11);
  if (S_ISFIFO(f.st.st_mode)) return "FIFO";
  if (S_ISSOCK(f.st.st_mode)) return "socket";
  if (is_tty(f.st) && !shell_job) return "terminal (use --shell-job)";
  if (l.size() > 10 && l.compare(l.size() - 10, 10, " (deleted)") == 0) return "deleted file";
  if (l.empty() || l[0] != '/') return "unknown object " + l;
  return "";
}

Result<std::vector<OpenFd>> list_fds(pid_t pid) {
  std::string dir = proc::proc_dir(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return fail(sys_error("opendir", dir));
  std::vector<OpenFd> out;
  Status st;
  while (dirent* e = readdir(d)) {
    uint64_t fd;
    if (!sys::parse_u64(e->d_name, fd)) continue;
    OpenFd f{int(fd), {}, {}};
    auto link = sys::read_link(dir + "/" + e->d_name);
    if (!link) {
      if (link.error().err == ENOENT) continue;  // closed meanwhile
      st = fail(link.error());
      break;
    }
    f.link = *link;
    if (::stat((dir + "/" + e->d_name).c_str(), &f.st) < 0) {
      // Sockets and anon inodes of other namespaces can refuse stat; the link still says what they are.
      memset(&f.st, 0, sizeof f.st);
    }
    out.push_back(std::move(f));
  }
  closedir(d);
  if (!st) return fail(st.error());
  std::sort(out.begin(), out.end(), [](const OpenFd& a, const OpenFd& b) { return a.fd < b.fd; });
  return out;
}

}  // namespace

Status check_fds_supported(pid_t pid, bool shell_job) {
  auto fds = CR_TRY(list_fds(pid));
  std::string bad;
  for (const auto& f : fds) {
    std::string why = unsupported_reason(f, shell_job);
    if (why.empty()) continue;
    if (!bad.empty()) bad += ", ";
    bad += "fd " + std::to_string(f.fd) + " (" + why + ")";
  }
  if (bad.empty()) return {};
  return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(pid), "unsupported file descriptors: " + bad)
                  .with_hint("close them before checkpointing, or wait for support of these file kinds"));
}

Result<std::vector<fdinfo_entry>> dump_fds(pid_t pid, bool shell_job, FileTable& table) {
  auto fds = CR_TRY(list_fds(pid));
  std::vector<fdinfo_entry> out;
  for (const auto& f : fds) {
    if (std::string why = unsupported_reason(f, shell_job); !why.empty())
      return fail(make_error(Errc::unsupported, "dump", "fd " + std::to_string(f.fd) + " of pid " + std::to_string(pid),
                             why + " is not supported"));
    auto info = proc::read_fdinfo(pid, f.fd);
    if (!info) return fail(info.error().within("fd " + std::to_string(f.fd) + " of pid " + std::to_string(pid)));
    uint32_t open_flags = info->flags & ~uint32_t(O_CLOEXEC);
    uint32_t id = table.add_open_reg(pid, f.fd, f.link, open_flags, info->pos, f.st, info->mnt_id);
    fdinfo_entry fe;
    fe.set_id(id);
    fe.set_flags((info->flags & O_CLOEXEC) ? FD_CLOEXEC : 0);
    fe.set_type(REG);
    fe.set_fd(uint32_t(f.fd));
    out.push_back(std::move(fe));
  }
  return out;
}

}  // namespace crshim::files

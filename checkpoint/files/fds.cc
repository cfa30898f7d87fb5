#include "checkpoint/files/fds.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/locks.h"
#include "checkpoint/kernel/proc.h"

namespace crshim::files {

Result<std::vector<OpenFd>> list_fds(pid_t pid, bool with_info) {
  std::string dir = proc::proc_dir(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return fail(sys_error("opendir", dir));
  std::vector<OpenFd> out;
  Status st;
  while (dirent* e = readdir(d)) {
    uint64_t fd;
    if (!sys::parse_u64(e->d_name, fd)) continue;
    OpenFd f;
    f.pid = pid;
    f.fd = int(fd);
    auto link = sys::read_link(dir + "/" + e->d_name);
    if (!link) {
      if (link.error().err == ENOENT) continue;  // closed meanwhile
      st = fail(link.error());
      break;
    }
    f.link = *link;
    if (f.link == "anon_inode:[userfaultfd]") {
      // crshim's own write tracking, left in the task by an earlier pre-dump: not the task's file.
      auto info = proc::read_fdinfo(pid, f.fd);
      if (info && proc::is_write_tracking_uffd(*info)) continue;
    }
    // Some objects refuse stat; the link still says what they are.
    if (::stat((dir + "/" + e->d_name).c_str(), &f.st) < 0) memset(&f.st, 0, sizeof f.st);
    out.push_back(std::move(f));
  }
  closedir(d);
  if (!st) return fail(st.error());
  std::sort(out.begin(), out.end(), [](const OpenFd& a, const OpenFd& b) { return a.fd < b.fd; });
  if (with_info) {
    for (auto& f : out) {
      auto info = proc::read_fdinfo(pid, f.fd);
      if (!info) return fail(info.error().within(f.name()));
      f.info = std::move(*info);
    }
  }
  return out;
}

namespace {

const FileKind* kind_of(const OpenFd& f) {
  for (const auto& k : file_kinds())
    if (k.matches(f)) return &k;
  return nullptr;
}

std::string why_unsupported(const OpenFd& f, bool shell_job) {
  const FileKind* k = kind_of(f);
  if (!k) return "unknown object " + f.link;
  if (std::string why = k->unsupported(f, shell_job); !why.empty()) return why;
  if (!k->dump) return std::string(k->name) + " (not supported yet)";
  return "";
}

}  // namespace

Status check_fds_supported(pid_t pid, bool shell_job) {
  auto fds = CR_TRY(list_fds(pid, false));
  std::string bad;
  for (const auto& f : fds) {
    std::string why = why_unsupported(f, shell_job);
    if (why.empty()) continue;
    if (!bad.empty()) bad += ", ";
    bad += "fd " + std::to_string(f.fd) + " (" + why + ")";
  }
  if (bad.empty()) return {};
  return fail(make_error(Errc::unsupported, "dump", "pid " + std::to_string(pid), "unsupported file descriptors: " + bad)
                  .with_hint("close them before checkpointing, or wait for support of these file kinds"));
}

Result<std::vector<fdinfo_entry>> dump_fds(pid_t pid, uint32_t vpid, DumpFiles& files) {
  auto fds = CR_TRY(list_fds(pid, true));
  UniqueFd pidfd(sys::pidfd_open(pid));
  if (!pidfd) return fail(sys_error("pidfd_open", "pid " + std::to_string(pid)));
  std::vector<fdinfo_entry> out;
  for (auto& f : fds) {
    f.task_pidfd = pidfd.get();
    if (std::string why = why_unsupported(f, files.shell_job()); !why.empty())
      return fail(make_error(Errc::unsupported, "dump", f.name(), why + " is not supported"));
    const FileKind* k = kind_of(f);
    auto id = k->dump(f, files);
    if (!id) return fail(id.error().within(f.name()));
    auto locks = fd_locks(f.info, f.fd, vpid, f.name());
    if (!locks) return fail(locks.error());
    if (!locks->empty()) {
      if (!files.file_locks())
        return fail(make_error(Errc::unsupported, "dump", f.name(), "the task holds a file lock through it")
                        .with_hint("use --file-locks to dump and restore file locks"));
      auto w = CR_TRY(files.writer(image::kFileLocksFile, image::Type::file_locks));
      for (const auto& l : *locks) CR_OK(w->write(l));
    }
    fdinfo_entry fe;
    fe.set_id(*id);
    fe.set_flags((f.info.flags & O_CLOEXEC) ? FD_CLOEXEC : 0);
    fe.set_type(files.table().entries()[*id - 1].type());
    fe.set_fd(uint32_t(f.fd));
    out.push_back(std::move(fe));
  }
  return out;
}

}  // namespace crshim::files

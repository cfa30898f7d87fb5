// Regular files, directories and device nodes named by a path: reopened with the same flags and position.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) { return !f.link.empty() && f.link[0] == '/'; }

std::string unsupported(const OpenFd& f, bool) {
  if (f.link.size() > 10 && f.link.compare(f.link.size() - 10, 10, " (deleted)") == 0) return "deleted file";
  if (S_ISSOCK(f.st.st_mode)) return "socket";
  return "";
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  // --external file[mnt_id:ino] (lower-case hex, as CRIU): recorded by key; restore needs --inherit-fd.
  char key[64];
  snprintf(key, sizeof key, "file[%x:%llx]", unsigned(f.info.mnt_id), (unsigned long long)f.st.st_ino);
  if (files.is_external(key)) {
    uint32_t id = files.table().add_open_reg(f.pid, f.fd, key, f.open_flags(), f.info.pos, f.st, f.info.mnt_id);
    files.table().mark_external(id);
    return id;
  }
  return files.table().add_open_reg(f.pid, f.fd, f.link, f.open_flags(), f.info.pos, f.st, f.info.mnt_id);
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles& files) {
  if (files.shell_job())
    if (auto tty = open_shell_terminal(fe.reg())) return std::move(*tty);
  return open_reg_file(fe.reg());
}

}  // namespace

Result<UniqueFd> open_reg_file(const reg_file_entry& reg) {
  int flags = int(reg.flags()) & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY);
  auto fd = sys::open(reg.name(), flags);
  if (!fd) return fail(fd.error().with_hint("the file must exist at restore as it did at dump"));
  struct stat st;
  if (reg.has_size() && fstat(fd->get(), &st) == 0 && S_ISREG(st.st_mode) && reg.pos() > uint64_t(st.st_size))
    return fail(make_error(Errc::conflict, "restore", reg.name(),
                           "the file shrank to " + std::to_string(st.st_size) + " bytes since the dump (" +
                               std::to_string(reg.size()) + "), below the saved position " + std::to_string(reg.pos())));
  if (reg.pos() && ::lseek(fd->get(), off_t(reg.pos()), SEEK_SET) < 0) return fail(sys_error("lseek", reg.name()));
  return fd;
}

extern const FileKind kRegKind{"regular file", REG, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files

// Terminals. With --shell-job the task's terminal is the dumper's shell's: it is recorded by path and
// the restored task gets the restoring shell's terminal, as CRIU does. Other terminals: not yet.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

bool matches(const OpenFd& f) {
  if (!S_ISCHR(f.st.st_mode)) return false;
  unsigned maj = major(f.st.st_rdev), min = minor(f.st.st_rdev);
  return maj == 136 || maj == 4 || maj == 3 || (maj == 5 && (min == 0 || min == 1));
}

std::string unsupported(const OpenFd&, bool shell_job) { return shell_job ? "" : "terminal (use --shell-job)"; }

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  return files.table().add_open_reg(f.pid, f.fd, f.link, f.open_flags(), 0, f.st, f.info.mnt_id);
}

bool is_terminal_path(const std::string& p) {
  return p.rfind("/dev/pts/", 0) == 0 || p.rfind("/dev/tty", 0) == 0 || p == "/dev/console";
}

}  // namespace

std::optional<Result<UniqueFd>> open_shell_terminal(const reg_file_entry& reg) {
  if (!S_ISCHR(reg.mode()) || !is_terminal_path(reg.name())) return std::nullopt;
  for (int fd = 0; fd <= 2; fd++) {
    if (!isatty(fd)) continue;
    auto path = sys::read_link("/proc/self/fd/" + std::to_string(fd));
    if (!path) continue;
    return sys::open(*path, int(reg.flags()) & (O_ACCMODE | O_APPEND | O_NONBLOCK));
  }
  return std::nullopt;
}

// Recorded as REG entries (a path); restored through the regular-file kind, which asks
// open_shell_terminal() first under --shell-job.
extern const FileKind kTtyKind{"terminal", REG, matches, unsupported, dump, nullptr, nullptr};

}  // namespace crshim::files

#include "checkpoint/files/anon_common.h"

#include <fcntl.h>
#include <unistd.h>

namespace crshim::files::anon {

namespace {

constexpr int kSettableFlags = O_APPEND | O_ASYNC | O_DIRECT | O_NOATIME | O_NONBLOCK;

}  // namespace

uint32_t shared_id(const OpenFd& f, DumpFiles& files, const std::string& kind) {
  return files.open_files(kind).find(f.pid, f.fd);
}

void remember(const OpenFd& f, DumpFiles& files, const std::string& kind, uint32_t id) {
  files.open_files(kind).add(f.pid, f.fd, id);
}

Result<uint32_t> add_file(DumpFiles& files, file_entry fe, void (*set_id)(file_entry&, uint32_t)) {
  uint32_t id = uint32_t(files.table().entries().size() + 1);
  set_id(fe, id);
  uint32_t got = files.table().add(std::move(fe));
  if (got != id)
    return fail(make_error(Errc::internal, "dump", "files.img", "file table gave id " + std::to_string(got) +
                                                                    ", expected " + std::to_string(id)));
  return id;
}

Result<fown_entry> dump_fown(int fd, const std::string& what) {
  f_owner_ex owner{};
  if (::fcntl(fd, F_GETOWN_EX, &owner) < 0) return fail(sys_error("fcntl(F_GETOWN_EX)", what));
  int sig = ::fcntl(fd, F_GETSIG);
  if (sig < 0) return fail(sys_error("fcntl(F_GETSIG)", what));
  fown_entry fown;
  // The owner's credentials are not visible from user space; CRIU also leaves them 0 for these kinds.
  fown.set_uid(0);
  fown.set_euid(0);
  fown.set_signum(uint32_t(sig));
  fown.set_pid_type(uint32_t(owner.type));
  fown.set_pid(uint32_t(owner.pid));
  return fown;
}

Status restore_fown(int fd, const fown_entry& fown, const std::string& what) {
  if (fown.signum() && ::fcntl(fd, F_SETSIG, int(fown.signum())) < 0) return fail(sys_error("fcntl(F_SETSIG)", what));
  if (!fown.pid()) return {};
  f_owner_ex owner{};
  owner.type = __pid_type(fown.pid_type());
  owner.pid = pid_t(fown.pid());
  if (::fcntl(fd, F_SETOWN_EX, &owner) < 0)
    return fail(sys_error("fcntl(F_SETOWN_EX)", what, "owner " + std::to_string(fown.pid()))
                    .with_hint("the owning process must exist when the file is restored"));
  return {};
}

Status restore_status_flags(int fd, uint32_t flags, const std::string& what) {
  int now = ::fcntl(fd, F_GETFL);
  if (now < 0) return fail(sys_error("fcntl(F_GETFL)", what));
  int want = (now & ~kSettableFlags) | (int(flags) & kSettableFlags);
  if (want != now && ::fcntl(fd, F_SETFL, want) < 0) return fail(sys_error("fcntl(F_SETFL)", what));
  return {};
}

std::string file_name(const char* kind, uint32_t id) { return std::string(kind) + " " + std::to_string(id); }

}  // namespace crshim::files::anon

// Signalfds: the signal mask and flags. Queued signals belong to the task and are restored with it.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>

#include <cstring>

#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

constexpr const char* kKind = "signalfd";

bool matches(const OpenFd& f) { return f.link == "anon_inode:[signalfd]"; }

std::string unsupported(const OpenFd&, bool) { return ""; }

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) {
    anon::remember(f, files, kKind, id);
    return id;
  }
  uint64_t mask = CR_TRY(proc::parse_signalfd_sigmask(f.info, "fdinfo of " + f.name()));
  auto stolen = CR_TRY(f.steal());
  file_entry fe;
  fe.set_type(SIGNALFD);
  fe.set_id(0);
  signalfd_entry* s = fe.mutable_sgfd();
  s->set_id(0);
  s->set_flags(f.open_flags());
  *s->mutable_fown() = CR_TRY(anon::dump_fown(stolen.get(), f.name()));
  s->set_sigmask_bits(mask);
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t i) { x.mutable_sgfd()->set_id(i); }));
  anon::remember(f, files, kKind, id);
  return id;
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles&) {
  std::string what = anon::file_name(kKind, fe.id());
  if (!fe.has_sgfd()) return fail(make_error(Errc::corrupt_image, "restore", what, "no signalfd payload"));
  const signalfd_entry& s = fe.sgfd();
  // The kernel's mask is 64 bits (bit N-1 = signal N): the first word of a sigset_t.
  sigset_t set;
  sigemptyset(&set);
  uint64_t bits = s.sigmask_bits();
  memcpy(&set, &bits, sizeof bits);
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd) return fail(sys_error("signalfd", what));
  CR_OK(anon::restore_status_flags(fd.get(), s.flags(), what));
  CR_OK(anon::restore_fown(fd.get(), s.fown(), what));
  return fd;
}

}  // namespace

extern const FileKind kSignalfdKind{"signalfd", SIGNALFD, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files

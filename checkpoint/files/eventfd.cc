// Eventfds: the counter and the semaphore mode. EFD_SEMAPHORE is not among the open flags the kernel
// keeps, so it is stored in eventfd_file_entry.flags as its own bit (EFD_SEMAPHORE = 1, an access-mode
// bit eventfds never otherwise have: they are always O_RDWR, and F_SETFL ignores access-mode bits).
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

constexpr const char* kKind = "eventfd";

bool matches(const OpenFd& f) { return f.link == "anon_inode:[eventfd]"; }

std::string unsupported(const OpenFd&, bool) { return ""; }

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) {
    anon::remember(f, files, kKind, id);
    return id;
  }
  auto info = CR_TRY(proc::parse_eventfd(f.info, "fdinfo of " + f.name()));
  auto stolen = CR_TRY(f.steal());
  file_entry fe;
  fe.set_type(EVENTFD);
  fe.set_id(0);
  eventfd_file_entry* e = fe.mutable_efd();
  e->set_id(0);
  uint32_t flags = f.open_flags();
  // Kernels before 6.6 do not print eventfd-semaphore; such eventfds are taken as counters.
  if (info.semaphore.value_or(false)) flags |= EFD_SEMAPHORE;
  e->set_flags(flags);
  *e->mutable_fown() = CR_TRY(anon::dump_fown(stolen.get(), f.name()));
  e->set_counter(info.count);
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t i) { x.mutable_efd()->set_id(i); }));
  anon::remember(f, files, kKind, id);
  return id;
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles&) {
  std::string what = anon::file_name(kKind, fe.id());
  if (!fe.has_efd()) return fail(make_error(Errc::corrupt_image, "restore", what, "no eventfd payload"));
  const eventfd_file_entry& e = fe.efd();
  if (e.counter() == UINT64_MAX)
    return fail(make_error(Errc::corrupt_image, "restore", what, "counter 0xffffffffffffffff is not a valid eventfd value"));
  int flags = EFD_CLOEXEC | ((e.flags() & EFD_SEMAPHORE) ? EFD_SEMAPHORE : 0);
  // eventfd() takes a 32-bit initial value; larger counters go in with a write.
  UniqueFd fd(::eventfd(0, flags | EFD_NONBLOCK));
  if (!fd) return fail(sys_error("eventfd", what));
  if (uint64_t c = e.counter(); c && ::write(fd.get(), &c, sizeof c) != sizeof c) return fail(sys_error("write", what));
  CR_OK(anon::restore_status_flags(fd.get(), e.flags(), what));
  CR_OK(anon::restore_fown(fd.get(), e.fown(), what));
  return fd;
}

}  // namespace

extern const FileKind kEventfdKind{"eventfd", EVENTFD, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files

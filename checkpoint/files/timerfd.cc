// Timerfds: clock, remaining time, interval, settime flags and expirations not read yet.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/kinds.h"

#ifndef TFD_IOC_SET_TICKS
#define TFD_IOC_SET_TICKS _IOW('T', 0, uint64_t)
#endif

namespace crshim::files {

namespace {

constexpr const char* kKind = "timerfd";
constexpr uint64_t kNsec = 1000000000;

bool matches(const OpenFd& f) { return f.link == "anon_inode:[timerfd]"; }

std::string unsupported(const OpenFd&, bool) { return ""; }

// For a periodic timer fdinfo says "ticks: 1" once it expired, however many periods have passed since:
// the kernel only counts the missed periods when the timer is read. Reading crshim's copy of the file and
// putting the count back with TFD_IOC_SET_TICKS gives the true count, and leaves the timer as a read would
// (rearmed on the same period grid), so a task left running sees the same expirations.
Result<proc::TimerfdInfo> settle_ticks(const OpenFd& f, int stolen, proc::TimerfdInfo t) {
  bool periodic = t.interval_sec || t.interval_nsec;
  // A read of a cancelled CANCEL_ON_SET timer drops its ticks, which could not be put back.
  if (!t.ticks || !periodic || (t.settime_flags & TFD_TIMER_CANCEL_ON_SET)) return t;
  uint64_t n = 0;
  ssize_t got = ::read(stolen, &n, sizeof n);
  if (got < 0) {
    if (errno == EAGAIN) return t;
    return fail(sys_error("read", f.name()));
  }
  if (got != sizeof n || !n) return fail(make_error(Errc::internal, "read", f.name(), "short timerfd read"));
  if (::ioctl(stolen, TFD_IOC_SET_TICKS, &n) < 0)
    return fail(sys_error("ioctl(TFD_IOC_SET_TICKS)", f.name(), std::to_string(n) + " expirations were read and are lost")
                    .with_hint("the kernel needs CONFIG_CHECKPOINT_RESTORE"));
  // The remaining time now runs to the next period.
  auto info = CR_TRY(proc::read_fdinfo(f.pid, f.fd));
  auto now = CR_TRY(proc::parse_timerfd(info, "fdinfo of " + f.name()));
  now.ticks = n;
  return now;
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) {
    anon::remember(f, files, kKind, id);
    return id;
  }
  auto stolen = CR_TRY(f.steal());
  auto t = CR_TRY(proc::parse_timerfd(f.info, "fdinfo of " + f.name()));
  t = CR_TRY(settle_ticks(f, stolen.get(), t));
  file_entry fe;
  fe.set_type(TIMERFD);
  fe.set_id(0);
  timerfd_entry* e = fe.mutable_tfd();
  e->set_id(0);
  e->set_flags(f.open_flags());
  *e->mutable_fown() = CR_TRY(anon::dump_fown(stolen.get(), f.name()));
  e->set_clockid(uint32_t(t.clockid));
  e->set_ticks(t.ticks);
  e->set_settime_flags(t.settime_flags);
  e->set_vsec(t.value_sec);
  e->set_vnsec(t.value_nsec);
  e->set_isec(t.interval_sec);
  e->set_insec(t.interval_nsec);
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t i) { x.mutable_tfd()->set_id(i); }));
  anon::remember(f, files, kKind, id);
  return id;
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles&) {
  std::string what = anon::file_name(kKind, fe.id());
  if (!fe.has_tfd()) return fail(make_error(Errc::corrupt_image, "restore", what, "no timerfd payload"));
  const timerfd_entry& e = fe.tfd();
  if (e.vnsec() >= kNsec || e.insec() >= kNsec || e.vsec() > uint64_t(INT64_MAX) || e.isec() > uint64_t(INT64_MAX))
    return fail(make_error(Errc::corrupt_image, "restore", what, "timer value out of range"));
  clockid_t clock = clockid_t(e.clockid());
  UniqueFd fd(::timerfd_create(clock, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!fd) return fail(sys_error("timerfd_create", what, "clock " + std::to_string(e.clockid())));
  itimerspec its{};
  its.it_interval = {time_t(e.isec()), long(e.insec())};
  its.it_value = {time_t(e.vsec()), long(e.vnsec())};
  bool periodic = e.isec() || e.insec();
  // A periodic timer that expired unread shows no remaining time; its next expiry is a period away.
  if (!e.vsec() && !e.vnsec() && periodic) its.it_value = its.it_interval;
  if (its.it_value.tv_sec || its.it_value.tv_nsec) {
    int flags = 0;
    // The image holds the remaining time; an absolute timer gets its deadline back from the clock now.
    if (e.settime_flags() & TFD_TIMER_ABSTIME) {
      timespec now;
      if (::clock_gettime(clock, &now) < 0) return fail(sys_error("clock_gettime", what));
      its.it_value.tv_sec += now.tv_sec;
      its.it_value.tv_nsec += now.tv_nsec;
      if (its.it_value.tv_nsec >= long(kNsec)) {
        its.it_value.tv_sec++;
        its.it_value.tv_nsec -= long(kNsec);
      }
      flags = int(e.settime_flags() & (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET));
    }
    if (::timerfd_settime(fd.get(), flags, &its, nullptr) < 0) return fail(sys_error("timerfd_settime", what));
  }
  // After settime, which resets the count.
  if (uint64_t ticks = e.ticks(); ticks && ::ioctl(fd.get(), TFD_IOC_SET_TICKS, &ticks) < 0)
    return fail(sys_error("ioctl(TFD_IOC_SET_TICKS)", what).with_hint("the kernel needs CONFIG_CHECKPOINT_RESTORE"));
  CR_OK(anon::restore_status_flags(fd.get(), e.flags(), what));
  CR_OK(anon::restore_fown(fd.get(), e.fown(), what));
  return fd;
}

}  // namespace

extern const FileKind kTimerfdKind{"timerfd", TIMERFD, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files

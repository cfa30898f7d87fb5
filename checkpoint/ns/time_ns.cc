#include "checkpoint/ns/time_ns.h"

#include <fcntl.h>
#include <sched.h>
#include <time.h>

#include <cinttypes>
#include <cstring>
#include <string>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"
#include "timens.pb.h"

namespace crshim::ns {

namespace {

constexpr int64_t kNsec = 1000000000;

std::string image_name(uint32_t id) { return "timens-" + std::to_string(id) + ".img"; }

int64_t to_ns(int64_t sec, int64_t nsec) { return sec * kNsec + nsec; }

Result<int64_t> clock_now(clockid_t clock) {
  timespec ts{};
  if (::clock_gettime(clock, &ts) < 0) return fail(sys_error("clock_gettime", "clock " + std::to_string(clock)));
  return to_ns(ts.tv_sec, ts.tv_nsec);
}

void set(timespec_entry& e, int64_t ns) {
  e.set_tv_sec(uint64_t(ns / kNsec));
  e.set_tv_nsec(uint64_t(ns % kNsec));
}

// "monotonic S N" / "boottime S N" lines of /proc/PID/timens_offsets, in nanoseconds.
Status read_offsets(pid_t pid, int64_t& monotonic, int64_t& boottime) {
  std::string path = "/proc/" + std::to_string(pid) + "/timens_offsets";
  auto text = CR_TRY(sys::read_file(path));
  int found = 0;
  for (auto line : sys::split(text, '\n')) {
    auto f = sys::split(line, ' ');
    int64_t sec, nsec;
    if (f.size() != 3 || !sys::parse_i64(f[1], sec) || !sys::parse_i64(f[2], nsec))
      return fail(make_error(Errc::corrupt_image, "parse", path, "unexpected line '" + std::string(line) + "'"));
    if (f[0] == "monotonic") monotonic = to_ns(sec, nsec), found |= 1;
    else if (f[0] == "boottime") boottime = to_ns(sec, nsec), found |= 2;
  }
  if (found != 3) return fail(make_error(Errc::corrupt_image, "parse", path, "monotonic or boottime offset missing"));
  return {};
}

// One "CLOCK SECONDS NANOSECONDS" line with the nanoseconds in [0, 1e9), as the kernel wants them.
std::string offset_line(const char* clock, int64_t ns) {
  int64_t sec = ns / kNsec, nsec = ns % kNsec;
  if (nsec < 0) sec -= 1, nsec += kNsec;
  return std::string(clock) + " " + std::to_string(sec) + " " + std::to_string(nsec) + "\n";
}

}  // namespace

std::string time_ns_problem(pid_t pid) {
  auto active = sys::read_link("/proc/" + std::to_string(pid) + "/ns/time");
  auto children = sys::read_link("/proc/" + std::to_string(pid) + "/ns/time_for_children");
  if (!active || !children || *active == *children) return "";  // gone, or no time namespaces: nothing to refuse
  return "its children would be born in another time namespace than its own (" + *children + ")";
}

Status dump_time_ns(pid_t pid, uint32_t id, int images_dir) {
  int64_t monotonic = 0, boottime = 0;
  CR_OK(read_offsets(pid, monotonic, boottime));
  timens_entry e;
  set(*e.mutable_monotonic(), CR_TRY(clock_now(CLOCK_MONOTONIC)) + monotonic);
  set(*e.mutable_boottime(), CR_TRY(clock_now(CLOCK_BOOTTIME)) + boottime);
  return image::write_single(images_dir, image_name(id), image::kind(image::Type::timens), e);
}

Result<ChildTimeNamespace> ChildTimeNamespace::enter(int images_dir, uint32_t id, Logger& log) {
  std::string name = image_name(id);
  auto rd = CR_TRY(image::Reader::open(images_dir, name, image::kind(image::Type::timens)));
  timens_entry e;
  CR_OK(rd.read_one(e));
  for (const auto* t : {&e.monotonic(), &e.boottime()})
    if (t->tv_nsec() >= uint64_t(kNsec) || t->tv_sec() > uint64_t(INT64_MAX / kNsec) - 1)
      return fail(make_error(Errc::corrupt_image, "validate", name, "clock value out of range"));
  ChildTimeNamespace ns;
  ns.log_ = &log;
  ns.own_ = CR_TRY(sys::open("/proc/self/ns/time", O_RDONLY));
  // Offsets are taken now, just before the first task is born, so the clocks lose as little as possible.
  int64_t monotonic = to_ns(int64_t(e.monotonic().tv_sec()), int64_t(e.monotonic().tv_nsec())) - CR_TRY(clock_now(CLOCK_MONOTONIC));
  int64_t boottime = to_ns(int64_t(e.boottime().tv_sec()), int64_t(e.boottime().tv_nsec())) - CR_TRY(clock_now(CLOCK_BOOTTIME));
  if (::unshare(CLONE_NEWTIME) < 0)
    return fail(sys_error("unshare(CLONE_NEWTIME)", name).with_hint("time namespaces need Linux 5.6 and CAP_SYS_ADMIN"));
  std::string offsets = offset_line("monotonic", monotonic) + offset_line("boottime", boottime);
  if (Status st = sys::write_file("/proc/self/timens_offsets", offsets); !st) return fail(st.error().within(name));
  LOG_INFO(log, "Time namespace for the restored tree: offsets %s", offsets.c_str());
  return ns;
}

ChildTimeNamespace::~ChildTimeNamespace() {
  if (own_ && ::setns(own_.get(), CLONE_NEWTIME) < 0 && log_)
    LOG_WARN(*log_, "Can't return to crshim's own time namespace: %s", strerror(errno));
}

}  // namespace crshim::ns

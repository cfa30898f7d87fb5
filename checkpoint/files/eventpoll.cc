// Epoll instances. The kernel keys each watched item by (file, fd number) in the task that added it,
// so the instance is created in crshim and its targets are added by the task itself once its whole
// fd table is back (finish()). A target must be an fd of the task that still refers to the watched file.
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

constexpr const char* kKind = "epoll";

bool matches(const OpenFd& f) { return f.link == "anon_inode:[eventpoll]"; }

// Whether fd `t.tfd` of the task is still the file the epoll watches under that number.
bool target_is_fd(const OpenFd& ep, const proc::EpollTarget& t) {
  kcmp_epoll_slot slot{uint32_t(ep.fd), uint32_t(t.tfd), 0};
  return ::syscall(SYS_kcmp, ep.pid, ep.pid, KCMP_EPOLL_TFD, t.tfd, &slot) == 0;
}

// Why target `t` of epoll `ep` keeps the epoll from being dumped ("" when it does not).
std::string target_problem(const OpenFd& ep, const proc::EpollTarget& t, bool shell_job) {
  OpenFd tf;
  tf.pid = ep.pid;
  tf.fd = t.tfd;
  std::string path = proc::proc_dir(ep.pid) + "/fd/" + std::to_string(t.tfd);
  auto link = sys::read_link(path);
  if (!link) return "is closed (the epoll still watches the file that was there: EPOLL_CTL_DEL it first)";
  tf.link = *link;
  if (!target_is_fd(ep, t)) return "(" + tf.link + ") is not the file the epoll watches under that number";
  if (::stat(path.c_str(), &tf.st) < 0) tf.st = {};
  for (const auto& k : file_kinds()) {
    if (!k.matches(tf)) continue;
    if (std::string why = k.unsupported(tf, shell_job); !why.empty()) return "(" + why + ") cannot be dumped";
    if (!k.dump) return "(" + std::string(k.name) + ") cannot be dumped yet";
    return "";
  }
  return "(unknown object " + tf.link + ") cannot be dumped";
}

std::string unsupported(const OpenFd& f, bool shell_job) {
  auto info = proc::read_fdinfo(f.pid, f.fd);
  if (!info) return "epoll (" + info.error().render() + ")";
  auto targets = proc::parse_epoll_targets(*info, "fdinfo of " + f.name());
  if (!targets) return "epoll (" + targets.error().render() + ")";
  std::string bad;
  for (const auto& t : *targets) {
    std::string why = target_problem(f, t, shell_job);
    if (why.empty()) continue;
    bad += (bad.empty() ? "" : "; ") + std::string("target fd ") + std::to_string(t.tfd) + " " + why;
  }
  return bad.empty() ? "" : "epoll whose " + bad;
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) {
    anon::remember(f, files, kKind, id);
    return id;
  }
  auto targets = CR_TRY(proc::parse_epoll_targets(f.info, "fdinfo of " + f.name()));
  auto stolen = CR_TRY(f.steal());
  file_entry fe;
  fe.set_type(EVENTPOLL);
  fe.set_id(0);
  eventpoll_file_entry* e = fe.mutable_epfd();
  e->set_id(0);
  e->set_flags(f.open_flags());
  *e->mutable_fown() = CR_TRY(anon::dump_fown(stolen.get(), f.name()));
  for (const auto& t : targets) {
    // Checked again now that the task is frozen: the fd table may have changed since the first check.
    if (!target_is_fd(f, t))
      return fail(make_error(Errc::unsupported, "dump", f.name(),
                             "epoll target fd " + std::to_string(t.tfd) +
                                 " was closed or now refers to another file than the one watched")
                      .with_hint("keep the fds registered with epoll open (or EPOLL_CTL_DEL them) before checkpointing"));
    eventpoll_tfd_entry* te = e->add_tfd();
    te->set_id(0);
    te->set_tfd(uint32_t(t.tfd));
    te->set_events(t.events);
    te->set_data(t.data);
    te->set_dev(t.sdev);
    te->set_inode(t.ino);
    te->set_pos(t.pos);
  }
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t i) { x.mutable_epfd()->set_id(i); }));
  anon::remember(f, files, kKind, id);
  return id;
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles&) {
  std::string what = anon::file_name(kKind, fe.id());
  if (!fe.has_epfd()) return fail(make_error(Errc::corrupt_image, "restore", what, "no eventpoll payload"));
  UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!fd) return fail(sys_error("epoll_create1", what));
  CR_OK(anon::restore_status_flags(fd.get(), fe.epfd().flags(), what));
  CR_OK(anon::restore_fown(fd.get(), fe.epfd().fown(), what));
  return fd;
}

Status finish(const file_entry& fe, int fd, kernel::Remote& r, RestoreFiles& files) {
  // One instance may sit at several fds (dup): its targets go in once.
  auto& done = files.data()["epoll targets added"];
  if (!done.emplace(fe.id(), "").second) return {};
  for (const auto& t : fe.epfd().tfd()) {
    epoll_event ev{};
    ev.events = t.events();
    ev.data.u64 = t.data();
    uint64_t addr = CR_TRY(r.put(&ev, sizeof ev));
    auto rc = r.call(SYS_epoll_ctl, fd, EPOLL_CTL_ADD, long(t.tfd()), long(addr));
    if (!rc)
      return fail(rc.error().within("epoll target fd " + std::to_string(t.tfd()) + " of " + anon::file_name(kKind, fe.id())));
  }
  return {};
}

}  // namespace

extern const FileKind kEventpollKind{"epoll", EVENTPOLL, matches, unsupported, dump, open, finish};

}  // namespace crshim::files

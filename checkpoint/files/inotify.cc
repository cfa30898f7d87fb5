// Inotify instances: each watch (wd, mask, watched inode). The inode is found again through its file
// handle and recorded by path; restore adds the watches in wd order, stepping the instance's wd counter
// (the kernel hands wds out increasingly) until each gets its old number. Events queued at dump time
// are not kept (as in CRIU).
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/anon_fhandle.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

constexpr const char* kKind = "inotify";
// wd numbers restore will step through to reach a watch's old number.
constexpr uint32_t kMaxWd = 1u << 22;

bool matches(const OpenFd& f) { return f.link == "anon_inode:inotify"; }

std::string watch_name(int wd) { return "inotify watch " + std::to_string(wd); }

std::string unsupported(const OpenFd& f, bool) {
  auto info = proc::read_fdinfo(f.pid, f.fd);
  if (!info) return "inotify (" + info.error().render() + ")";
  auto watches = proc::parse_inotify(*info, "fdinfo of " + f.name());
  if (!watches) return "inotify (" + watches.error().render() + ")";
  std::string bad;
  for (const auto& w : *watches) {
    std::string why;
    if (w.fhandle_bytes <= 0) why = "is on a filesystem without file handles";
    else if (uint32_t(w.wd) > kMaxWd) why = "has a wd too large to recreate";
    if (!why.empty()) bad += (bad.empty() ? "" : "; ") + watch_name(w.wd) + " " + why;
  }
  return bad.empty() ? "" : "inotify whose " + bad;
}

// The path of the watched inode (crshim's view) and the mount it was found on.
Result<std::pair<std::string, int>> resolve(const OpenFd& f, const proc::InotifyWatch& w,
                                            const std::vector<proc::MountInfo>& mounts) {
  std::string what = watch_name(w.wd) + " of " + f.name();
  auto handle = CR_TRY(anon::handle_from_hex(w.f_handle, w.fhandle_bytes, what));
  int mnt_id = -1;
  auto fd = CR_TRY(anon::open_by_handle(mounts, proc::proc_dir(f.pid) + "/root", w.sdev, w.fhandle_type, handle,
                                        w.ino, &mnt_id, what));
  auto link = sys::read_link("/proc/self/fd/" + std::to_string(fd.get()));
  if (!link) return fail(link.error());
  const std::string& path = *link;
  if (!path.starts_with('/') || path.ends_with(" (deleted)"))
    return fail(make_error(Errc::unsupported, "dump", what, "the watched inode has no path (" + path + ")")
                    .with_hint("inotify watches on deleted files cannot be restored"));
  return std::make_pair(path, mnt_id);
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) {
    anon::remember(f, files, kKind, id);
    return id;
  }
  auto watches = CR_TRY(proc::parse_inotify(f.info, "fdinfo of " + f.name()));
  auto stolen = CR_TRY(f.steal());
  file_entry fe;
  fe.set_type(INOTIFY);
  fe.set_id(0);
  inotify_file_entry* e = fe.mutable_ify();
  e->set_id(0);
  e->set_flags(f.open_flags());
  *e->mutable_fown() = CR_TRY(anon::dump_fown(stolen.get(), f.name()));
  if (!watches.empty()) {
    auto mounts = CR_TRY(proc::read_mountinfo(f.pid));
    for (const auto& w : watches) {
      std::string what = watch_name(w.wd) + " of " + f.name();
      if (w.fhandle_bytes <= 0)
        return fail(make_error(Errc::unsupported, "dump", what, "the filesystem gives no file handle for the watched inode"));
      auto [path, mnt_id] = CR_TRY(resolve(f, w, mounts));
      inotify_wd_entry* we = e->add_wd();
      we->set_id(0);
      we->set_i_ino(w.ino);
      we->set_mask(w.mask);
      we->set_ignored_mask(w.ignored_mask);
      we->set_s_dev(w.sdev);
      we->set_wd(uint32_t(w.wd));
      fh_entry fh = anon::to_fh_entry(w.fhandle_type, CR_TRY(anon::handle_from_hex(w.f_handle, w.fhandle_bytes, what)));
      fh.set_path(path);
      if (mnt_id >= 0) fh.set_mnt_id(uint32_t(mnt_id));
      *we->mutable_f_handle() = std::move(fh);
    }
  }
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t i) {
    inotify_file_entry* e = x.mutable_ify();
    e->set_id(i);
    for (auto& w : *e->mutable_wd()) w.set_id(i);
  }));
  anon::remember(f, files, kKind, id);
  return id;
}

// Reads away queued events (the IN_IGNORED ones our own removals cause).
void drain(int fd) {
  alignas(inotify_event) char buf[65536];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

// The path inotify_add_watch gets for the watched inode: the inode itself through its handle when it
// resolves here (held open in `held`), else the recorded path.
std::string watch_path(const inotify_wd_entry& w, const std::vector<proc::MountInfo>& mounts, UniqueFd& held,
                       const std::string& what) {
  const fh_entry& fh = w.f_handle();
  if (auto bytes = anon::handle_bytes(fh, what)) {
    auto fd = anon::open_by_handle(mounts, "", w.s_dev(), int(fh.type()), *bytes, w.i_ino(), nullptr, what);
    if (fd) {
      held = std::move(*fd);
      return "/proc/self/fd/" + std::to_string(held.get());
    }
  }
  return fh.path();
}

Status add_watches(int fd, const inotify_file_entry& e, const std::string& what) {
  std::vector<const inotify_wd_entry*> order;
  for (const auto& w : e.wd()) order.push_back(&w);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->wd() < b->wd(); });
  std::vector<proc::MountInfo> mounts;
  if (!order.empty()) mounts = CR_TRY(proc::read_mountinfo(getpid()));
  std::set<int> added;
  unsigned removed = 0;
  for (const auto* w : order) {
    std::string wname = watch_name(int(w->wd())) + " of " + what;
    if (w->wd() == 0 || w->wd() > kMaxWd || added.count(int(w->wd())))
      return fail(make_error(Errc::corrupt_image, "restore", wname, "bad or duplicate wd"));
    UniqueFd held;
    std::string path = watch_path(*w, mounts, held, wname);
    if (path.empty())
      return fail(make_error(Errc::corrupt_image, "restore", wname, "neither a usable file handle nor a path"));
    for (;;) {
      int got = ::inotify_add_watch(fd, path.c_str(), w->mask());
      if (got < 0)
        return fail(sys_error("inotify_add_watch", wname, w->f_handle().path())
                        .with_hint("the watched file must exist at restore as it did at dump"));
      if (got == int(w->wd())) break;
      if (added.count(got))
        return fail(make_error(Errc::conflict, "restore", wname,
                               w->f_handle().path() + " is now the same inode as watch " + std::to_string(got)));
      if (got > int(w->wd()))
        return fail(make_error(Errc::internal, "restore", wname, "the kernel gave wd " + std::to_string(got) +
                                                                     ", past the wanted one"));
      // Too early: give the number up; the next add gets the following one.
      if (::inotify_rm_watch(fd, got) < 0) return fail(sys_error("inotify_rm_watch", wname));
      if (++removed % 1024 == 0) drain(fd);
    }
    added.insert(int(w->wd()));
  }
  drain(fd);
  return {};
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles&) {
  std::string what = anon::file_name(kKind, fe.id());
  if (!fe.has_ify()) return fail(make_error(Errc::corrupt_image, "restore", what, "no inotify payload"));
  const inotify_file_entry& e = fe.ify();
  UniqueFd fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!fd) return fail(sys_error("inotify_init1", what));
  CR_OK(add_watches(fd.get(), e, what));
  CR_OK(anon::restore_status_flags(fd.get(), e.flags(), what));
  CR_OK(anon::restore_fown(fd.get(), e.fown(), what));
  return fd;
}

}  // namespace

extern const FileKind kInotifyKind{"inotify", INOTIFY, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files

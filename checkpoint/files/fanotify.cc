// Fanotify groups: their init flags, event-file flags and marks on inodes (found again through their
// file handles, as inotify's) and on mounts (by mount point). Filesystem marks (FAN_MARK_FILESYSTEM),
// which CRIU's format cannot describe, and marks for permission events, which would hang the dump, are
// refused. Queued events are not kept (as in CRIU).
#include <fcntl.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/anon_fhandle.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files {

namespace {

constexpr const char* kKind = "fanotify";
// Permission events (FAN_OPEN_PERM, FAN_ACCESS_PERM, FAN_OPEN_EXEC_PERM, FAN_PRE_ACCESS): a frozen
// listener cannot answer them, so crshim's own opens on the marked objects would hang.
constexpr uint64_t kPermissionEvents = 0x00010000 | 0x00020000 | 0x00040000 | 0x00100000;

bool matches(const OpenFd& f) { return f.link == "anon_inode:[fanotify]"; }

// One "fanotify ..." line of fdinfo as key -> value ("ino" -> "a723d2").
using Fields = std::map<std::string, std::string>;

struct Group {
  uint32_t flags = 0;        // fanotify_init flags
  uint32_t event_flags = 0;  // fanotify_init event_f_flags
  std::vector<Fields> marks;
};

Result<uint64_t> hex_field(const Fields& f, const std::string& key, const std::string& what) {
  auto it = f.find(key);
  if (it == f.end() || it->second.empty())
    return fail(make_error(Errc::corrupt_image, "parse", what, "no " + key + " in a fanotify line"));
  char* end = nullptr;
  uint64_t v = strtoull(it->second.c_str(), &end, 16);
  if (*end) return fail(make_error(Errc::corrupt_image, "parse", what, "bad " + key + ": " + it->second));
  return v;
}

Result<Group> parse(const proc::FdInfo& info, const std::string& what) {
  Group g;
  bool header = false;
  for (const auto& line : info.extra) {
    if (!line.starts_with("fanotify ")) continue;
    Fields f;
    size_t at = 9;
    while (at < line.size()) {
      size_t end = line.find(' ', at);
      if (end == std::string::npos) end = line.size();
      std::string tok = line.substr(at, end - at);
      if (auto colon = tok.find(':'); colon != std::string::npos) f[tok.substr(0, colon)] = tok.substr(colon + 1);
      at = end + 1;
    }
    if (f.count("event-flags")) {
      g.flags = uint32_t(CR_TRY(hex_field(f, "flags", what)));
      g.event_flags = uint32_t(CR_TRY(hex_field(f, "event-flags", what)));
      header = true;
    } else {
      g.marks.push_back(std::move(f));
    }
  }
  if (!header) return fail(make_error(Errc::corrupt_image, "parse", what, "no fanotify flags line"));
  return g;
}

std::string mark_name(const Fields& m) {
  if (m.count("ino")) return "fanotify mark on inode " + m.at("ino");
  if (m.count("mnt_id")) return "fanotify mark on mount " + m.at("mnt_id");
  return "fanotify filesystem mark";
}

std::string unsupported(const OpenFd& f, bool) {
  auto info = proc::read_fdinfo(f.pid, f.fd);
  if (!info) return "fanotify (" + info.error().render() + ")";
  auto g = parse(*info, "fdinfo of " + f.name());
  if (!g) return "fanotify (" + g.error().render() + ")";
  std::string bad;
  for (const auto& m : g->marks) {
    std::string why;
    if (m.count("ino")) {
      auto bytes = m.find("fhandle-bytes");
      if (bytes == m.end() || strtol(bytes->second.c_str(), nullptr, 16) <= 0) why = "is on a filesystem without file handles";
    } else if (!m.count("mnt_id")) {
      why = "(FAN_MARK_FILESYSTEM), which the image format cannot describe";
    }
    auto mask = m.find("mask");
    if (why.empty() && mask != m.end() && (strtoull(mask->second.c_str(), nullptr, 16) & kPermissionEvents))
      why = "asks for permission events, which the frozen listener could not answer during the dump";
    if (!why.empty()) bad += (bad.empty() ? "" : "; ") + mark_name(m) + " " + why;
  }
  return bad.empty() ? "" : bad;
}

Status dump_inode_mark(const OpenFd& f, const Fields& m, const std::vector<proc::MountInfo>& mounts,
                       fanotify_mark_entry& e) {
  std::string what = mark_name(m) + " of " + f.name();
  uint64_t ino = CR_TRY(hex_field(m, "ino", what));
  uint32_t sdev = uint32_t(CR_TRY(hex_field(m, "sdev", what)));
  int bytes = int(CR_TRY(hex_field(m, "fhandle-bytes", what)));
  int type = int(CR_TRY(hex_field(m, "fhandle-type", what)));
  auto hex = m.find("f_handle");
  std::string handle = CR_TRY(anon::handle_from_hex(hex == m.end() ? "" : hex->second, bytes, what));
  int mnt_id = -1;
  auto fd = CR_TRY(anon::open_by_handle(mounts, proc::proc_dir(f.pid) + "/root", sdev, type, handle, ino, &mnt_id, what));
  auto path = CR_TRY(sys::read_link("/proc/self/fd/" + std::to_string(fd.get())));
  if (!path.starts_with('/') || path.ends_with(" (deleted)"))
    return fail(make_error(Errc::unsupported, "dump", what, "the marked inode has no path (" + path + ")")
                    .with_hint("fanotify marks on deleted files cannot be restored"));
  e.set_type(INODE);
  e.set_s_dev(sdev);
  fanotify_inode_mark_entry* ie = e.mutable_ie();
  ie->set_i_ino(ino);
  fh_entry fh = anon::to_fh_entry(type, handle);
  fh.set_path(path);
  if (mnt_id >= 0) fh.set_mnt_id(uint32_t(mnt_id));
  *ie->mutable_f_handle() = std::move(fh);
  return {};
}

Status dump_mount_mark(const OpenFd& f, const Fields& m, const std::vector<proc::MountInfo>& mounts,
                       fanotify_mark_entry& e) {
  std::string what = mark_name(m) + " of " + f.name();
  int mnt_id = int(CR_TRY(hex_field(m, "mnt_id", what)));
  const proc::MountInfo* mount = nullptr;
  for (const auto& mi : mounts)
    if (mi.mnt_id == mnt_id) mount = &mi;
  if (!mount)
    return fail(make_error(Errc::unsupported, "dump", what, "the mount is not in the task's mount namespace"));
  e.set_type(MOUNT);
  e.set_s_dev((mount->major << 20) | mount->minor);
  fanotify_mount_mark_entry* me = e.mutable_me();
  me->set_mnt_id(uint32_t(mnt_id));
  me->set_path(mount->mount_point);
  return {};
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) {
    anon::remember(f, files, kKind, id);
    return id;
  }
  Group g = CR_TRY(parse(f.info, "fdinfo of " + f.name()));
  auto stolen = CR_TRY(f.steal());
  file_entry fe;
  fe.set_type(FANOTIFY);
  fe.set_id(0);
  fanotify_file_entry* e = fe.mutable_ffy();
  e->set_id(0);
  e->set_flags(f.open_flags());
  *e->mutable_fown() = CR_TRY(anon::dump_fown(stolen.get(), f.name()));
  e->set_faflags(g.flags);
  e->set_evflags(g.event_flags);
  if (!g.marks.empty()) {
    auto mounts = CR_TRY(proc::read_mountinfo(f.pid));
    for (const auto& m : g.marks) {
      std::string what = mark_name(m) + " of " + f.name();
      fanotify_mark_entry* me = e->add_mark();
      me->set_id(0);
      me->set_mflags(uint32_t(CR_TRY(hex_field(m, "mflags", what))));
      me->set_mask(uint32_t(CR_TRY(hex_field(m, "mask", what))));
      me->set_ignored_mask(uint32_t(CR_TRY(hex_field(m, "ignored_mask", what))));
      if (m.count("ino")) CR_OK(dump_inode_mark(f, m, mounts, *me));
      else if (m.count("mnt_id")) CR_OK(dump_mount_mark(f, m, mounts, *me));
      else return fail(make_error(Errc::unsupported, "dump", what, "filesystem marks cannot be recorded"));
    }
  }
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& x, uint32_t i) {
    fanotify_file_entry* e = x.mutable_ffy();
    e->set_id(i);
    for (auto& m : *e->mutable_mark()) m.set_id(i);
  }));
  anon::remember(f, files, kKind, id);
  return id;
}

// The object a restored mark goes on, held open in `held`, as a path fanotify_mark can take.
Result<std::string> mark_target(const fanotify_mark_entry& m, const std::vector<proc::MountInfo>& mounts,
                                RestoreFiles& files, UniqueFd& held, const std::string& what) {
  if (m.type() == INODE) {
    if (!m.has_ie()) return fail(make_error(Errc::corrupt_image, "restore", what, "inode mark without inode"));
    const fh_entry& fh = m.ie().f_handle();
    if (auto bytes = anon::handle_bytes(fh, what)) {
      auto fd = anon::open_by_handle(mounts, "", m.s_dev(), int(fh.type()), *bytes, m.ie().i_ino(), nullptr, what);
      if (fd) held = std::move(*fd);
    }
    if (!held) {
      if (fh.path().empty())
        return fail(make_error(Errc::corrupt_image, "restore", what, "neither a usable file handle nor a path"));
      auto fd = files.open_path(fh.path(), O_PATH);
      if (!fd) return fail(fd.error().within(what).with_hint("the marked file must exist at restore as it did at dump"));
      held = std::move(*fd);
    }
  } else if (m.type() == MOUNT) {
    if (!m.has_me() || m.me().path().empty())
      return fail(make_error(Errc::unsupported, "restore", what, "mount mark without a mount point path"));
    auto fd = files.open_path(m.me().path(), O_PATH | O_DIRECTORY);
    if (!fd) return fail(fd.error().within(what).with_hint("the marked mount must exist at restore"));
    held = std::move(*fd);
  } else {
    return fail(make_error(Errc::corrupt_image, "restore", what, "unknown mark type"));
  }
  return "/proc/self/fd/" + std::to_string(held.get());
}

Status add_marks(int fd, const fanotify_file_entry& e, RestoreFiles& files, const std::string& what) {
  std::vector<proc::MountInfo> mounts;
  if (e.mark_size()) mounts = CR_TRY(proc::read_mountinfo(getpid()));
  for (const auto& m : e.mark()) {
    std::string mname = std::string(m.type() == MOUNT ? "mount" : "inode") + " mark of " + what;
    UniqueFd held;
    std::string path = CR_TRY(mark_target(m, mounts, files, held, mname));
    // mflags are FAN_MARK_* flags (FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE, FAN_MARK_IGNORE).
    unsigned flags = FAN_MARK_ADD | (m.type() == MOUNT ? FAN_MARK_MOUNT : 0);
    unsigned mflags = m.mflags() & (FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE);
    unsigned ignore = (m.mflags() & FAN_MARK_IGNORE) == FAN_MARK_IGNORE ? FAN_MARK_IGNORE : FAN_MARK_IGNORED_MASK;
    if (m.mask() && ::fanotify_mark(fd, flags | (m.mflags() & FAN_MARK_EVICTABLE), m.mask(), AT_FDCWD, path.c_str()) < 0)
      return fail(sys_error("fanotify_mark", mname, "mask " + std::to_string(m.mask())));
    if (m.ignored_mask() && ::fanotify_mark(fd, flags | mflags | ignore, m.ignored_mask(), AT_FDCWD, path.c_str()) < 0)
      return fail(sys_error("fanotify_mark", mname, "ignored mask " + std::to_string(m.ignored_mask())));
  }
  return {};
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles& files) {
  std::string what = anon::file_name(kKind, fe.id());
  if (!fe.has_ffy()) return fail(make_error(Errc::corrupt_image, "restore", what, "no fanotify payload"));
  const fanotify_file_entry& e = fe.ffy();
  UniqueFd fd(::fanotify_init(e.faflags() | FAN_CLOEXEC | FAN_NONBLOCK, e.evflags()));
  if (!fd) return fail(sys_error("fanotify_init", what));
  CR_OK(add_marks(fd.get(), e, files, what));
  // Anything the marks' own setup queued (crshim opens nothing through them, but be sure) goes.
  alignas(fanotify_event_metadata) char buf[8192];
  for (ssize_t n; (n = ::read(fd.get(), buf, sizeof buf)) > 0;) {
    for (auto* ev = reinterpret_cast<fanotify_event_metadata*>(buf); FAN_EVENT_OK(ev, n); ev = FAN_EVENT_NEXT(ev, n))
      if (ev->fd >= 0) ::close(ev->fd);
  }
  CR_OK(anon::restore_status_flags(fd.get(), e.flags(), what));
  CR_OK(anon::restore_fown(fd.get(), e.fown(), what));
  return fd;
}

}  // namespace

extern const FileKind kFanotifyKind{"fanotify", FANOTIFY, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files

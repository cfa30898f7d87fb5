// Regular files, directories and device nodes named by a path: reopened with the same flags and position.
// Deleted ones come back from a ghost image or, with --link-remap, through a link made at dump.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/files/link_remap.h"
#include "checkpoint/files/reg_ghost.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/ns/userns.h"
#include "ghost-file.pb.h"
#include "remap-file-path.pb.h"

namespace crshim::files {

// Open flags that reopen an existing file as the task had it: no creation, and an O_TMPFILE file (whose
// flags keep O_TMPFILE, which includes O_DIRECTORY) reopened as the regular file it is.
static int reopen_flags(uint32_t recorded) {
  int flags = int(recorded) & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY);
  if ((flags & O_TMPFILE) == O_TMPFILE) flags &= ~O_TMPFILE;
  return flags;
}

namespace {

bool matches(const OpenFd& f) { return !f.link.empty() && f.link[0] == '/'; }

constexpr char kDeleted[] = " (deleted)";

// The fd's name was unlinked (the inode may still have other links).
bool unlinked(const OpenFd& f) {
  size_t n = sizeof kDeleted - 1;
  return f.link.size() > n && f.link.compare(f.link.size() - n, n, kDeleted) == 0;
}

// No name reaches the inode any more.
bool deleted(const OpenFd& f) { return unlinked(f) && f.st.st_nlink == 0; }

// The kernel will not link this file there (no links left and not a fresh O_TMPFILE file, the
// directory gone, read-only, full or on another filesystem): a ghost may still do.
bool link_refused(const Error& e) {
  if (e.code == Errc::unsupported) return true;  // no directory to link into
  if (e.code != Errc::system) return false;
  for (int err : {ENOENT, ENOTDIR, EXDEV, EPERM, EACCES, EMLINK, EROFS, ENOSPC, EDQUOT})
    if (e.err == err) return true;
  return false;
}

uint64_t inode_key(const struct stat& st) { return uint64_t(st.st_ino) ^ (uint64_t(st.st_dev) << 44); }

std::string unsupported(const OpenFd& f, bool) {
  if (deleted(f) && !S_ISREG(f.st.st_mode)) return "deleted non-regular file";
  if (S_ISSOCK(f.st.st_mode)) return "socket";
  return "";
}

Status write_ghost_image(int fd, const struct stat& st, const std::string& what, uint32_t ghost_id,
                         DumpFiles& files);

// A deleted regular file whose contents go into ghost-file-<id>.img (data chunks only, so holes stay
// holes); remap-fpath.img points REG entry `file_id` at the ghost. `open_data` gives a readable fd of
// the file and is only called for the first user of an inode.
template <typename OpenData>
Status add_ghost(const struct stat& st, const std::string& what, OpenData&& open_data, uint32_t file_id,
                 DumpFiles& files) {
  // What is stored is the data, not the holes: that is what the limit bounds.
  uint64_t bytes = std::min<uint64_t>(uint64_t(st.st_size), uint64_t(st.st_blocks) * 512);
  if (bytes > files.ghost_limit())
    return fail(make_error(Errc::unsupported, "dump", what,
                           std::to_string(bytes) + " bytes of data, more than the ghost limit of " +
                               std::to_string(files.ghost_limit()))
                    .with_hint(files.link_remap() ? "raise --ghost-limit (--link-remap cannot help: the kernel links a file "
                                                    "without links only if it is an O_TMPFILE file never linked before)"
                                                  : "raise --ghost-limit"));
  // One ghost per inode: open files and mappings of one deleted file share it.
  auto& ghosts = files.seen()["ghost"];
  auto known = ghosts.find(inode_key(st));
  uint32_t ghost_id = known != ghosts.end() ? known->second : uint32_t(ghosts.size() + 1);
  if (known == ghosts.end()) {
    ghosts[inode_key(st)] = ghost_id;
    UniqueFd data = CR_TRY(open_data());
    CR_OK(write_ghost_image(data.get(), st, what, ghost_id, files));
  }
  auto remap = CR_TRY(files.writer(image::kRemapFpathFile, image::Type::remap_fpath));
  remap_file_path_entry r;
  r.set_orig_id(file_id);
  r.set_remap_id(ghost_id);
  r.set_remap_type(GHOST);
  return remap->write(r);
}

// A regular file whose name `path` (as task `pid` saw it) was unlinked, REG entry `file_id`. With
// --link-remap it is linked back under a new name when the kernel allows that (it still has other links,
// or it is an O_TMPFILE file never linked), once per inode; else, when no link is left, its data goes
// to a ghost image. A file unlinked under this name but linked elsewhere cannot be a ghost: a copy would
// no longer be the file the other names reach.
template <typename OpenData>
Status add_deleted(const struct stat& st, const std::string& path, pid_t pid, int mnt_id, const std::string& what,
                   OpenData&& open_data, uint32_t file_id, DumpFiles& files) {
  std::optional<Error> link_error;
  if (files.link_remap()) {
    auto& links = files.seen()["link-remap"];  // inode -> REG id of its link (0: the link was refused)
    auto known = links.find(inode_key(st));
    if (known == links.end()) {
      UniqueFd data = CR_TRY(open_data());
      auto linked = link_remap(data.get(), st, path, pid, mnt_id, files);
      if (!linked && !link_refused(linked.error())) return fail(linked.error());
      if (!linked) link_error = linked.error();
      known = links.emplace(inode_key(st), linked.value_or(0)).first;
    }
    if (known->second) {
      auto remap = CR_TRY(files.writer(image::kRemapFpathFile, image::Type::remap_fpath));
      remap_file_path_entry r;
      r.set_orig_id(file_id);
      r.set_remap_id(known->second);
      r.set_remap_type(LINKED);
      return remap->write(r);
    }
  }
  if (st.st_nlink == 0) return add_ghost(st, what, std::forward<OpenData>(open_data), file_id, files);
  if (link_error) return fail(std::move(*link_error));
  return fail(make_error(Errc::unsupported, "dump", what, "unlinked under this name but still has other hard links")
                  .with_hint(files.link_remap() ? "the kernel refused to link it back" : "dump with --link-remap"));
}

Status write_ghost_image(int fd, const struct stat& st, const std::string& what, uint32_t ghost_id,
                         DumpFiles& files) {
  std::string name = image::ghost_file(ghost_id);
  auto w = CR_TRY(image::Writer::create(files.images_dir(), name, image::kind(image::Type::ghost_file)));
  ghost_file_entry g;
  auto owner = ns::owner_in_image(files.userns(), {st.st_uid, st.st_gid});
  g.set_uid(owner.uid);
  g.set_gid(owner.gid);
  g.set_mode(st.st_mode);
  g.set_dev(uint32_t(st.st_dev));
  g.set_ino(st.st_ino);
  g.mutable_atim()->set_tv_sec(uint64_t(st.st_atim.tv_sec));
  g.mutable_atim()->set_tv_usec(uint64_t(st.st_atim.tv_nsec / 1000));
  g.mutable_mtim()->set_tv_sec(uint64_t(st.st_mtim.tv_sec));
  g.mutable_mtim()->set_tv_usec(uint64_t(st.st_mtim.tv_nsec / 1000));
  g.set_chunks(true);
  g.set_size(uint64_t(st.st_size));
  CR_OK(w.write(g));
  std::string buf;
  for (off_t at = 0; at < st.st_size;) {
    off_t data = ::lseek(fd, at, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      return fail(sys_error("lseek(SEEK_DATA)", what));
    }
    off_t hole = ::lseek(fd, data, SEEK_HOLE);
    if (hole < 0) return fail(sys_error("lseek(SEEK_HOLE)", what));
    ghost_chunk_entry c;
    c.set_off(uint64_t(data));
    c.set_len(uint64_t(hole - data));
    CR_OK(w.write(c));
    buf.resize(size_t(hole - data));
    CR_OK(sys::pread_exact(fd, buf.data(), buf.size(), data, what));
    CR_OK(w.write_raw(buf));
    at = hole;
  }
  return w.close();
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
  if (unlinked(f) && S_ISREG(f.st.st_mode)) {
    std::string path = f.link.substr(0, f.link.size() - (sizeof kDeleted - 1));
    size_t before = files.table().entries().size();
    uint32_t id = files.table().add_open_reg(f.pid, f.fd, path, f.open_flags(), f.info.pos, f.st, f.info.mnt_id);
    if (files.table().entries().size() > before)  // a new file object
      CR_OK(add_deleted(f.st, path, f.pid, f.info.mnt_id, "deleted file " + f.link, [&] { return f.steal(); }, id, files));
    return id;
  }
  return files.table().add_open_reg(f.pid, f.fd, f.link, f.open_flags(), f.info.pos, f.st, f.info.mnt_id);
}

// The ghost file re-created once (at its old path when that is free, so /proc shows the same name),
// unlinked again at once; every file that used it reopens it through /proc/self/fd.
Result<int> ghost_object(uint32_t ghost_id, const std::string& path, RestoreFiles& files) {
  auto& made = files.objects()["ghost"];
  if (auto it = made.find(ghost_id); it != made.end()) return it->second.get();
  std::string name = image::ghost_file(ghost_id);
  auto r = CR_TRY(image::Reader::open(files.images_dir(), name, image::kind(image::Type::ghost_file)));
  ghost_file_entry g;
  bool got = CR_TRY(r.read(g));
  if (!got || !S_ISREG(g.mode()))
    return fail(make_error(Errc::corrupt_image, "validate", name, "no regular-file ghost entry"));
  // Created through its directory, so the name is looked up inside the restored root.
  auto slash = path.rfind('/');
  std::string dir_path = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  std::string at = slash == std::string::npos ? path : path.substr(slash + 1);
  auto dir = files.open_path(dir_path, O_PATH | O_DIRECTORY);
  if (!dir) return fail(dir.error().within("deleted file re-created for the restore"));
  int fd = ::openat(dir->get(), at.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, g.mode() & 07777);
  if (fd < 0 && errno == EEXIST) {
    at += ".crshim-ghost-" + std::to_string(ghost_id) + "-" + std::to_string(getpid());
    fd = ::openat(dir->get(), at.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, g.mode() & 07777);
  }
  if (fd < 0) return fail(sys_error("create", dir_path + at, "deleted file re-created for the restore"));
  UniqueFd own(fd);
  ::unlinkat(dir->get(), at.c_str(), 0);
  if (g.has_size() && ::ftruncate(fd, off_t(g.size())) < 0) return fail(sys_error("ftruncate", at));
  if (g.chunks()) {
    for (;;) {
      ghost_chunk_entry c;
      got = CR_TRY(r.read(c));
      if (!got) break;
      if (c.len() > (1ull << 32) || (g.has_size() && c.off() + c.len() > g.size()))
        return fail(make_error(Errc::corrupt_image, "validate", name, "chunk outside of the file"));
      std::string data = CR_TRY(r.read_raw(c.len()));
      CR_OK(sys::pwrite_all(fd, data.data(), data.size(), off_t(c.off()), at));
    }
  } else {
    std::string data = CR_TRY(r.read_raw(g.size()));
    CR_OK(sys::pwrite_all(fd, data.data(), data.size(), 0, at));
  }
  auto owner = CR_TRY(ns::owner_on_host(files.userns(), {g.uid(), g.gid()}, "deleted file " + path));
  if (::fchown(fd, owner.uid, owner.gid) < 0) return fail(sys_error("fchown", at));
  timespec times[2] = {{long(g.atim().tv_sec()), long(g.atim().tv_usec() * 1000)},
                       {long(g.mtim().tv_sec()), long(g.mtim().tv_usec() * 1000)}};
  ::futimens(fd, times);
  made[ghost_id] = std::move(own);
  return fd;
}

// The name a --link-remap link gave REG file `fe` at dump, or "" when it has none.
Result<std::string> link_for(const file_entry& fe, RestoreFiles& files) {
  const remap_file_path_entry* r = CR_TRY(files.remap_for(fe.id()));
  if (!r || r->remap_type() != LINKED) return std::string();
  files.note_link_remap(r->remap_id());
  return files.entry(r->remap_id()).reg().name();
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles& files) {
  if (files.shell_job())
    if (auto tty = open_shell_terminal(fe.reg())) return std::move(*tty);
  std::string link = CR_TRY(link_for(fe, files));
  if (!link.empty()) {
    reg_file_entry reg = fe.reg();
    reg.set_name(link);
    auto fd = open_reg_file(reg, files);
    if (!fd) return fail(fd.error().within("deleted file " + fe.reg().name() + " linked at dump as " + link));
    return fd;
  }
  uint32_t ghost = CR_TRY(files.ghost_for(fe.id()));
  if (ghost) {
    int obj = CR_TRY(ghost_object(ghost, fe.reg().name(), files));
    const auto& reg = fe.reg();
    auto fd = sys::open("/proc/self/fd/" + std::to_string(obj), reopen_flags(reg.flags()));
    if (!fd) return fail(fd.error());
    if (reg.pos() && ::lseek(fd->get(), off_t(reg.pos()), SEEK_SET) < 0) return fail(sys_error("lseek", reg.name()));
    return fd;
  }
  return open_reg_file(fe.reg(), files);
}

}  // namespace

// The file at restore must be the one that was dumped. reg_file_entry carries size and mode but no
// mtime (nor a content checksum we write), so those two are what is compared (no size is recorded for
// an append-only writer's file, which may grow meanwhile); like CRIU, the check has no option to turn
// it off (--file-validation only picks how build-ids are used, and --skip-file-rwx-check concerns
// access permissions, not whether the file changed).
static Status validate_reg_file(const reg_file_entry& reg, int fd) {
  if (reg.ext()) return {};  // an external file is whatever the caller hands in
  struct stat st;
  if (::fstat(fd, &st) < 0) return fail(sys_error("fstat", reg.name()));
  if (reg.has_size() && S_ISREG(st.st_mode) && uint64_t(st.st_size) != reg.size())
    return fail(make_error(Errc::conflict, "restore", reg.name(),
                           "the file changed since the dump: size " + std::to_string(reg.size()) +
                               " bytes expected, " + std::to_string(st.st_size) + " found")
                    .with_hint("put the file back as it was at dump time"));
  if (reg.has_mode() && reg.mode() != st.st_mode) {
    char buf[96];
    snprintf(buf, sizeof buf, "the file changed since the dump: mode 0%o expected, 0%o found", reg.mode(),
             unsigned(st.st_mode));
    return fail(make_error(Errc::conflict, "restore", reg.name(), buf)
                    .with_hint("put the file back as it was at dump time"));
  }
  return {};
}

Result<UniqueFd> open_reg_file(const reg_file_entry& reg, const RestoreFiles& files) {
  int flags = reopen_flags(reg.flags());
  auto fd = files.open_path(reg.name(), flags);
  if (!fd) return fail(fd.error().with_hint("the file must exist at restore as it did at dump"));
  CR_OK(validate_reg_file(reg, fd->get()));
  if (reg.pos() && ::lseek(fd->get(), off_t(reg.pos()), SEEK_SET) < 0) return fail(sys_error("lseek", reg.name()));
  return fd;
}

Result<uint32_t> add_mapped_file(const std::string& path, bool deleted, uint32_t flags, const struct stat& st,
                                 const std::string& data_path, const std::string& what, DumpFiles& files) {
  if (!deleted) return files.table().add_reg(path, flags, 0, st, -1, true);
  if (!S_ISREG(st.st_mode))
    return fail(make_error(Errc::unsupported, "dump", what, "mapping of a deleted non-regular file"));
  size_t before = files.table().entries().size();
  uint32_t id = files.table().add_reg(path, flags, 0, st, -1, true);
  if (files.table().entries().size() > before) {  // a new file object: give it the inode's link or ghost
    auto open_data = [&]() -> Result<UniqueFd> {
      auto fd = sys::open(data_path, O_RDONLY);
      if (!fd) return fail(fd.error().within(what));
      return fd;
    };
    // data_path is /proc/PID/map_files/...: the task whose root the path is in.
    pid_t pid = pid_t(atoi(data_path.c_str() + (data_path.starts_with("/proc/") ? 6 : 0)));
    CR_OK(add_deleted(st, path, pid > 0 ? pid : getpid(), -1, "deleted file " + path + " mapped at " + what, open_data,
                      id, files));
  }
  return id;
}

Result<UniqueFd> open_mapped_file(const file_entry& fe, uint32_t flags, RestoreFiles& files) {
  reg_file_entry reg = fe.reg();
  reg.set_flags(flags);
  reg.set_pos(0);
  std::string link = CR_TRY(link_for(fe, files));
  if (!link.empty()) reg.set_name(link);
  uint32_t ghost = CR_TRY(files.ghost_for(fe.id()));
  if (!ghost) return open_reg_file(reg, files);
  int obj = CR_TRY(ghost_object(ghost, reg.name(), files));
  // Through /proc/self/fd: a new open file of the same (unlinked) inode, with the mapping's own flags.
  return sys::open("/proc/self/fd/" + std::to_string(obj), reopen_flags(flags));
}

extern const FileKind kRegKind{"regular file", REG, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files

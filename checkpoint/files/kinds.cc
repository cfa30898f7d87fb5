#include "checkpoint/files/kinds.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"
#include "checkpoint/net/rtnl.h"
#include "remap-file-path.pb.h"

namespace crshim::files {

// Defined one per file (reg.cc, pipe.cc, ...).
extern const FileKind kPipeKind, kFifoKind, kUnixKind, kEventfdKind, kEventpollKind, kSignalfdKind,
    kTimerfdKind, kInotifyKind, kFanotifyKind, kMemfdKind, kTtyKind, kRegKind, kInetKind;

std::span<const FileKind> file_kinds() {
  // Specific kinds first: a FIFO or a tty also has a path, which the regular-file kind would take.
  static const FileKind* const kinds[] = {&kPipeKind,     &kFifoKind,   &kUnixKind,    &kInetKind,    &kEventfdKind,
                                          &kEventpollKind, &kSignalfdKind, &kTimerfdKind, &kInotifyKind, &kFanotifyKind,
                                          &kMemfdKind,    &kTtyKind,    &kRegKind};
  static const auto table = [] {
    std::array<FileKind, std::size(kinds)> t{};
    for (size_t i = 0; i < std::size(kinds); i++) t[i] = *kinds[i];
    return t;
  }();
  return table;
}

const FileKind* kind_for_type(fd_types type) {
  for (const auto& k : file_kinds())
    if (k.type == type && k.open) return &k;
  return nullptr;
}

Result<UniqueFd> OpenFd::steal() const {
  int fd = sys::pidfd_getfd(task_pidfd, this->fd, 0);
  if (fd < 0) return fail(sys_error("pidfd_getfd", name()));
  return UniqueFd(fd);
}

uint32_t OpenFd::open_flags() const { return info.flags & ~uint32_t(O_CLOEXEC); }

Result<image::Writer*> DumpFiles::writer(const std::string& name, image::Type type) {
  auto& w = writers_[name];
  if (!w) w = std::make_unique<image::Writer>(CR_TRY(image::Writer::create(images_dir_, name, image::kind(type))));
  return w.get();
}

Status DumpFiles::finish() {
  CR_OK(table_.write(images_dir_));
  for (auto& [name, w] : writers_) CR_OK(w->close());
  writers_.clear();
  return {};
}

bool DumpFiles::is_external(const std::string& key) const {
  for (const auto& k : externals_)
    if (k == key) return true;
  return false;
}

namespace {

// The --inherit-fd keys a file answers to, as CRIU spells them.
std::vector<std::string> inherit_keys(const file_entry& fe) {
  switch (fe.type()) {
    case PIPE: return {"pipe:[" + std::to_string(fe.pipe().pipe_id()) + "]"};
    case UNIXSK: return {"socket:[" + std::to_string(fe.usk().ino()) + "]"};
    case INETSK: return {"socket:[" + std::to_string(fe.isk().ino()) + "]"};
    case REG: {
      const std::string& name = fe.reg().name();
      if (fe.reg().ext()) return {name};
      // A path relative to the restored root (CRIU's form), or absolute.
      return {name.size() > 1 && name[0] == '/' ? name.substr(1) : name, name};
    }
    default: return {};
  }
}

// An inherited fd in place of file `fe`. External files are reopened through /proc/self/fd so the
// task gets its own open flags and position; everything else is the inherited open file itself.
Result<UniqueFd> use_inherited(const file_entry& fe, int fd, const std::string& key) {
  std::string what = "--inherit-fd fd[" + std::to_string(fd) + "]:" + key;
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return fail(sys_error("fcntl(F_GETFL)", what).with_hint("the inherited fd must be open in crshim"));
  if (fe.type() == PIPE && (uint32_t(fl) & O_ACCMODE) != (fe.pipe().flags() & O_ACCMODE))
    return fail(make_error(Errc::invalid_argument, "restore", what,
                           std::string("the task had the ") + ((fe.pipe().flags() & O_ACCMODE) == O_RDONLY ? "read" : "write") +
                               " end of this pipe, the inherited fd is the other end"));
  if (fe.type() == REG && fe.reg().ext()) {
    int flags = int(fe.reg().flags()) & ~(O_CREAT | O_TRUNC | O_EXCL | O_NOCTTY);
    auto reopened = sys::open("/proc/self/fd/" + std::to_string(fd), flags);
    if (!reopened) return fail(reopened.error().within(what));
    if (fe.reg().pos() && ::lseek(reopened->get(), off_t(fe.reg().pos()), SEEK_SET) < 0 && errno != ESPIPE)
      return fail(sys_error("lseek", what));
    return std::move(*reopened);
  }
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (dup < 0) return fail(sys_error("dup", what));
  return UniqueFd(dup);
}

}  // namespace

Result<std::vector<file_lock_entry>> RestoreFiles::locks_of(uint32_t vpid) {
  if (!locks_) {
    locks_.emplace();
    auto r = image::Reader::open(images_dir_, image::kFileLocksFile, image::kind(image::Type::file_locks));
    if (!r) {
      if (r.error().err != ENOENT) return fail(r.error());
    } else {
      for (;;) {
        file_lock_entry e;
        bool got = CR_TRY(r->read(e));
        if (!got) break;
        locks_->push_back(e);
        if (locks_->size() > 1000000) return fail(make_error(Errc::corrupt_image, "validate", image::kFileLocksFile, "too many locks"));
      }
    }
  }
  std::vector<file_lock_entry> out;
  for (const auto& l : *locks_)
    if (uint32_t(l.pid()) == vpid) out.push_back(l);
  return out;
}

Result<const remap_file_path_entry*> RestoreFiles::remap_for(uint32_t id) {
  if (!remaps_) {
    std::map<uint32_t, remap_file_path_entry> all;
    auto r = image::Reader::open(images_dir_, image::kRemapFpathFile, image::kind(image::Type::remap_fpath));
    if (!r) {
      if (r.error().err != ENOENT) return fail(r.error());
    } else {
      for (;;) {
        remap_file_path_entry e;
        bool got = CR_TRY(r->read(e));
        if (!got) break;
        std::string what = "remap of file " + std::to_string(e.orig_id());
        if (e.remap_type() == LINKED) {
          auto link = files_.find(e.remap_id());
          if (link == files_.end() || link->second.type() != REG || link->second.reg().name().empty())
            return fail(make_error(Errc::corrupt_image, "validate", image::kRemapFpathFile,
                                   what + ": link " + std::to_string(e.remap_id()) + " is no regular file entry"));
        } else if (e.remap_type() != GHOST) {
          return fail(make_error(Errc::unsupported, "restore", image::kRemapFpathFile,
                                 what + ": remaps of type " + remap_type_Name(e.remap_type()) + " are not supported"));
        }
        all[e.orig_id()] = e;
        if (all.size() > 1000000) return fail(make_error(Errc::corrupt_image, "validate", image::kRemapFpathFile, "too many remaps"));
      }
    }
    remaps_ = std::move(all);
  }
  auto it = remaps_->find(id);
  return it == remaps_->end() ? nullptr : &it->second;
}

Result<uint32_t> RestoreFiles::ghost_for(uint32_t id) {
  const remap_file_path_entry* r = CR_TRY(remap_for(id));
  return r && r->remap_type() == GHOST ? r->remap_id() : 0u;
}

Result<UniqueFd> RestoreFiles::socket(int family, int type, int protocol) const {
  if (netns_fd_ >= 0) return net::rtnl::socket_in(netns_fd_, family, type, protocol);
  UniqueFd fd(::socket(family, type | SOCK_CLOEXEC, protocol));
  if (!fd) return fail(sys_error("socket", "family " + std::to_string(family)));
  return fd;
}

Status RestoreFiles::socketpair(int family, int type, UniqueFd& a, UniqueFd& b) const {
  auto make = [&]() -> Status {
    int sv[2];
    if (::socketpair(family, type | SOCK_CLOEXEC, 0, sv) < 0) return fail(sys_error("socketpair", "family " + std::to_string(family)));
    a.reset(sv[0]);
    b.reset(sv[1]);
    return {};
  };
  return netns_fd_ >= 0 ? net::rtnl::in_netns(netns_fd_, make) : make();
}

Result<int> RestoreFiles::fd_for(uint32_t id) {
  if (auto it = opened_.find(id); it != opened_.end()) return it->second.get();
  auto fe = files_.find(id);
  if (fe == files_.end())
    return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile, "no file with id " + std::to_string(id)));
  for (const auto& key : inherit_keys(fe->second)) {
    auto in = inherited_.find(key);
    if (in == inherited_.end()) continue;
    auto fd = use_inherited(fe->second, in->second, key);
    if (!fd) return fail(fd.error().within("file " + std::to_string(id)));
    int raw = fd->get();
    opened_[id] = std::move(*fd);
    return raw;
  }
  if (fe->second.type() == REG && fe->second.reg().ext())
    return fail(make_error(Errc::not_found, "restore", "external file " + fe->second.reg().name(),
                           "no inherited fd for it")
                    .with_hint("pass --inherit-fd fd[N]:" + fe->second.reg().name() + " with an open fd N"));
  const FileKind* kind = kind_for_type(fe->second.type());
  if (!kind || !kind->open)
    return fail(make_error(Errc::unsupported, "restore", "file " + std::to_string(id),
                           std::string("files of type ") + fd_types_Name(fe->second.type()) + " are not supported yet"));
  auto fd = kind->open(fe->second, *this);
  if (!fd) return fail(fd.error().within("file " + std::to_string(id)));
  int raw = fd->get();
  opened_[id] = std::move(*fd);
  return raw;
}

}  // namespace crshim::files

#include "checkpoint/files/kinds.h"

#include <fcntl.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/image/catalog.h"

namespace crshim::files {

// Defined one per file (reg.cc, pipe.cc, ...).
extern const FileKind kPipeKind, kFifoKind, kUnixKind, kEventfdKind, kEventpollKind, kSignalfdKind,
    kTimerfdKind, kInotifyKind, kMemfdKind, kTtyKind, kRegKind;

std::span<const FileKind> file_kinds() {
  // Specific kinds first: a FIFO or a tty also has a path, which the regular-file kind would take.
  static const FileKind* const kinds[] = {&kPipeKind,     &kFifoKind,   &kUnixKind,    &kEventfdKind,
                                          &kEventpollKind, &kSignalfdKind, &kTimerfdKind, &kInotifyKind,
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

Result<int> RestoreFiles::fd_for(uint32_t id) {
  if (auto it = opened_.find(id); it != opened_.end()) return it->second.get();
  auto fe = files_.find(id);
  if (fe == files_.end())
    return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile, "no file with id " + std::to_string(id)));
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

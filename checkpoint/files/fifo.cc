// FIFOs: a fifo_entry keyed by the FIFO's inode plus a hidden REG entry with its path and open flags
// (CRIU's layout); queued bytes go once per FIFO into fifo-data.img. Restore opens the path read-write
// and non-blocking first, so that neither side waits for the other, refills it, and opens each file
// with its real flags through /proc.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/files/pipe_data.h"

namespace crshim::files {

namespace {

constexpr const char* kKind = "fifo";

bool matches(const OpenFd& f) { return S_ISFIFO(f.st.st_mode) && !f.link.empty() && f.link[0] == '/'; }

std::string unsupported(const OpenFd& f, bool) {
  if (f.link.size() > 10 && f.link.compare(f.link.size() - 10, 10, " (deleted)") == 0) return "deleted FIFO";
  return "";
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) return id;
  if (f.st.st_ino > UINT32_MAX)
    return fail(make_error(Errc::unsupported, "dump", f.name(),
                           "FIFO inode " + std::to_string(f.st.st_ino) + " does not fit the image's 32-bit pipe id"));
  uint32_t ino = uint32_t(f.st.st_ino);
  uint32_t flags = f.open_flags();
  UniqueFd own = CR_TRY(f.steal());
  std::string what = "FIFO " + f.link;

  // The path and flags live in a REG entry of their own, as CRIU writes them.
  file_entry re;
  re.set_type(REG);
  reg_file_entry* reg = re.mutable_reg();
  reg->set_flags(flags);
  reg->set_pos(0);
  *reg->mutable_fown() = CR_TRY(anon::dump_fown(own.get(), what));
  reg->set_name(f.link);
  if (f.info.mnt_id >= 0) reg->set_mnt_id(f.info.mnt_id);
  reg->set_mode(f.st.st_mode);
  uint32_t regf_id = CR_TRY(anon::add_file(files, std::move(re), [](file_entry& e, uint32_t id) {
    e.set_id(id);
    e.mutable_reg()->set_id(id);
  }));

  file_entry fe;
  fe.set_type(FIFO);
  fifo_entry* fi = fe.mutable_fifo();
  fi->set_pipe_id(ino);
  fi->set_regf_id(regf_id);
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& e, uint32_t id) {
    e.set_id(id);
    e.mutable_fifo()->set_id(id);
  }));
  anon::remember(f, files, kKind, id);

  CR_OK(pipes::dump_data_of(pipes::kFifoData, ino, f, own.get(), flags, files, what));
  return id;
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles& files) {
  if (!fe.has_fifo()) return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile, "FIFO entry without payload"));
  const fifo_entry& fi = fe.fifo();
  if (!fi.has_regf_id())
    return fail(make_error(Errc::unsupported, "restore", "FIFO " + std::to_string(fe.id()),
                           "FIFO without a path entry (images older than CRIU 1.x)"));
  const file_entry* re = nullptr;
  try {
    re = &files.entry(fi.regf_id());
  } catch (const std::out_of_range&) {
  }
  if (!re || re->type() != REG || !re->has_reg())
    return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile,
                           "FIFO " + std::to_string(fe.id()) + " refers to no path entry " + std::to_string(fi.regf_id())));
  const reg_file_entry& reg = re->reg();
  std::string what = "FIFO " + reg.name();

  // Held open read-write for the whole restore: opens with either access mode then never wait.
  auto& held = files.objects()[kKind];
  if (!held.count(fi.pipe_id())) {
    UniqueFd rw = CR_TRY(files.open_path(reg.name(), O_RDWR | O_NONBLOCK));
    struct stat st;
    if (::fstat(rw.get(), &st) < 0) return fail(sys_error("fstat", reg.name()));
    if (!S_ISFIFO(st.st_mode))
      return fail(make_error(Errc::conflict, "restore", reg.name(), "is no longer a FIFO")
                      .with_hint("the FIFO must exist at restore as it did at dump"));
    CR_OK(pipes::restore_data(pipes::kFifoData, fi.pipe_id(), rw.get(), files, what));
    held[fi.pipe_id()] = std::move(rw);
  }
  int flags = int(reg.flags()) & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
  UniqueFd fd = CR_TRY(sys::open("/proc/self/fd/" + std::to_string(held[fi.pipe_id()].get()), flags));
  CR_OK(anon::restore_fown(fd.get(), reg.fown(), what));
  return fd;
}

}  // namespace

extern const FileKind kFifoKind{"FIFO", FIFO, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files

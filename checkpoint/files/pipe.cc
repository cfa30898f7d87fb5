// Pipes: each open end is a pipe_entry keyed by the pipe's inode; the queued bytes are copied once
// per pipe (tee, so the task keeps them) into pipes-data.img. Restore makes one pipe per inode, refills
// it and hands out its ends; a second open file of the same end is reopened through /proc.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint/base/sys.h"
#include "checkpoint/files/anon_common.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/files/pipe_data.h"

namespace crshim::files {

namespace {

constexpr const char* kKind = "pipe";

bool matches(const OpenFd& f) { return f.link.rfind("pipe:", 0) == 0; }

// Packet mode is a property of each end that pipe_entry cannot carry (CRIU drops it).
constexpr const char* kPacketMode = "packet-mode pipe (O_DIRECT)";

std::string unsupported(const OpenFd& f, bool) {
  auto info = proc::read_fdinfo(f.pid, f.fd);
  if (info && (info->flags & O_DIRECT)) return kPacketMode;
  return "";
}

// "pipe:[1234]" -> 1234 (st_ino when stat worked).
uint64_t pipe_ino(const OpenFd& f) {
  if (f.st.st_ino) return f.st.st_ino;
  uint64_t ino = 0;
  if (f.link.size() > 7) sys::parse_u64(std::string_view(f.link).substr(6, f.link.size() - 7), ino);
  return ino;
}

Result<uint32_t> dump(const OpenFd& f, DumpFiles& files) {
  if (uint32_t id = anon::shared_id(f, files, kKind)) return id;
  uint64_t ino = pipe_ino(f);
  if (!ino || ino > UINT32_MAX)
    return fail(make_error(Errc::unsupported, "dump", f.name(), "pipe inode " + std::to_string(ino) + " does not fit the image"));
  uint32_t flags = f.open_flags();
  if (flags & O_DIRECT) return fail(make_error(Errc::unsupported, "dump", f.name(), kPacketMode));
  UniqueFd own = CR_TRY(f.steal());
  std::string what = "pipe " + std::to_string(ino);

  file_entry fe;
  fe.set_type(PIPE);
  pipe_entry* pe = fe.mutable_pipe();
  pe->set_pipe_id(uint32_t(ino));
  pe->set_flags(flags);
  *pe->mutable_fown() = CR_TRY(anon::dump_fown(own.get(), what));
  uint32_t id = CR_TRY(anon::add_file(files, std::move(fe), [](file_entry& e, uint32_t id) {
    e.set_id(id);
    e.mutable_pipe()->set_id(id);
  }));
  anon::remember(f, files, kKind, id);

  CR_OK(pipes::dump_data_of(pipes::kPipeData, uint32_t(ino), f, own.get(), flags, files, what));
  return id;
}

Result<UniqueFd> open(const file_entry& fe, RestoreFiles& files) {
  if (!fe.has_pipe()) return fail(make_error(Errc::corrupt_image, "restore", image::kFilesFile, "PIPE entry without payload"));
  const pipe_entry& pe = fe.pipe();
  uint64_t rkey = uint64_t(pe.pipe_id()) * 2, wkey = rkey + 1;
  std::string what = "pipe " + std::to_string(pe.pipe_id());
  auto& ends = files.objects()[kKind];
  if (!ends.count(rkey)) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) < 0) return fail(sys_error("pipe2", what));
    UniqueFd rd(p[0]), wr(p[1]);
    CR_OK(pipes::restore_data(pipes::kPipeData, pe.pipe_id(), wr.get(), files, what));
    ends[rkey] = std::move(rd);
    ends[wkey] = std::move(wr);
  }
  int acc = int(pe.flags()) & O_ACCMODE;
  uint64_t key = acc == O_WRONLY ? wkey : rkey;
  int end = ends[key].get();
  auto& used = files.data()["pipe:used"];
  UniqueFd fd;
  if (acc != O_RDWR && !used.count(key)) {
    // The first open file of an end is the end itself.
    used[key] = "1";
    fd.reset(::fcntl(end, F_DUPFD_CLOEXEC, 0));
    if (!fd) return fail(sys_error("dup", what));
    CR_OK(anon::restore_status_flags(fd.get(), pe.flags(), what));
  } else {
    // Another open file of the same end (it was opened through /proc): a new struct file again.
    int flags = int(pe.flags()) & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY);
    fd = CR_TRY(sys::open("/proc/self/fd/" + std::to_string(end), flags));
  }
  CR_OK(anon::restore_fown(fd.get(), pe.fown(), what));
  return fd;
}

}  // namespace

extern const FileKind kPipeKind{"pipe", PIPE, matches, unsupported, dump, open, nullptr};

}  // namespace crshim::files

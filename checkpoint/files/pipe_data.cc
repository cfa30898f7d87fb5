#include "checkpoint/files/pipe_data.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "checkpoint/base/sys.h"
#include "pipe-data.pb.h"

namespace crshim::files::pipes {

const DataImage kPipeData{"pipe", "pipes-data.img", image::Type::pipes_data};
const DataImage kFifoData{"fifo", "fifo-data.img", image::Type::fifo_data};

namespace {

// Keys in RestoreFiles::data(): the image is read once, then looked up per pipe.
std::string data_key(const DataImage& img) { return std::string(img.kind) + ":data"; }
std::string size_key(const DataImage& img) { return std::string(img.kind) + ":size"; }
std::string loaded_key(const DataImage& img) { return std::string(img.kind) + ":loaded"; }

Status load(const DataImage& img, RestoreFiles& files) {
  auto& loaded = files.data()[loaded_key(img)];
  if (!loaded.empty()) return {};
  loaded[0] = "1";
  auto r = image::Reader::open(files.images_dir(), img.file, image::kind(img.type));
  if (!r) {
    if (r.error().err == ENOENT) return {};  // no pipe had data
    return fail(r.error());
  }
  auto& data = files.data()[data_key(img)];
  auto& sizes = files.data()[size_key(img)];
  for (;;) {
    pipe_data_entry e;
    bool got = CR_TRY(r->read(e));
    if (!got) break;
    std::string bytes = CR_TRY(r->read_raw(e.bytes()));
    if (data.count(e.pipe_id()))
      return fail(make_error(Errc::corrupt_image, "read", img.file, "two entries for pipe " + std::to_string(e.pipe_id())));
    data[e.pipe_id()] = std::move(bytes);
    if (e.has_size()) sizes[e.pipe_id()] = std::to_string(e.size());
  }
  return {};
}

}  // namespace

Result<std::string> peek_pipe(int read_fd, const std::string& what) {
  int queued = 0;
  if (::ioctl(read_fd, FIONREAD, &queued) < 0) return fail(sys_error("ioctl(FIONREAD)", what));
  if (queued <= 0) return std::string();
  int size = ::fcntl(read_fd, F_GETPIPE_SZ);
  if (size < 0) return fail(sys_error("fcntl(F_GETPIPE_SZ)", what));
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) return fail(sys_error("pipe2", "copy of " + what));
  UniqueFd rd(p[0]), wr(p[1]);
  // tee() copies buffer references, one slot per buffer: our pipe needs as many slots as the source.
  int mine = ::fcntl(wr.get(), F_GETPIPE_SZ);
  if (mine < size && ::fcntl(wr.get(), F_SETPIPE_SZ, size) < 0)
    return fail(sys_error("fcntl(F_SETPIPE_SZ)", "copy of " + what, "cannot make a pipe of " + std::to_string(size) + " bytes"));
  ssize_t n = ::tee(read_fd, wr.get(), size_t(queued), SPLICE_F_NONBLOCK);
  if (n < 0) return fail(sys_error("tee", what));
  if (n != queued)
    return fail(make_error(Errc::internal, "tee", what,
                           "copied " + std::to_string(n) + " of " + std::to_string(queued) + " queued bytes"));
  std::string out(size_t(n), '\0');
  CR_OK(sys::read_exact(rd.get(), out.data(), out.size(), "copy of " + what));
  return out;
}

Status dump_data(const DataImage& img, uint32_t pipe_id, int read_fd, DumpFiles& files, const std::string& what) {
  auto& seen = files.seen()[std::string(img.kind) + ":data"];
  if (seen.count(pipe_id)) return {};
  int size = ::fcntl(read_fd, F_GETPIPE_SZ);
  if (size < 0) return fail(sys_error("fcntl(F_GETPIPE_SZ)", what));
  std::string bytes = CR_TRY(peek_pipe(read_fd, what));
  pipe_data_entry e;
  e.set_pipe_id(pipe_id);
  e.set_bytes(uint32_t(bytes.size()));
  e.set_size(uint32_t(size));
  image::Writer* w = CR_TRY(files.writer(img.file, img.type));
  CR_OK(w->write(e));
  CR_OK(w->write_raw(bytes));
  seen[pipe_id] = 1;
  return {};
}

Status restore_data(const DataImage& img, uint32_t pipe_id, int write_fd, RestoreFiles& files,
                    const std::string& what) {
  CR_OK(load(img, files));
  auto& sizes = files.data()[size_key(img)];
  if (auto it = sizes.find(pipe_id); it != sizes.end()) {
    uint64_t size = 0;
    sys::parse_u64(it->second, size);
    int now = ::fcntl(write_fd, F_GETPIPE_SZ);
    if (now < 0) return fail(sys_error("fcntl(F_GETPIPE_SZ)", what));
    if (size && uint64_t(now) != size && ::fcntl(write_fd, F_SETPIPE_SZ, int(size)) < 0)
      return fail(sys_error("fcntl(F_SETPIPE_SZ)", what, "buffer size " + std::to_string(size))
                      .with_hint("sizes above /proc/sys/fs/pipe-max-size need CAP_SYS_RESOURCE, or that limit raised"));
  }
  auto& data = files.data()[data_key(img)];
  auto it = data.find(pipe_id);
  if (it == data.end() || it->second.empty()) return {};
  // Non-blocking so that data larger than the pipe is an error rather than a hang; the caller sets
  // the end's real status flags afterwards.
  int fl = ::fcntl(write_fd, F_GETFL);
  if (fl < 0 || ::fcntl(write_fd, F_SETFL, fl | O_NONBLOCK) < 0) return fail(sys_error("fcntl(F_SETFL)", what));
  const std::string& bytes = it->second;
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(write_fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN)
      return fail(make_error(Errc::corrupt_image, "restore", what,
                             "the saved " + std::to_string(bytes.size()) + " bytes do not fit in the pipe"));
    if (n < 0) return fail(sys_error("write", what));
    done += size_t(n);
  }
  if (::fcntl(write_fd, F_SETFL, fl) < 0) return fail(sys_error("fcntl(F_SETFL)", what));
  return {};
}

Status dump_data_of(const DataImage& img, uint32_t pipe_id, const OpenFd& f, int own, uint32_t flags,
                    DumpFiles& files, const std::string& what) {
  UniqueFd reader;
  int rfd = own;
  if ((flags & O_ACCMODE) == O_WRONLY) {
    reader = CR_TRY(sys::open("/proc/" + std::to_string(f.pid) + "/fd/" + std::to_string(f.fd), O_RDONLY | O_NONBLOCK));
    rfd = reader.get();
  }
  return dump_data(img, pipe_id, rfd, files, what);
}

}  // namespace crshim::files::pipes

#include "checkpoint/files/anon_fhandle.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "checkpoint/base/sys.h"

namespace crshim::files::anon {

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<std::string> handle_from_hex(std::string_view hex, int bytes, const std::string& what) {
  if (bytes <= 0 || size_t(bytes) > kMaxHandleBytes || hex.size() != size_t(bytes) * 2)
    return fail(make_error(Errc::corrupt_image, "parse", what,
                           "file handle of " + std::to_string(bytes) + " bytes printed as " + std::to_string(hex.size()) +
                               " hex digits"));
  std::string out(size_t(bytes), '\0');
  for (size_t i = 0; i < out.size(); i++) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return fail(make_error(Errc::corrupt_image, "parse", what, "bad hex in file handle"));
    out[i] = char(hi << 4 | lo);
  }
  return out;
}

fh_entry to_fh_entry(int type, const std::string& handle) {
  fh_entry fh;
  fh.set_bytes(uint32_t(handle.size()));
  fh.set_type(uint32_t(type));
  uint64_t words[kHandleWords] = {};
  memcpy(words, handle.data(), std::min(handle.size(), sizeof words));
  for (uint64_t w : words) fh.add_handle(w);
  return fh;
}

Result<std::string> handle_bytes(const fh_entry& fh, const std::string& what) {
  size_t n = fh.bytes();
  if (n == 0 || n > kMaxHandleBytes || n > size_t(fh.handle_size()) * 8)
    return fail(make_error(Errc::corrupt_image, "restore", what, "file handle of " + std::to_string(n) + " bytes"));
  std::string out(size_t(fh.handle_size()) * 8, '\0');
  for (int i = 0; i < fh.handle_size(); i++) {
    uint64_t w = fh.handle(i);
    memcpy(out.data() + size_t(i) * 8, &w, 8);
  }
  out.resize(n);
  return out;
}

Result<UniqueFd> open_by_handle(const std::vector<proc::MountInfo>& mounts, const std::string& root, uint32_t sdev,
                                int type, const std::string& handle, uint64_t ino, int* mnt_id,
                                const std::string& what) {
  std::vector<const proc::MountInfo*> candidates;
  for (const auto& m : mounts)
    if (((m.major << 20) | m.minor) == sdev) candidates.push_back(&m);
  // Mounts of the whole filesystem first: a bind mount of a subtree cannot reach inodes outside it.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const proc::MountInfo* a, const proc::MountInfo* b) { return a->root == "/" && b->root != "/"; });
  std::string buf(sizeof(file_handle) + handle.size(), '\0');
  auto* fh = reinterpret_cast<file_handle*>(buf.data());
  fh->handle_bytes = unsigned(handle.size());
  fh->handle_type = type;
  memcpy(fh->f_handle, handle.data(), handle.size());
  int last_err = ENODEV;
  for (const auto* m : candidates) {
    // A directory of the mount is enough to name it; O_PATH fds are not accepted as mount fds.
    UniqueFd mfd(::open((root + m->mount_point).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!mfd) {
      last_err = errno;
      continue;
    }
    UniqueFd fd(::open_by_handle_at(mfd.get(), fh, O_PATH | O_CLOEXEC));
    if (!fd) {
      last_err = errno;
      continue;
    }
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return fail(sys_error("fstat", what));
    if (uint64_t(st.st_ino) != ino) {
      last_err = ESTALE;
      continue;
    }
    if (mnt_id) *mnt_id = m->mnt_id;
    return fd;
  }
  char dev[32];
  snprintf(dev, sizeof dev, "%u:%u", sdev >> 20, sdev & 0xfffff);
  return fail(errno_error(last_err, "open_by_handle_at", what,
                          "inode " + std::to_string(ino) + " on device " + dev +
                              (candidates.empty() ? " (no mount of that device is visible)" : "")));
}

}  // namespace crshim::files::anon

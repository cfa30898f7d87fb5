#include "checkpoint/base/sys.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <csignal>

namespace crshim::sys {

Result<UniqueFd> open_at(int dirfd, const std::string& path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::openat(dirfd, path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return fail(sys_error("open", path));
  return UniqueFd(fd);
}

Result<UniqueFd> open(const std::string& path, int flags, mode_t mode) {
  return open_at(AT_FDCWD, path, flags, mode);
}

Result<UniqueFd> open_in_root(int root_fd, const std::string& path, int flags, mode_t mode) {
  if (root_fd < 0) return open(path, flags, mode);
  open_how how{};
  how.flags = uint64_t(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT;
  long fd;
  do {
    fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
  } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
  if (fd < 0) return fail(sys_error("open", path).with_hint("looked up inside the restored root"));
  return UniqueFd(int(fd));
}

Result<std::string> read_all(int fd, const std::string& what, size_t max_bytes) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("read", what));
    }
    if (n == 0) break;
    if (out.size() + size_t(n) > max_bytes)
      return fail(make_error(Errc::invalid_argument, "read", what,
                             "larger than " + std::to_string(max_bytes) + " bytes"));
    out.append(buf, size_t(n));
  }
  return out;
}

Result<std::string> read_file_at(int dirfd, const std::string& path, size_t max_bytes) {
  auto fd = CR_TRY(open_at(dirfd, path, O_RDONLY));
  return read_all(fd.get(), path, max_bytes);
}

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  return read_file_at(AT_FDCWD, path, max_bytes);
}

Status read_exact(int fd, void* buf, size_t size, const std::string& what) {
  auto* p = static_cast<char*>(buf);
  while (size > 0) {
    ssize_t n = ::read(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("read", what));
    }
    if (n == 0) return fail(make_error(Errc::corrupt_image, "read", what, "unexpected end of file"));
    p += n;
    size -= size_t(n);
  }
  return {};
}

Status pread_exact(int fd, void* buf, size_t size, off_t offset, const std::string& what) {
  auto* p = static_cast<char*>(buf);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("pread", what));
    }
    if (n == 0) return fail(make_error(Errc::corrupt_image, "pread", what, "unexpected end of file"));
    p += n;
    offset += n;
    size -= size_t(n);
  }
  return {};
}

Status write_all(int fd, const void* buf, size_t size, const std::string& what) {
  const auto* p = static_cast<const char*>(buf);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("write", what));
    }
    p += n;
    size -= size_t(n);
  }
  return {};
}

Status write_all(int fd, std::string_view data, const std::string& what) {
  return write_all(fd, data.data(), data.size(), what);
}

Status pwrite_all(int fd, const void* buf, size_t size, off_t offset, const std::string& what) {
  const auto* p = static_cast<const char*>(buf);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(sys_error("pwrite", what));
    }
    p += n;
    offset += n;
    size -= size_t(n);
  }
  return {};
}

Status write_file(const std::string& path, std::string_view data, int flags) {
  auto fd = CR_TRY(open(path, O_WRONLY | O_CREAT | O_TRUNC | flags, 0644));
  return write_all(fd.get(), data, path);
}

Result<std::string> read_link_at(int dirfd, const std::string& path) {
  std::string buf(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(dirfd, path.c_str(), buf.data(), buf.size());
    if (n < 0) return fail(sys_error("readlink", path));
    if (size_t(n) < buf.size()) {
      buf.resize(size_t(n));
      return buf;
    }
    buf.resize(buf.size() * 2);
  }
}

Result<std::string> read_link(const std::string& path) { return read_link_at(AT_FDCWD, path); }

std::vector<UniqueFd> take_passed_fds(const msghdr& mh) {
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&mh), c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  return fds;
}

Status send_with_fd(int sock, std::string_view data, int fd, const std::string& what) {
  iovec iov{const_cast<char*>(data.data()), data.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n;
  do n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return fail(sys_error("sendmsg(SCM_RIGHTS)", what));
  if (size_t(n) != data.size()) return fail(make_error(Errc::system, "sendmsg", what, "short message"));
  return {};
}

int pidfd_open(pid_t pid, unsigned flags) { return int(::syscall(SYS_pidfd_open, pid, flags)); }
int pidfd_getfd(int pidfd, int targetfd, unsigned flags) {
  return int(::syscall(SYS_pidfd_getfd, pidfd, targetfd, flags));
}
int pidfd_send_signal(int pidfd, int sig, siginfo_t* info, unsigned flags) {
  return int(::syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags));
}
long raw_syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6) {
  return ::syscall(nr, a1, a2, a3, a4, a5, a6);
}

std::vector<std::string_view> split(std::string_view s, char sep, bool skip_empty) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    auto piece = s.substr(start, end - start);
    if (!piece.empty() || !skip_empty) out.push_back(piece);
    start = end + 1;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

static bool strip_base_prefix(std::string_view& s, int& base) {
  if (base == 0) {
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
      s.remove_prefix(2);
      base = 16;
    } else {
      base = 10;
    }
  }
  return !s.empty();
}

bool parse_u64(std::string_view s, uint64_t& out, int base) {
  if (!strip_base_prefix(s, base)) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_i64(std::string_view s, int64_t& out, int base) {
  bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  uint64_t u;
  if (!parse_u64(s, u, base)) return false;
  if (neg) {
    if (u > uint64_t(INT64_MAX) + 1) return false;
    out = int64_t(0 - u);
  } else {
    if (u > uint64_t(INT64_MAX)) return false;
    out = int64_t(u);
  }
  return true;
}

}  // namespace crshim::sys

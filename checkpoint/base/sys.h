// Thin syscall wrappers: EINTR retry, O_CLOEXEC by default, errors that name the call and the object.
#pragma once

#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim::sys {

// openat(dirfd, path, flags | O_CLOEXEC, mode).
Result<UniqueFd> open_at(int dirfd, const std::string& path, int flags, mode_t mode = 0);
Result<UniqueFd> open(const std::string& path, int flags, mode_t mode = 0);
// Opens `path` as if `root_fd` were "/" (openat2 RESOLVE_IN_ROOT): neither ".." nor a symlink can
// leave it. root_fd < 0: an ordinary open() in our own root.
Result<UniqueFd> open_in_root(int root_fd, const std::string& path, int flags, mode_t mode = 0);

// Reads until EOF (bounded by max_bytes; larger input is an error naming `what`).
Result<std::string> read_all(int fd, const std::string& what, size_t max_bytes = 64u << 20);
Result<std::string> read_file(const std::string& path, size_t max_bytes = 64u << 20);
Result<std::string> read_file_at(int dirfd, const std::string& path, size_t max_bytes = 64u << 20);

// Exactly `size` bytes or an error (EOF counts as corrupt input).
Status read_exact(int fd, void* buf, size_t size, const std::string& what);
Status write_all(int fd, const void* buf, size_t size, const std::string& what);
Status write_all(int fd, std::string_view data, const std::string& what);
Status pwrite_all(int fd, const void* buf, size_t size, off_t offset, const std::string& what);
Status pread_exact(int fd, void* buf, size_t size, off_t offset, const std::string& what);

Status write_file(const std::string& path, std::string_view data, int flags = 0);

// readlink without a size limit surprise.
Result<std::string> read_link(const std::string& path);
Result<std::string> read_link_at(int dirfd, const std::string& path);

// Takes ownership of every fd a received message carried as SCM_RIGHTS (none may leak, whatever
// the caller then makes of the message).
std::vector<UniqueFd> take_passed_fds(const struct msghdr& mh);
// Sends `data` as one message with `fd` attached as SCM_RIGHTS (`what` names the socket in errors);
// a message the socket takes only in part is an error.
Status send_with_fd(int sock, std::string_view data, int fd, const std::string& what);

// Raw syscalls glibc 2.36 does not wrap.
int pidfd_open(pid_t pid, unsigned flags = 0);
int pidfd_getfd(int pidfd, int targetfd, unsigned flags = 0);
int pidfd_send_signal(int pidfd, int sig, siginfo_t* info = nullptr, unsigned flags = 0);
long raw_syscall(long nr, long a1 = 0, long a2 = 0, long a3 = 0, long a4 = 0, long a5 = 0, long a6 = 0);

// Splits on `sep`, dropping empty pieces when skip_empty.
std::vector<std::string_view> split(std::string_view s, char sep, bool skip_empty = true);
std::string_view trim(std::string_view s);
// Strict unsigned/signed parses of a whole string (base 0 accepts 0x..).
bool parse_u64(std::string_view s, uint64_t& out, int base = 10);
bool parse_i64(std::string_view s, int64_t& out, int base = 10);

}  // namespace crshim::sys

// Pieces shared by the anonymous-inode file kinds (eventfd, epoll, signalfd, timerfd, inotify) and memfds:
// one file id per open file, the file owner, the status flags.
#pragma once

#include <cstdint>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/files/kinds.h"
#include "fown.pb.h"

namespace crshim::files::anon {

// The id already given to the open file behind `f` (another fd, of any dumped task, that shares the
// same struct file: found with kcmp among the fds remembered under `kind`), or 0 when it is new.
uint32_t shared_id(const OpenFd& f, DumpFiles& files, const std::string& kind);
// Remembers that fd `f` is file `id`, for shared_id().
void remember(const OpenFd& f, DumpFiles& files, const std::string& kind, uint32_t id);

// Adds `fe` to files.img; `set_id` gives its payload (efd, epfd, ...) the same id, which the payload
// must carry too (the table assigns ids in order, so the id is known before adding).
Result<uint32_t> add_file(DumpFiles& files, file_entry fe, void (*set_id)(file_entry&, uint32_t));

// The file owner (F_GETOWN_EX, F_GETSIG) of `fd`, crshim's copy of the open file.
Result<fown_entry> dump_fown(int fd, const std::string& what);
// Gives `fd` the recorded owner again; nothing to do when there was none.
Status restore_fown(int fd, const fown_entry& fown, const std::string& what);
// Makes the F_SETFL status flags of `fd` (O_NONBLOCK, O_ASYNC, O_APPEND, O_NOATIME, O_DIRECT) those of `flags`.
Status restore_status_flags(int fd, uint32_t flags, const std::string& what);

// "epoll 7" style name of a restored file, for errors.
std::string file_name(const char* kind, uint32_t id);

}  // namespace crshim::files::anon

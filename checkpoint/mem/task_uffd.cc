#include "checkpoint/mem/task_uffd.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include <string>

#include "checkpoint/base/sys.h"

namespace crshim::mem {

Result<TaskUffd> open_task_uffd(kernel::Remote& r, int flags, uint64_t features, const char* feature_names,
                                const char* hint) {
  TaskUffd u;
  u.target_fd = int(CR_TRY(r.call(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | flags)));
  auto give_up = [&](Error e) {
    (void)r.call(SYS_close, u.target_fd);
    return fail(e.within("userfaultfd of pid " + std::to_string(r.pid())));
  };
  UniqueFd pidfd(sys::pidfd_open(r.pid()));
  if (!pidfd) return give_up(sys_error("pidfd_open", "pid " + std::to_string(r.pid())));
  u.fd.reset(sys::pidfd_getfd(pidfd.get(), u.target_fd));
  if (!u.fd) return give_up(sys_error("pidfd_getfd", "fd " + std::to_string(u.target_fd)));
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = features;
  if (::ioctl(u.fd.get(), UFFDIO_API, &api) < 0)
    return give_up(sys_error(std::string("ioctl(UFFDIO_API, ") + feature_names + ")", "userfaultfd").with_hint(hint));
  return u;
}

}  // namespace crshim::mem

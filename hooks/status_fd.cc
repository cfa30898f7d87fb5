#include "hooks/status_fd.h"

#include <unistd.h>

namespace crshim {

Status StatusFdHooks::fire(HookPoint point, pid_t) {
  if (point != HookPoint::status_ready || !fd_) return {};
  char ready = 0;
  // The reader may be gone: readiness is a courtesy, never a reason to fail.
  (void)!::write(fd_.get(), &ready, 1);
  fd_.reset();
  return {};
}

}  // namespace crshim

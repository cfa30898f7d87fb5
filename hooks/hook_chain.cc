#include "hooks/hook_chain.h"

namespace crshim {

Status HookChain::fire(HookPoint point, pid_t pid) {
  for (Hooks* sink : sinks_) CR_OK(sink->fire(point, pid));
  return {};
}

Status HookChain::fire_fd(HookPoint point, pid_t pid, int fd) {
  for (Hooks* sink : sinks_) CR_OK(sink->fire_fd(point, pid, fd));
  return {};
}

}  // namespace crshim

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

bool HookChain::can_request_fd() const {
  for (const Hooks* sink : sinks_)
    if (sink->can_request_fd()) return true;
  return false;
}

Result<UniqueFd> HookChain::request_fd(const std::string& key) {
  for (Hooks* sink : sinks_)
    if (sink->can_request_fd()) return sink->request_fd(key);
  return Hooks::request_fd(key);
}

}  // namespace crshim

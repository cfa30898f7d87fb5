// --status-fd (RPC status_fd): one NUL byte on the fd when status-ready fires, then it is closed. A
// lazy dump fires it once it listens for the destination's lazy-pages daemon.
#pragma once

#include <sys/types.h>

#include "checkpoint/base/unique_fd.h"
#include "checkpoint/hook_points.h"

namespace crshim {

class StatusFdHooks final : public Hooks {
 public:
  explicit StatusFdHooks(UniqueFd fd) : fd_(std::move(fd)) {}
  Status fire(HookPoint point, pid_t pid) override;

 private:
  UniqueFd fd_;
};

}  // namespace crshim

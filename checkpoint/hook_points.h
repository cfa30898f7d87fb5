// Hook points the engine fires during dump and restore, and the interface their sinks implement.
#pragma once

#include <sys/types.h>

#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim {

// Every action name CRIU defines, in the order they can fire.
enum class HookPoint {
  pre_dump,
  network_lock,
  query_ext_files,
  post_dump,
  pre_restore,
  setup_namespaces,
  post_setup_namespaces,
  orphan_pts_master,
  post_restore,
  network_unlock,
  pre_resume,
  post_resume,
  status_ready,
};

// CRIU's spelling ("pre-dump", "setup-namespaces", ...).
const char* hook_name(HookPoint point);

// Receives hook points. A failure from a point that may abort (pre-dump, pre-restore,
// setup-namespaces, post-setup-namespaces, post-restore) aborts the operation.
class Hooks {
 public:
  virtual ~Hooks() = default;
  // `pid` is the real pid of the root task where the point has one (setup-namespaces, post-restore), else 0.
  virtual Status fire(HookPoint point, pid_t pid) = 0;
  // A point that hands over an open file (orphan-pts-master: a new pty master); `fd` stays the
  // caller's. Sinks that cannot pass files fire the plain point.
  virtual Status fire_fd(HookPoint point, pid_t pid, int fd) {
    (void)fd;
    return fire(point, pid);
  }
  // Asks the caller for the file an --inherit-fd entry names by key but did not pass (an RPC client's
  // "req-inherit-fd"); sinks that cannot ask fail.
  virtual bool can_request_fd() const { return false; }
  virtual Result<UniqueFd> request_fd(const std::string& key) {
    return fail(make_error(Errc::invalid_argument, "inherit-fd", key, "the fd for this key is not open in crshim")
                    .with_hint("the fd must be open in crshim when it starts"));
  }
};

// A sink that does nothing (plain CLI use without action scripts).
class NoHooks final : public Hooks {
 public:
  Status fire(HookPoint, pid_t) override { return {}; }
};

}  // namespace crshim

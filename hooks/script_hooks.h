// Runs --action-script programs at every hook point with CRIU's environment and exit-code rules.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/hook_points.h"

namespace crshim {

// Each script runs as `sh -c SCRIPT` (so a script may carry arguments, as with CRIU) with
// CRTOOLS_SCRIPT_ACTION, CRTOOLS_IMAGE_DIR and, once known, CRTOOLS_INIT_PID in its environment,
// stdin on /dev/null and stdout/stderr copied into the log. A non-zero exit, a signal or the timeout
// fails the point; later scripts of that point are then not run.
class ScriptHooks final : public Hooks {
 public:
  static constexpr std::chrono::milliseconds kDefaultTimeout = std::chrono::minutes(2);

  // `image_dir` is the CRTOOLS_IMAGE_DIR value (see image_dir_env()).
  ScriptHooks(std::vector<std::string> scripts, std::string image_dir, Logger& log,
              std::chrono::milliseconds timeout = kDefaultTimeout);

  // The root task's pid when it is known before the first point (dump). As in CRIU the first pid
  // known is exported to every later script and never replaced.
  void set_init_pid(pid_t pid);

  Status fire(HookPoint point, pid_t pid) override;
  // CRIU defines no way to give a script a file: crshim's scripts inherit `fd` under the same number,
  // named by CRTOOLS_PTS_MASTER_FD (orphan-pts-master); the script must pass it on to keep it.
  Status fire_fd(HookPoint point, pid_t pid, int fd) override;

  bool empty() const { return scripts_.empty(); }

 private:
  Status run_one(const std::string& script, const char* action, int pass_fd = -1);

  std::vector<std::string> scripts_;
  std::string image_dir_;
  Logger& log_;
  std::chrono::milliseconds timeout_;
  pid_t init_pid_ = 0;
};

// "/proc/<our pid>/fd/<fd>": reaches the images directory whatever path it was opened by (what CRIU exports).
std::string image_dir_env(int images_dir_fd);

}  // namespace crshim

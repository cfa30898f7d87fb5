// Restore of ptys: a new pair per dumped pty made before any task exists (so tasks inherit it and a
// session leader can make it its controlling terminal), the controlling terminals and foreground
// groups of sessions, and the masters of orphan slaves for the orphan-pts-master hook.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/files/kinds.h"
#include "checkpoint/restore/images.h"
#include "checkpoint/restore/task.h"

namespace crshim::tty {

struct RestoredPtys {
  struct Ctty {
    uint32_t sid = 0;   // session leader (image pid) that takes the terminal
    uint32_t pgrp = 0;  // foreground group (image pid), 0 when none
    int slave = -1;     // crshim's slave file (owned by RestoreFiles)
    uint32_t index = 0, new_index = 0;
  };
  struct Orphan {
    uint32_t index = 0, new_index = 0;
    int master = -1;  // crshim's master file, for the orphan-pts-master hook
  };
  std::vector<Ctty> cttys;
  std::vector<Orphan> orphans;
  std::map<uint32_t, int> slaves;  // dumped index -> crshim's slave file (bind mounts of it, /dev/console)
};

// Reads tty-info.img and tty-data.img and makes every pty again: termios, window size, modes and the
// queued bytes. The pairs go to files.objects()[kPairsKey] for the TTY file kind. Slaves whose master
// was not dumped need `orphan_pts_master`. The new /dev/pts numbers are logged (they cannot be chosen).
Result<RestoredPtys> restore_ptys(files::RestoreFiles& files, const restorer::ImageSet& set, bool orphan_pts_master,
                                  Logger& log);

// TIOCSCTTY in the session leader `task` (image pid `vpid`) right after its setsid(), before it
// creates the rest of its session: children inherit the controlling terminal at fork.
Status take_ctty(restorer::RestoredTask& task, uint32_t vpid, const RestoredPtys& ptys, Logger& log);

// TIOCSPGRP in each session leader once every process group exists.
Status set_foreground_groups(const RestoredPtys& ptys, const restorer::ImageSet& set,
                             const std::function<restorer::RestoredTask*(uint32_t vpid)>& task_of, Logger& log);

}  // namespace crshim::tty

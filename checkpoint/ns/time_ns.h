// Time namespaces: the clocks a dumped tree saw (timens-<id>.img) and, at restore, a new time
// namespace whose offsets make CLOCK_MONOTONIC and CLOCK_BOOTTIME run on from those values.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "checkpoint/base/log.h"
#include "checkpoint/base/result.h"
#include "checkpoint/base/unique_fd.h"

namespace crshim::ns {

// Why `pid` cannot be dumped as far as time namespaces go, or "": a process whose children would be
// born in another time namespace than its own (it unshared one and has not exec'd) cannot be recreated.
std::string time_ns_problem(pid_t pid);

// Writes timens-<id>.img: `pid`'s monotonic and boot-time clocks as its namespace shows them now.
Status dump_time_ns(pid_t pid, uint32_t id, int images_dir);

// While it lives, the tasks crshim creates are born in a new time namespace whose clocks continue
// from timens-<id>.img; crshim's own clocks never change (a time namespace applies to children).
class ChildTimeNamespace {
 public:
  static Result<ChildTimeNamespace> enter(int images_dir, uint32_t id, Logger& log);
  ChildTimeNamespace(ChildTimeNamespace&&) = default;
  ChildTimeNamespace& operator=(ChildTimeNamespace&&) = default;
  // Later children (hook scripts, helpers) are born in crshim's own time namespace again.
  ~ChildTimeNamespace();

 private:
  ChildTimeNamespace() = default;
  UniqueFd own_;
  Logger* log_ = nullptr;
};

}  // namespace crshim::ns

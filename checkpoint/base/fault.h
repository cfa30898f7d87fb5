// Named fault points for tests (compiled in only with CRSHIM_FAULTS), so tests can prove every
// failure path cleans up. CRSHIM_FAULT=NAME makes the first fault_point(NAME) fail, NAME:N the N-th
// (e.g. the third task created); with CRSHIM_FAULT_KILL=1 the process kills itself with SIGKILL
// there instead, as a crash or an OOM kill would.
#pragma once

#include "checkpoint/base/result.h"

namespace crshim {

Status fault_point(const char* name);

}  // namespace crshim

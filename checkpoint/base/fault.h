// Named fault points for tests: with CRSHIM_FAULT=NAME in the environment, fault_point(NAME) fails
// (compiled in only with CRSHIM_FAULTS), so tests can prove every failure path cleans up.
#pragma once

#include "checkpoint/base/result.h"

namespace crshim {

Status fault_point(const char* name);

}  // namespace crshim

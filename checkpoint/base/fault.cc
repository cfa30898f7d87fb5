#include "checkpoint/base/fault.h"

#include <cstdlib>
#include <cstring>

namespace crshim {

Status fault_point([[maybe_unused]] const char* name) {
#ifdef CRSHIM_FAULTS
  const char* want = getenv("CRSHIM_FAULT");
  if (want && strcmp(want, name) == 0)
    return fail(make_error(Errc::internal, "fault point", name, "injected failure (CRSHIM_FAULT)"));
#endif
  return {};
}

}  // namespace crshim

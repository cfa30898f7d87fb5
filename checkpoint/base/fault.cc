#include "checkpoint/base/fault.h"

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace crshim {

Status fault_point([[maybe_unused]] const char* name) {
#ifdef CRSHIM_FAULTS
  const char* env = getenv("CRSHIM_FAULT");
  if (!env) return {};
  std::string_view want(env);
  unsigned long nth = 1;
  // NAME:N: names contain colons themselves, so only an all-digit last part is a count.
  if (size_t colon = want.rfind(':'); colon != std::string_view::npos && colon + 1 < want.size() &&
                                      want.find_first_not_of("0123456789", colon + 1) == std::string_view::npos) {
    nth = std::strtoul(env + colon + 1, nullptr, 10);
    want = want.substr(0, colon);
  }
  if (want != name) return {};
  // Test builds only: the one counter of hits of the named point in this process.
  static std::atomic<unsigned long> hits{0};
  if (++hits != nth) return {};
  if (const char* kill = getenv("CRSHIM_FAULT_KILL"); kill && strcmp(kill, "1") == 0) ::raise(SIGKILL);
  return fail(make_error(Errc::internal, "fault point", name, "injected failure (CRSHIM_FAULT)"));
#else
  return {};
#endif
}

}  // namespace crshim

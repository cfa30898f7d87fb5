// `crshim check` and `crshim features`: what this kernel offers checkpoint/restore.
#include <cstdio>

#include "checkpoint/kernel/features.h"
#include "shim/verbs.h"

namespace crshim {

int run_check(const Options&) {
  auto f = kernel::probe_features();
  if (!f) {
    fprintf(stderr, "Error: check failed: %s\n", f.error().render().c_str());
    return 1;
  }
  fputs(kernel::render_check(*f).c_str(), stdout);
  return f->usable() ? 0 : 1;
}

int run_features(const Options&) {
  auto f = kernel::probe_features();
  if (!f) {
    fprintf(stderr, "Error: features failed: %s\n", f.error().render().c_str());
    return 1;
  }
  printf("%s\n", kernel::features_json(*f).c_str());
  return 0;
}

}  // namespace crshim
